"""Plain `terraform` accepts every environment's synthesized JSON: init from the offline mirror, validate."""

from __future__ import annotations

import json
import subprocess

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["local", "dev", "staging", "prod", "emulator"])
def test_terraform_init_and_validate(stacks, terraform_environment, metrics, name):
    directory = stacks[name].directory
    init = subprocess.run(
        ["terraform", "init", "-backend=false", "-input=false", "-no-color"],
        cwd=directory,
        env=terraform_environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    validate = subprocess.run(
        ["terraform", "validate", "-json", "-no-color"],
        cwd=directory,
        env=terraform_environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(validate.stdout)
    assert result["valid"] is True, json.dumps(result["diagnostics"], indent=2)
    assert result["error_count"] == 0
    metrics[name]["terraform_validate_warnings"] = result["warning_count"]
