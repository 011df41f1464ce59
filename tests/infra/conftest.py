"""Fixtures for the infrastructure tests: every environment is synthesized once per session, from a small
placeholder zip (no `make build` needed), into a temporary cdktf.out."""

from __future__ import annotations

import json
import os
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from classwire_infra.paths import ROOT

ENVIRONMENTS = ("local", "dev", "staging", "prod")
# The dev-shaped stack pointed at an emulator, as `python -m classwire_infra.synth --env dev --aws-endpoint URL` writes it.
EMULATOR_ENDPOINT = "http://127.0.0.1:4566"


def blocks_all_public_access(block: dict) -> bool:
    """An `aws_s3_bucket_public_access_block` with all four of its switches on."""
    return all(
        block[flag] is True
        for flag in (
            "block_public_acls",
            "block_public_policy",
            "ignore_public_acls",
            "restrict_public_buckets",
        )
    )


def assert_has_resource(synthesized: str, resource_type: str, properties: dict) -> None:
    """cdktf's matcher, asserted: it returns whether some `resource_type` has `properties` (a subset match)
    and never raises, so a bare call cannot fail (ruff's TID251 bans it everywhere but here)."""
    from cdktf import Testing

    found = Testing.to_have_resource_with_properties(synthesized, resource_type, properties)  # noqa: TID251
    assert found, f"no {resource_type} has {properties}"


def write_placeholder_zip(path: Path) -> Path:
    """A deterministic stand-in for the Lambda package: fixed names, bytes and timestamps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("classwire/__init__.py", date_time=(2020, 1, 1, 0, 0, 0))
        archive.writestr(info, '"""placeholder package for infrastructure tests"""\n')
    return path


class Synthesized:
    """One synthesized stack: its directory, its parsed JSON and how long synthesis took."""

    def __init__(self, name: str, directory: Path, seconds: float, env: str | None = None):
        self.name = name
        self.env = env or name
        self.directory = directory
        self.file = directory / "cdk.tf.json"
        self.text = self.file.read_text()
        self.json = json.loads(self.text)
        self.seconds = seconds

    def resources(self, resource_type: str) -> dict[str, dict]:
        return self.json.get("resource", {}).get(resource_type, {})

    def data(self, data_type: str) -> dict[str, dict]:
        return self.json.get("data", {}).get(data_type, {})

    @property
    def resource_count(self) -> int:
        return sum(len(block) for block in self.json.get("resource", {}).values())


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """Laid out like the repository, so the zip path Terraform sees is `../../../dist/...` as in real use."""
    root = tmp_path_factory.mktemp("infra")
    write_placeholder_zip(root / "dist" / "classwire-lambda-placeholder.zip")
    return root


@pytest.fixture(scope="session")
def placeholder_zip(workspace) -> Path:
    return workspace / "dist" / "classwire-lambda-placeholder.zip"


@pytest.fixture(scope="session")
def stacks(workspace, placeholder_zip) -> dict[str, Synthesized]:
    """Every environment, plus `emulator` (dev's shape on the emulator), synthesized once."""
    from classwire_infra.synth import synth

    out = workspace / "cdktf.out"
    result: dict[str, Synthesized] = {}
    for name in ENVIRONMENTS:
        started = time.monotonic()
        directory = synth(name, out=out, zip_file=placeholder_zip)
        result[name] = Synthesized(name, directory, time.monotonic() - started)
    started = time.monotonic()
    directory = synth(
        "dev", out=workspace / "cdktf.out.emulator", aws_endpoint=EMULATOR_ENDPOINT, zip_file=placeholder_zip
    )
    result["emulator"] = Synthesized("emulator", directory, time.monotonic() - started, env="dev")
    return result


@pytest.fixture(scope="session")
def terraform_environment(tmp_path_factory) -> dict[str, str]:
    """Environment for `terraform`: providers from the machine's mirror (scripts/terraform-cli-config)."""
    config = tmp_path_factory.mktemp("terraform") / "terraformrc"
    subprocess.run(
        [str(ROOT / "scripts" / "terraform-cli-config"), str(config)],
        check=True,
        capture_output=True,
        text=True,
    )
    return {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(config),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    }


@pytest.fixture(scope="session")
def metrics(stacks):
    """Numbers the infrastructure tests measure, written to build/infra-metrics.json at the end."""
    recorded: dict[str, dict] = {
        name: {"resources": stack.resource_count, "synth_seconds": round(stack.seconds, 2)}
        for name, stack in stacks.items()
    }
    yield recorded
    target = ROOT / "build" / "infra-metrics.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
