"""The JS client's TypeScript declarations (clients/js/classwire.d.ts): they compile with a strict consumer
(clients/js/types.check.ts, whose `@ts-expect-error` lines must stay errors), and they match the module
itself (clients/js/check-declarations.mjs: exports, members, stats, option defaults, statuses, codes).

Needs node and clients/js's devDependencies (`npm ci` in clients/js)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from classwire_infra.paths import ROOT

CLIENT = ROOT / "clients" / "js"
NODE = shutil.which("node")
NPX = shutil.which("npx")

# Without node there is nothing to check with; in CI a missing install is a failure, not a skip.
pytestmark = [
    pytest.mark.skipif(NODE is None or NPX is None, reason="node/npx is not installed"),
    pytest.mark.skipif(
        not (CLIENT / "node_modules" / "typescript").is_dir() and os.environ.get("CI") != "true",
        reason="clients/js/node_modules is missing: run `make install`",
    ),
]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    # From clients/js: `npx --no-install tsc` resolves that directory's node_modules/.bin/tsc (from the
    # repository root npx would look for an unrelated `tsc` package instead).
    return subprocess.run(command, cwd=CLIENT, capture_output=True, text=True, timeout=180)


def test_declarations_compile_with_a_strict_consumer():
    assert NPX is not None  # else pytestmark skips
    result = _run([NPX, "--no-install", "tsc", "-p", "."])
    output = (result.stdout + result.stderr).strip()
    print(output)
    assert result.returncode == 0, f"tsc -p clients/js failed:\n{output}"


def test_declarations_match_the_module():
    assert NODE is not None  # else pytestmark skips
    result = _run([NODE, "check-declarations.mjs"])
    output = (result.stdout + result.stderr).strip()
    print(output)
    assert result.returncode == 0, output
