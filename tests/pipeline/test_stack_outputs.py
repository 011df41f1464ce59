"""scripts/stack_outputs.py: `terraform output -json` as the typed outputs of a stack, from a file and from
a real `terraform output` of a local-state config with the stack's output names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from scripts import stack_outputs

VALUES: dict[str, Any] = {
    "websocket_url": "wss://abc123.execute-api.us-east-1.amazonaws.com/dev",
    "management_endpoint": "https://abc123.execute-api.us-east-1.amazonaws.com/dev",
    "api_id": "abc123",
    "stage": "dev",
    "region": "us-east-1",
    "function_names": {"connect": "classwire-dev-connect", "message": "classwire-dev-message"},
    "redis_endpoint": "master.classwire-dev.abc.use1.cache.amazonaws.com",
    "jwt_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:classwire/dev/jwt-signing-key-AbCdEf",
}


def terraform_output_json(values: dict) -> dict:
    return {
        name: {"sensitive": False, "type": "string" if isinstance(v, str) else ["map", "string"], "value": v}
        for name, v in values.items()
    }


def test_reads_every_output_from_a_file(tmp_path, capsys):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(terraform_output_json({**VALUES, "custom_domain_target": "d-1.example"})))
    outputs = stack_outputs.load(file=path)
    assert outputs.websocket_url == VALUES["websocket_url"]
    assert outputs.function_names["message"] == "classwire-dev-message"
    assert outputs.extra == {"custom_domain_target": "d-1.example"}
    assert stack_outputs.main(["--file", str(path), "websocket_url"]) == 0
    assert capsys.readouterr().out == VALUES["websocket_url"] + "\n"
    assert stack_outputs.main(["--file", str(path), "function_names"]) == 0
    assert json.loads(capsys.readouterr().out) == VALUES["function_names"]
    assert stack_outputs.main(["--file", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["api_id"] == "abc123"


def test_missing_outputs_and_unapplied_stacks_are_errors(tmp_path, capsys):
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(terraform_output_json({"websocket_url": "wss://x/dev"})))
    assert stack_outputs.main(["--file", str(partial)]) == 1
    assert "outputs missing: management_endpoint" in capsys.readouterr().err
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    with pytest.raises(stack_outputs.OutputsError, match="no outputs"):
        stack_outputs.load(file=empty)
    assert stack_outputs.main(["--file", str(tmp_path / "outputs.json")]) == 1
    with pytest.raises(stack_outputs.OutputsError, match="does not exist"):
        stack_outputs.read_terraform_outputs(tmp_path / "nowhere")


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_reads_real_terraform_outputs(tmp_path):
    config = {"output": {name: {"value": value} for name, value in VALUES.items()}}
    (tmp_path / "main.tf.json").write_text(json.dumps(config))
    environment = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    for command in (["init", "-no-color"], ["apply", "-auto-approve", "-no-color"]):
        run = subprocess.run(
            ["terraform", *command],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
    outputs = stack_outputs.StackOutputs.from_terraform_json(stack_outputs.read_terraform_outputs(tmp_path))
    assert outputs.as_dict() == VALUES
