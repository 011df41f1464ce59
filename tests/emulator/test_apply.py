"""Apply for real: the local stack against the AWS emulator, re-planned with no changes, destroyed.

Synthesizes `classwire-local` (CLASSWIRE_EMULATOR_ENV=dev for dev's shape: Redis IAM auth, user groups)
with every provider endpoint on this test's emulator (`python -m classwire_infra.synth --aws-endpoint`), then runs the real Terraform and AWS provider from the machine's filesystem mirror:
init, apply, `plan -detailed-exitcode` (must be 0: any change means the stack, the provider and the
emulator disagree about what was created), destroy. Each command's output is kept beside the stack in
pytest's tmp_path (`apply.log`, `re-plan.log`, ...), and moto's log beside it (`moto.log`). (The checkov
scan of a plan's JSON lives with the other scans, in tests/infra/test_checkov.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from classwire_infra.paths import ROOT
from localcloud.deploy import applied_state
from localcloud.emulator import AwsEmulator

ENV = os.environ.get("CLASSWIRE_EMULATOR_ENV", "local")
STACK = f"classwire-{ENV}"
# Anything that would let Terraform reach a real account is dropped from its environment.
REAL_AWS_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


def lambda_zip(path: Path) -> Path:
    """The emulator never runs the code: any small, deterministic zip will do (dist/ is never touched)."""
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("classwire/__init__.py", date_time=(1980, 1, 1, 0, 0, 0))
        archive.writestr(info, "")
    return path


class Terraform:
    """Runs terraform in one synthesized stack directory and keeps the wall time of each command."""

    def __init__(self, directory: Path, env: dict[str, str]):
        self.directory = directory
        self.env = env
        self.times: dict[str, float] = {}

    def __call__(self, name: str, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
        started = time.monotonic()
        result = subprocess.run(
            ["terraform", *args, "-no-color"],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        self.times[name] = time.monotonic() - started
        # Each command's output stays beside the stack (pytest keeps the last runs' tmp_path) for a post-mortem.
        (self.directory / f"{name}.log").write_text(result.stdout + result.stderr)
        if result.returncode not in ok:
            pytest.fail(
                f"terraform {' '.join(args)} exited {result.returncode}\n{tail(result.stdout)}\n{tail(result.stderr)}"
            )
        return result


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def changes(plan_output: str) -> str:
    """The resource lines of a plan, e.g. `# aws_apigatewayv2_stage.x will be updated in-place`, and why."""
    keep = [
        line for line in plan_output.splitlines() if line.lstrip().startswith(("#", "~", "+", "-", "Plan:"))
    ]
    return "\n".join(keep[:120])


def synthesize(endpoint: str, out: Path, zip_path: Path) -> Path:
    """`python -m classwire_infra.synth --env ENV --aws-endpoint URL --zip ZIP`, in this process."""
    from classwire_infra.synth import synth

    stack = synth(ENV, out=out, aws_endpoint=endpoint, zip_file=zip_path)
    assert (stack / "cdk.tf.json").is_file(), f"no {STACK} stack in {out}"
    return stack


def resources_in_state(stack: Path) -> list[str]:
    """The managed resources in the stack's local state (no Terraform process needed to list them)."""
    resources = applied_state(stack, {})["values"]["root_module"]["resources"]
    return [r["address"] for r in resources if r["mode"] == "managed"]


def left_in_emulator(aws: AwsEmulator) -> dict[str, list[str]]:
    """A sample of the stack's resources still in the emulator, by kind (moto's default VPC aside)."""
    ec2 = aws.client("ec2")
    found = {
        "vpcs": [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]],
        "nat_gateways": [
            n["NatGatewayId"] for n in ec2.describe_nat_gateways()["NatGateways"] if n["State"] != "deleted"
        ],
        "functions": [f["FunctionName"] for f in aws.client("lambda").list_functions()["Functions"]],
        "replication_groups": [
            g["ReplicationGroupId"]
            for g in aws.client("elasticache").describe_replication_groups()["ReplicationGroups"]
        ],
        "apis": [a["ApiId"] for a in aws.client("apigatewayv2").get_apis()["Items"]],
        "roles": [r["RoleName"] for r in aws.client("iam").list_roles()["Roles"]],
    }
    return {kind: names for kind, names in found.items() if names}


def terraform_environment(aws: AwsEmulator, cli_config: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in REAL_AWS_VARIABLES}
    env.update(aws.client_environment)
    env.update(
        TF_CLI_CONFIG_FILE=str(cli_config),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_stack_applies_replans_without_changes_and_destroys(tmp_path, capsys):
    assert shutil.which("terraform"), "terraform is not on PATH (this test runs the real Terraform)"
    cli_config = Path(
        subprocess.run(
            [str(ROOT / "scripts" / "terraform-cli-config"), str(tmp_path / "terraformrc")],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        ).stdout.strip()
    )

    with AwsEmulator(log_path=tmp_path / "moto.log") as aws:
        started = time.monotonic()
        stack = synthesize(aws.endpoint, tmp_path / "cdktf.out", lambda_zip(tmp_path / "lambda.zip"))
        synth_time = time.monotonic() - started
        terraform = Terraform(stack, terraform_environment(aws, cli_config))

        terraform("init", "init", "-input=false")
        terraform("apply", "apply", "-auto-approve", "-input=false")
        created = resources_in_state(stack)
        # `make deploy` reads the state file directly instead of starting the provider for `terraform show`.
        shown = json.loads(terraform("show", "show", "-json").stdout)["values"]["root_module"]["resources"]
        read = applied_state(stack, {})["values"]["root_module"]["resources"]
        assert {r["address"]: r["values"] for r in read} == {r["address"]: r["values"] for r in shown}

        replan = terraform("re-plan", "plan", "-input=false", "-detailed-exitcode", ok=(0, 2))
        assert replan.returncode == 0, (
            "the stack changes right after it was applied (moto or the stack disagree with the provider):\n"
            + changes(replan.stdout)
        )

        # The re-plan has just refreshed every resource and found it as the state says: refreshing them all
        # again before deleting would only double the destroy's time.
        terraform("destroy", "destroy", "-auto-approve", "-input=false", "-refresh=false")
        leftover = resources_in_state(stack)
        assert leftover == [], f"still in state after destroy: {leftover}"
        assert left_in_emulator(aws) == {}, "destroy left resources in the emulator"

    with capsys.disabled():  # the times belong in every run's output, not only a failing one's
        print(
            f"\n{STACK} against the AWS emulator ({len(created)} resources): "
            f"emulator start {aws.startup_seconds:.1f}s, synth {synth_time:.1f}s, "
            + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in terraform.times.items())
        )
