"""The smoke test against the local system (real Redis, the AWS emulator, the gateway running the handlers):
with explicit tokens (staging/prod's path), with tokens it mints from the Secrets Manager key named by the
stack outputs (dev's path), and failing loudly when the tokens are refused."""

from __future__ import annotations

import json
import secrets

import pytest

from localcloud.system import JWT_SECRET_NAME, LocalSystem
from scripts import smoke_test


@pytest.fixture(scope="module")
def system():
    with LocalSystem(key=secrets.token_urlsafe(48)) as local:
        yield local


def outputs_file(tmp_path, system, secret_arn: str):
    document = {
        name: {"value": value, "type": "string", "sensitive": False}
        for name, value in {
            "websocket_url": system.websocket_url,
            "management_endpoint": system.management_endpoint,
            "api_id": "local",
            "stage": "local",
            "region": "us-east-1",
            "redis_endpoint": system.redis.url,
            "jwt_secret_arn": secret_arn,
        }.items()
    }
    document["function_names"] = {"value": {"message": "classwire-local-message"}, "type": "map"}
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(document))
    return path


def test_passes_with_explicit_tokens(system, capsys):
    classroom = f"smoke-{secrets.token_hex(4)}"
    code = smoke_test.main(
        [
            "--url",
            system.websocket_url,
            "--classroom",
            classroom,
            "--token",
            system.token("tess", classroom, "teacher"),
            "--token2",
            system.token("sam", classroom, "student"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert [line.split("  ", 1)[0] for line in lines[:-1]] == ["PASS"] * 5
    assert "chat reaches both in order with the same seq" in out and "a bad frame gets an error frame" in out
    assert lines[-1] == "smoke test passed: 5 passed, 0 failed"


def test_mints_tokens_from_the_secret_the_outputs_name(system, tmp_path, monkeypatch, capsys):
    for name, value in system.aws.client_environment.items():
        monkeypatch.setenv(name, value)
    arn = system.aws.client("secretsmanager").describe_secret(SecretId=JWT_SECRET_NAME)["ARN"]
    code = smoke_test.main(["--outputs-file", str(outputs_file(tmp_path, system, arn))])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "classroom smoke-" in out


def test_fails_with_one_line_per_check_when_refused(system, capsys):
    classroom = f"smoke-{secrets.token_hex(4)}"
    code = smoke_test.main(
        [
            "--url",
            system.websocket_url,
            "--classroom",
            classroom,
            "--token",
            "not-a-jwt",
            "--token2",
            system.token("sam", classroom, "student"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines()[0].startswith("FAIL  teacher and student connect: Refused: 401")
    assert out.splitlines()[-1] == "smoke test FAILED: 0 passed, 1 failed"


def test_refuses_to_start_without_tokens_or_a_signing_secret(system, tmp_path, capsys):
    code = smoke_test.main(["--outputs-file", str(outputs_file(tmp_path, system, ""))])
    assert code == 1
    assert "CLASSWIRE_SMOKE_TOKEN" in capsys.readouterr().out


def test_minted_tokens_are_short_lived_and_scoped_to_one_classroom():
    import jwt

    target = smoke_test.minted_target(
        "wss://x", "k" * 48, issuer="https://auth.dev.example.edu/", audience="classwire-dev"
    )
    claims = jwt.decode(target.teacher_token, "k" * 48, algorithms=["HS256"], audience="classwire-dev")
    assert claims["exp"] - claims["iat"] == 300 and claims["role"] == "teacher"
    assert claims["classrooms"] == [target.classroom] and target.classroom.startswith("smoke-")
    assert claims["iss"] == "https://auth.dev.example.edu/"
