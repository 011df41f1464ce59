"""Runtime settings: every field of the typed config reaches the Lambdas, and every bound is checked."""

from __future__ import annotations

import dataclasses

import pytest

from classwire.settings import (
    _VARIABLES,
    FanoutSettings,
    JwtSettings,
    Limits,
    RedisSettings,
    Settings,
    SettingsError,
)


def test_every_setting_travels_in_the_lambda_environment():
    carried = set(_VARIABLES.values())
    for section, cls in (
        ("limits", Limits),
        ("jwt", JwtSettings),
        ("redis", RedisSettings),
        ("fanout", FanoutSettings),
    ):
        for field in dataclasses.fields(cls):
            assert f"{section}.{field.name}" in carried, f"{section}.{field.name} has no variable"
    changed = Settings(
        limits=Limits(log_max_bytes=1 << 20, max_connections_per_user=2, read_rate_burst=9),
        jwt=JwtSettings(secret_arn="arn:x", jwks_lifespan_seconds=60),
        fanout=FanoutSettings(linger_ms=5, budget_ms=900, lease_ms=3000),
    )
    assert Settings.from_env(changed.to_env()) == changed


@pytest.mark.parametrize(
    "limits",
    [
        Limits(log_max_bytes=1000),
        Limits(max_connections_per_user=0),
        Limits(max_connections_per_classroom=0),
        Limits(read_rate_per_second=0),
        Limits(read_rate_burst=0),
    ],
)
def test_limits_out_of_range_are_refused(limits):
    with pytest.raises(SettingsError):
        limits.validate()


@pytest.mark.parametrize(
    "fanout",
    [
        FanoutSettings(linger_ms=-1),
        FanoutSettings(linger_ms=2000),
        FanoutSettings(budget_ms=0),
        FanoutSettings(budget_ms=10_000, lease_ms=10_000),
        FanoutSettings(linger_ms=500, budget_ms=400, lease_ms=1000),
    ],
)
def test_fanout_settings_out_of_range_are_refused(fanout):
    with pytest.raises(SettingsError):
        fanout.validate()


def test_the_fanout_lease_is_the_lambda_timeout_and_rounds_stop_at_30_percent_of_it():
    from classwire_infra.config import load

    prod = load("prod")
    assert prod.fanout == FanoutSettings(
        linger_ms=0, budget_ms=prod.lambda_timeout_seconds * 300, lease_ms=prod.lambda_timeout_seconds * 1000
    )
