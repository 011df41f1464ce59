"""checkov finds nothing on the synthesized JSON nor on a plan's JSON, beyond the skips in .checkov.yaml (each
with its reason there). The local stack is not scanned: it runs only on the emulator, with Redis unauthenticated
on purpose (the local cloud's plain redis-server), which is exactly what CKV_AWS_31 would report."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from classwire_infra.paths import ROOT

pytestmark = pytest.mark.slow

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CONFIG = ROOT / ".checkov.yaml"


def checkov(framework: str, file) -> dict:
    if not CHECKOV.exists():
        pytest.fail(
            "checkov is missing: UV_PROJECT_ENVIRONMENT=.venv-checkov uv sync --frozen --only-group checkov"
        )
    run = subprocess.run(
        [str(CHECKOV), "--config-file", str(CONFIG), "--framework", framework, "-f", str(file), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(run.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0 and summary["passed"] > 100
    return {key: summary[key] for key in ("passed", "failed", "skipped")}


@pytest.mark.parametrize("name", ["dev", "staging", "prod", "emulator"])
def test_checkov_on_synthesized_json(stacks, metrics, name):
    metrics[name]["checkov_json"] = checkov("terraform_json", stacks[name].file)


def test_checkov_on_plan_json(workspace, placeholder_zip, terraform_environment, metrics):
    """The dev-shaped stack planned against the emulator (a plan needs an AWS API), then scanned."""
    from classwire_infra.synth import synth
    from localcloud.emulator import AwsEmulator

    with AwsEmulator(load_managed_policies=False) as aws:
        directory = synth(
            "dev", out=workspace / "cdktf.out.plan", aws_endpoint=aws.endpoint, zip_file=placeholder_zip
        )
        environment = {**terraform_environment, **aws.client_environment}
        started = time.monotonic()
        for command in (
            ["terraform", "init", "-input=false", "-no-color"],
            ["terraform", "plan", "-input=false", "-no-color", "-out=plan.tfplan"],
        ):
            run = subprocess.run(
                command, cwd=directory, env=environment, capture_output=True, text=True, timeout=600
            )
            assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        show = subprocess.run(
            ["terraform", "show", "-json", "plan.tfplan"],
            cwd=directory,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        plan_seconds = time.monotonic() - started
    plan_file = directory / "plan.json"
    plan_file.write_text(show.stdout)
    planned = [c for c in json.loads(show.stdout)["resource_changes"] if c["mode"] == "managed"]
    assert all(change["change"]["actions"] == ["create"] for change in planned)
    metrics["emulator"]["plan_resources"] = len(planned)
    metrics["emulator"]["plan_seconds"] = round(plan_seconds, 1)
    metrics["emulator"]["checkov_plan"] = checkov("terraform_plan", plan_file)
