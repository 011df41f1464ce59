"""Runs the JavaScript client's unit tests (Node's built-in runner) as part of `make test`."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from classwire_infra.paths import ROOT


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_client_unit_tests_pass():
    result = subprocess.run(
        ["node", "--test", "clients/js/"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    summary = [line for line in result.stdout.splitlines() if line.startswith(("# pass", "# fail"))]
    print("\n".join(summary))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
