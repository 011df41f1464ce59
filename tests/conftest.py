"""Shared fixtures: one real redis-server per test session, flushed between tests."""

from __future__ import annotations

import pytest

from localcloud.cache import RedisServer


@pytest.fixture(scope="session")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_client(redis_server):
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def log_lines():
    """The JSON log lines the Lambdas write, formatted by Powertools exactly as CloudWatch gets them."""
    import io
    import json
    import logging

    from classwire import runtime

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(runtime.logger.registered_formatter)
    runtime.logger._logger.addHandler(handler)

    def read() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    read.text = buffer.getvalue  # type: ignore[attr-defined]
    yield read
    runtime.logger._logger.removeHandler(handler)


def _register_hypothesis_profiles() -> None:
    import os

    from hypothesis import settings

    settings.register_profile("ci", max_examples=200)
    # `make prove`: the full run (at least 10,000 examples over the fuzz and property tests together).
    settings.register_profile("prove", max_examples=5_000)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_register_hypothesis_profiles()
