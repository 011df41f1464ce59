"""The scripts the workflows run with the runner's own `python3` need nothing but the standard library
(deploy.yml's call of stack_outputs.py broke when it came to need the project's packages)."""

from __future__ import annotations

import re
import subprocess
import sys

from classwire_infra.paths import ROOT


def test_every_script_the_workflows_run_with_python3_imports_with_the_standard_library_only():
    workflows = "".join(p.read_text() for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    scripts = sorted(set(re.findall(r"python3 (scripts/\w+\.py)", workflows)))
    assert scripts, "the workflows call scripts with python3"
    for script in scripts:
        # -I -S: no site-packages, no PYTHONPATH, no user site: the standard library alone.
        result = subprocess.run(
            [sys.executable, "-I", "-S", str(ROOT / script), "--help"], capture_output=True, text=True
        )
        assert result.returncode == 0, f"{script}: {result.stderr[-2000:]}"
