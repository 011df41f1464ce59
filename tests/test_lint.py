"""`make lint`'s checks (.pre-commit-config.yaml) are clean: every hook's command, run over the tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from classwire_infra.paths import ROOT

BIN = Path(sys.executable).parent
CHECKS = {
    "ruff check": [str(BIN / "ruff"), "check", "."],
    "ruff format": [str(BIN / "ruff"), "format", "--check", "."],
    "mypy": [str(BIN / "mypy")],
}


@pytest.mark.slow
@pytest.mark.parametrize("check", CHECKS)
def test_the_tree_passes(check):
    result = subprocess.run(CHECKS[check], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{check}:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
