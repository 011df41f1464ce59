"""The environment config: every difference in one frozen object, refused with a clear message when unsafe."""

from __future__ import annotations

import dataclasses
import platform
import sys

import pytest

from classwire.settings import JwtSettings
from classwire_infra.config import ENVIRONMENTS, ConfigError, CustomDomain, load


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_environment_loads_and_is_frozen(env):
    config = load(env)
    assert config.name == env
    assert config.stack_name == f"classwire-{env}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.region = "eu-west-1"  # type: ignore[misc]


def test_unknown_environment_is_refused():
    with pytest.raises(ConfigError, match="unknown environment 'qa'"):
        load("qa")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"availability_zones": ("us-east-1a",)}, "at least 2 are needed"),
        ({"availability_zones": ("us-east-1a", "us-east-1b")}, "prod runs across 3 availability zones"),
        ({"redis_automatic_failover": False}, "staging and prod must fail over automatically"),
        ({"nat_mode": "single"}, "staging and prod need a NAT gateway per AZ"),
        ({"redis_replicas": 1}, "prod keeps at least 2 replicas"),
        ({"redis_snapshot_retention_days": 0}, "prod keeps at least 7 days of snapshots"),
        ({"redis_iam_auth": False}, "only the local cloud may run Redis without authentication"),
        # A full cache that refuses writes stops every classroom at once.
        ({"redis_maxmemory_policy": "noeviction"}, "redis_maxmemory_policy must be one of"),
        ({"jwt": JwtSettings(algorithms=("HS256",), issuer="i", audience="a")}, "prod verifies tokens"),
        ({"jwt": JwtSettings(algorithms=("RS256",), issuer="i", audience="a")}, "need jwks_url"),
        ({"log_retention_days": 10}, "not a CloudWatch Logs retention period"),
        ({"replaced_package_days": None}, "only the local cloud may keep replaced packages"),
        ({"replaced_package_days": 0}, "replaced_package_days must be at least 1"),
        ({"lambda_timeout_seconds": 60}, "API Gateway's limit"),
        ({"availability_zones": ("eu-west-1a", "eu-west-1b", "eu-west-1c")}, "must be in region us-east-1"),
        ({"vpc_cidr": "8.8.0.0/16"}, "private range"),
        ({"state": None}, "S3 backend is required"),
        (
            {"custom_domain": CustomDomain("Not A Domain", "arn:aws:acm:us-east-1:1:certificate/x")},
            "domain name",
        ),
    ],
)
def test_unsafe_prod_configs_are_refused_with_a_clear_message(change, message):
    with pytest.raises(ConfigError, match=message) as error:
        dataclasses.replace(load("prod"), **change)
    assert "environment 'prod'" in str(error.value)


def test_staging_needs_nat_per_az_and_dev_may_share_one():
    assert load("dev").nat_mode == "single"
    with pytest.raises(ConfigError, match="NAT gateway per AZ"):
        dataclasses.replace(load("staging"), nat_mode="single")


def test_secure_defaults():
    for env in ("dev", "staging", "prod"):
        config = load(env)
        assert config.redis_iam_auth and config.state is not None and config.aws_endpoint is None
        assert config.state.bucket and config.state.key.endswith(f"{env}/terraform.tfstate")
        assert config.lambda_architecture == "arm64" and config.lambda_runtime == "python3.13"
    prod = load("prod")
    assert len(prod.availability_zones) == 3 and prod.redis_automatic_failover and prod.nat_mode == "per_az"
    assert not prod.jwt_uses_secret and prod.jwt.jwks_url.startswith("https://")
    assert load("dev").jwt_uses_secret


def test_local_runs_on_this_machine():
    local = load("local")
    assert local.state is None and local.aws_endpoint and not local.redis_iam_auth
    assert local.lambda_runtime == f"python3.{sys.version_info.minor}"
    assert local.lambda_architecture == ("x86_64" if platform.machine() in ("x86_64", "AMD64") else "arm64")


def test_zip_name_follows_architecture_and_runtime():
    assert load("dev").lambda_zip == "dist/classwire-lambda-arm64-python3.13.zip"


def test_subnets_fit_the_vpc_and_do_not_overlap():
    import ipaddress

    for env in ENVIRONMENTS:
        config = load(env)
        vpc = ipaddress.IPv4Network(config.vpc_cidr)
        blocks = [
            ipaddress.IPv4Network(c) for c in config.private_subnet_cidrs() + config.public_subnet_cidrs()
        ]
        assert len(blocks) == 2 * len(config.availability_zones)
        assert all(block.subnet_of(vpc) for block in blocks)
        assert not any(a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])


def test_emulator_variant_keeps_the_shape_and_switches_to_local_state():
    dev = load("dev")
    emulated = dev.for_emulator("http://127.0.0.1:4566")
    assert emulated.state is None and emulated.aws_endpoint == "http://127.0.0.1:4566"
    assert emulated.availability_zones == dev.availability_zones and emulated.redis_iam_auth
