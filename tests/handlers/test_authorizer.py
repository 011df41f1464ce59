"""The authorizer handler: API Gateway's REQUEST event in, a policy (or 401) out; secret from Secrets Manager."""

from __future__ import annotations

import time

import jwt
import pytest
from moto import mock_aws

from bench.events import LambdaContext, authorizer_event
from classwire import runtime
from classwire.handlers import authorizer
from tests.support.signing_secret import store_signing_secret

SECRET = "local-signing-key-0123456789abcdef0123456789"


@pytest.fixture
def configured(monkeypatch):
    with mock_aws():
        store_signing_secret(monkeypatch, SECRET)
        monkeypatch.setenv("CLASSWIRE_JWT_AUDIENCE", "classwire")
        runtime.reset()
        yield
        runtime.reset()


def token(**claims) -> str:
    body = {
        "sub": "bob",
        "role": "student",
        "classrooms": ["room-1"],
        "aud": "classwire",
        "exp": int(time.time()) + 60,
    }
    body.update(claims)
    return jwt.encode(body, SECRET, algorithm="HS256")


def invoke(event: dict):
    return authorizer.handler(event, LambdaContext())


def test_allows_a_granted_classroom_with_context(configured):
    event = authorizer_event(token(name="Bob"), "room-1")
    response = invoke(event)
    assert response["principalId"] == "bob"
    statement = response["policyDocument"]["Statement"][0]
    assert statement == {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}
    assert response["context"] == {"userId": "bob", "role": "student", "classroomId": "room-1", "name": "Bob"}
    # Context values must be strings, numbers or booleans for API Gateway.
    assert all(isinstance(v, (str, int, float, bool)) for v in response["context"].values())


def test_denies_a_classroom_not_granted_with_403_policy(configured):
    response = invoke(authorizer_event(token(), "room-2"))
    assert response["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "context" not in response


@pytest.mark.parametrize("bad", [None, "", "garbage", "token-in-wrong-param"])
def test_unauthorized_raises_the_401_signal(configured, bad):
    event = authorizer_event(None if bad == "token-in-wrong-param" else bad, "room-1")
    if bad == "token-in-wrong-param":
        event["queryStringParameters"]["access_token"] = token()
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        invoke(event)


def test_never_logs_the_token(configured, log_lines):
    good, expired = token(), token(exp=int(time.time()) - 3600)
    invoke(authorizer_event(good, "room-1"))
    invoke(authorizer_event(good, "room-9"))
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        invoke(authorizer_event(expired, "room-1"))
    output = log_lines.text()
    assert any(line.get("reason") == "invalid token: ExpiredSignatureError" for line in log_lines())
    for secret_part in (good, expired, good.split(".")[2], expired.split(".")[1]):
        assert secret_part not in output


def test_secret_is_read_once_and_cached(configured, monkeypatch):
    calls: list[str] = []
    original = runtime.read_secret

    def counted(secret_arn: str) -> str:
        calls.append(secret_arn)
        return original(secret_arn)

    runtime.reset()
    monkeypatch.setattr(runtime, "read_secret", counted)
    for _ in range(3):
        invoke(authorizer_event(token(), "room-1"))
    assert len(calls) == 1
