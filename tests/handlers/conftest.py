"""The handlers' surroundings: real Redis (at `redis_url`, which a module may route through a fault proxy)
and a local @connections stub that checks every SigV4 signature."""

from __future__ import annotations

import pytest

from bench.connections_stub import TEST_REGION, ManagementStub
from classwire import runtime

CREDENTIALS = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


@pytest.fixture
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def stub(redis_client, redis_url, monkeypatch):
    with ManagementStub(verify=CREDENTIALS) as stub:
        monkeypatch.setenv("CLASSWIRE_REDIS_URL", redis_url)
        monkeypatch.setenv("CLASSWIRE_MANAGEMENT_ENDPOINT", stub.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS[0])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS[1])
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.setenv("AWS_REGION", TEST_REGION)
        # Leaves at once: these tests are of the handlers; the presence grace has tests of its own.
        monkeypatch.setenv("CLASSWIRE_PRESENCE_GRACE_SECONDS", "0")
        # Settings are validated as a whole; these handlers never read the secret.
        monkeypatch.setenv(
            "CLASSWIRE_JWT_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:jwt"
        )
        runtime.reset()
        yield stub
        runtime.reset()
