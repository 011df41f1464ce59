"""Every difference between environments, in one typed, frozen, self-validating object per environment.

`load(env)` returns the config of `local`, `dev`, `staging` or `prod`; nothing environment-specific is
written anywhere else in `terraform/`. The runtime part (`limits`, `jwt`) has the shape of the Lambdas'
own `classwire.settings`, so a limit is named once for the handlers and once here, not three times.
"""

from __future__ import annotations

import ipaddress
import platform
import re
import sys
from dataclasses import dataclass, field, replace
from typing import Literal

from classwire.settings import FanoutSettings, JwtSettings, Limits, SettingsError

ENVIRONMENTS = ("local", "dev", "staging", "prod")
PROJECT = "classwire"
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
# API Gateway gives up on an integration after 29 s, so a longer Lambda timeout only hides failures.
API_GATEWAY_INTEGRATION_TIMEOUT_SECONDS = 29

NatMode = Literal["single", "per_az"]


class ConfigError(ValueError):
    """An environment's config is invalid; the message names the environment and the field."""


# How the cache makes room when full. noeviction would refuse every write of every classroom at once;
# volatile-ttl would evict the short-lived idempotency records and registries before any log, and the LFU
# policies a record written once; LRU keeps what a classroom in session touches (README, "Limits").
EVICTION_POLICIES = ("allkeys-lru", "volatile-lru")
DEFAULT_EVICTION_POLICY = "allkeys-lru"


@dataclass(frozen=True)
class StateBackend:
    """Where Terraform keeps this environment's state: an S3 object with a native lock file next to it."""

    bucket: str
    key: str
    region: str


@dataclass(frozen=True)
class CustomDomain:
    """A regional custom domain for the WebSocket API; its DNS record is managed where the zone lives."""

    domain_name: str
    certificate_arn: str


@dataclass(frozen=True)
class EnvConfig:
    name: str
    region: str
    # Named here, not read from a data source, so a plan needs no AWS call.
    availability_zones: tuple[str, ...]
    vpc_cidr: str
    # One NAT gateway per AZ survives an AZ outage; a single one is cheaper (dev).
    nat_mode: NatMode

    redis_node_type: str
    redis_replicas: int
    redis_automatic_failover: bool
    redis_snapshot_retention_days: int
    # ElastiCache cluster mode: the classrooms spread over this many shards, each a primary with
    # `redis_replicas` replicas (a classroom's keys share its hash tag, so it lives on one shard). 0: cluster
    # mode off, one primary holds every classroom.
    redis_shards: int = 0
    # ElastiCache RBAC with IAM authentication (no password anywhere); False only for the local cloud,
    # whose plain redis-server has no users.
    redis_iam_auth: bool = True
    redis_engine_version: str = "7.1"
    redis_parameter_family: str = "redis7"
    # Under memory pressure the least recently used keys go (idle classrooms' first; every key has a TTL, so
    # volatile-lru is the same). An evicted log restarts with a new epoch, and its clients get `reset`.
    redis_maxmemory_policy: str = DEFAULT_EVICTION_POLICY
    redis_maintenance_window: str = "sun:04:00-sun:05:00"
    redis_snapshot_window: str = "02:00-03:00"

    log_retention_days: int = 30
    # Packages the code bucket replaced expire after this many days; until then a rollback can re-point a
    # function to one. None (no lifecycle rule) only for the local cloud: the emulator expires nothing, and
    # the AWS provider spends about 55 s confirming a new lifecycle rule, the longest wait of a local apply.
    replaced_package_days: int | None = 30
    lambda_memory_mb: int = 512
    lambda_timeout_seconds: int = 10
    # A fan-out round's flusher waits this long for more events to batch with (0: none; README, "Batching").
    fanout_linger_ms: int = 0
    lambda_architecture: Literal["arm64", "x86_64"] = "arm64"
    lambda_runtime: str = "python3.13"
    log_level: str = "INFO"

    stage_name: str = "live"
    throttling_rate_limit: float = 500.0
    throttling_burst_limit: int = 1000

    limits: Limits = field(default_factory=Limits)
    # How the authorizer verifies tokens. HMAC algorithms get a Secrets Manager secret created by the stack
    # (without a value: the identity provider team puts it); public-key algorithms need `jwt.jwks_url`.
    jwt: JwtSettings = field(default_factory=JwtSettings)
    jwt_secret_recovery_days: int = 7

    alarm_email: str | None = None
    custom_domain: CustomDomain | None = None
    # None: local state (the local environment, and any stack applied to the emulator).
    state: StateBackend | None = None
    # An AWS API emulator (moto) every provider endpoint points at; None for real AWS.
    aws_endpoint: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # -- derived --------------------------------------------------------------------------------------
    @property
    def stack_name(self) -> str:
        return f"{PROJECT}-{self.name}"

    @property
    def fanout(self) -> FanoutSettings:
        # The lease lasts as long as a flusher can live; rounds stop starting at 30 % of that, which
        # leaves the rest for the last round's slowest posts (3 s read timeout, one retry).
        timeout_ms = self.lambda_timeout_seconds * 1000
        return FanoutSettings(
            linger_ms=self.fanout_linger_ms, budget_ms=timeout_ms * 3 // 10, lease_ms=timeout_ms
        )

    @property
    def prefix(self) -> str:
        """The name prefix of every named resource of this environment."""
        return f"{PROJECT}-{self.name}"

    def code_bucket_name(self, account_id: str) -> str:
        """The bucket the Lambda package is deployed from (bucket names are global: the account and region
        keep each environment's own)."""
        return f"{self.prefix}-code-{self.region}-{account_id}"

    @property
    def lambda_zip(self) -> str:
        """The shared function package `make build ENV=<env>` writes (repository-relative)."""
        return f"dist/{PROJECT}-lambda-{self.lambda_architecture}-{self.lambda_runtime}.zip"

    @property
    def jwt_uses_secret(self) -> bool:
        return any(a.startswith("HS") for a in self.jwt.algorithms)

    @property
    def jwt_secret_name(self) -> str:
        return f"{PROJECT}/{self.name}/jwt-signing-key"

    @property
    def nat_gateway_count(self) -> int:
        return len(self.availability_zones) if self.nat_mode == "per_az" else 1

    @property
    def redis_node_count(self) -> int:
        return (self.redis_replicas + 1) * max(1, self.redis_shards)

    def private_subnet_cidrs(self) -> tuple[str, ...]:
        """A /20 (for a /16) per AZ for the Lambdas' ENIs and the cache nodes."""
        network = ipaddress.IPv4Network(self.vpc_cidr)
        blocks = list(network.subnets(new_prefix=network.prefixlen + 4))
        return tuple(str(blocks[i]) for i in range(len(self.availability_zones)))

    def public_subnet_cidrs(self) -> tuple[str, ...]:
        """Small subnets carved from the VPC's last block: they hold only the NAT gateways."""
        network = ipaddress.IPv4Network(self.vpc_cidr)
        last = list(network.subnets(new_prefix=network.prefixlen + 4))[-1]
        blocks = list(last.subnets(new_prefix=last.prefixlen + 4))
        return tuple(str(blocks[i]) for i in range(len(self.availability_zones)))

    def for_emulator(self, endpoint: str) -> EnvConfig:
        """This environment's shape applied to an AWS API emulator: every endpoint there, local state."""
        return replace(self, aws_endpoint=endpoint, state=None, custom_domain=None, alarm_email=None)

    # -- validation -----------------------------------------------------------------------------------
    def validate(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ConfigError(
                f"config of environment {self.name!r} is invalid:\n  - " + "\n  - ".join(problems)
            )

    def _problems(self):
        production_like = self.name in ("staging", "prod")
        if self.name not in ENVIRONMENTS:
            yield f"name must be one of {ENVIRONMENTS}"
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", self.region):
            yield f"region {self.region!r} is not an AWS region name"
        azs = self.availability_zones
        if len(azs) < 2:
            yield f"availability_zones: at least 2 are needed (a replica must live in another AZ), got {len(azs)}"
        if self.name == "prod" and len(azs) < 3:
            yield f"availability_zones: prod runs across 3 availability zones, got {len(azs)}"
        if len(set(azs)) != len(azs):
            yield "availability_zones: duplicates"
        if any(not re.fullmatch(re.escape(self.region) + r"[a-z]", az) for az in azs):
            yield f"availability_zones: every zone must be in region {self.region} (e.g. {self.region}a)"
        try:
            network = ipaddress.ip_network(self.vpc_cidr)
            if not network.is_private or not 16 <= network.prefixlen <= 20:
                yield f"vpc_cidr {self.vpc_cidr}: must be a private range of /16 to /20"
        except ValueError:
            yield f"vpc_cidr {self.vpc_cidr!r} is not a CIDR block"
        if self.nat_mode not in ("single", "per_az"):
            yield f"nat_mode must be 'single' or 'per_az', got {self.nat_mode!r}"
        if production_like and self.nat_mode != "per_az":
            yield "nat_mode: staging and prod need a NAT gateway per AZ (a single one is a single point of failure)"

        if not 1 <= self.redis_replicas <= 5:
            yield f"redis_replicas must be 1..5 (a primary plus at least one replica), got {self.redis_replicas}"
        if production_like and not self.redis_automatic_failover:
            yield "redis_automatic_failover: staging and prod must fail over automatically (Multi-AZ)"
        if self.name == "prod" and self.redis_replicas < 2:
            yield "redis_replicas: prod keeps at least 2 replicas, so a failover still leaves one"
        if not 0 <= self.redis_shards <= 500:
            yield f"redis_shards must be 0 (cluster mode off) .. 500, got {self.redis_shards}"
        if self.redis_shards and not self.redis_automatic_failover:
            yield "redis_automatic_failover: cluster mode fails a shard over by itself; it cannot be off"
        if not 0 <= self.redis_snapshot_retention_days <= 35:
            yield "redis_snapshot_retention_days must be 0..35"
        if self.name == "prod" and self.redis_snapshot_retention_days < 7:
            yield "redis_snapshot_retention_days: prod keeps at least 7 days of snapshots"
        if self.name != "local" and not self.redis_iam_auth:
            yield "redis_iam_auth: only the local cloud may run Redis without authentication"
        if self.redis_maxmemory_policy not in EVICTION_POLICIES:
            yield f"redis_maxmemory_policy must be one of {', '.join(EVICTION_POLICIES)}, got {self.redis_maxmemory_policy!r}"
        if not self.redis_engine_version.startswith("7."):
            yield "redis_engine_version must be 7.x (IAM authentication needs Redis 7)"

        if self.replaced_package_days is None and self.name != "local":
            yield "replaced_package_days: only the local cloud may keep replaced packages without expiry"
        if self.replaced_package_days is not None and self.replaced_package_days < 1:
            yield "replaced_package_days must be at least 1"
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            yield f"log_retention_days {self.log_retention_days} is not a CloudWatch Logs retention period"
        if not 128 <= self.lambda_memory_mb <= 10240:
            yield "lambda_memory_mb must be 128..10240"
        if not 1 <= self.lambda_timeout_seconds <= API_GATEWAY_INTEGRATION_TIMEOUT_SECONDS:
            yield f"lambda_timeout_seconds must be 1..{API_GATEWAY_INTEGRATION_TIMEOUT_SECONDS} (API Gateway's limit)"
        if self.lambda_architecture not in ("arm64", "x86_64"):
            yield "lambda_architecture must be arm64 or x86_64"
        if not re.fullmatch(r"python3\.\d+", self.lambda_runtime):
            yield f"lambda_runtime must look like python3.13, got {self.lambda_runtime!r}"
        try:
            self.fanout.validate()
        except SettingsError as error:
            yield str(error)
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            yield "log_level must be DEBUG, INFO, WARNING or ERROR"

        if not re.fullmatch(r"[A-Za-z0-9_]{1,128}", self.stage_name):
            yield "stage_name: letters, digits and _ only"
        if self.throttling_rate_limit <= 0 or self.throttling_burst_limit < 1:
            yield "throttling: rate must be > 0 and burst >= 1"

        try:
            self.limits.validate()
        except SettingsError as error:
            yield f"limits: {error}"
        try:
            # The secret's ARN only exists once the stack creates it; validate the rest with a stand-in.
            replace(self.jwt, secret_arn="arn:secret" if self.jwt_uses_secret else "").validate()
        except SettingsError as error:
            yield f"jwt: {error}"
        if self.jwt.jwks_url and not self.jwt.jwks_url.startswith("https://"):
            yield "jwt.jwks_url must be https://"
        if self.name == "prod" and self.jwt_uses_secret:
            yield "jwt: prod verifies tokens with the identity provider's public keys (RS256/ES256 + jwks_url)"
        if self.name != "local" and not (self.jwt.issuer and self.jwt.audience):
            yield "jwt: issuer and audience must be set outside the local environment"
        if not 0 <= self.jwt_secret_recovery_days <= 30 or self.jwt_secret_recovery_days in (
            1,
            2,
            3,
            4,
            5,
            6,
        ):
            yield "jwt_secret_recovery_days must be 0 (delete at once) or 7..30"

        if self.alarm_email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", self.alarm_email):
            yield f"alarm_email {self.alarm_email!r} is not an e-mail address"
        if self.custom_domain is not None:
            if not re.fullmatch(r"([a-z0-9-]+\.)+[a-z]{2,}", self.custom_domain.domain_name):
                yield f"custom_domain.domain_name {self.custom_domain.domain_name!r} is not a domain name"
            if not self.custom_domain.certificate_arn.startswith("arn:aws") or ":acm:" not in (
                self.custom_domain.certificate_arn
            ):
                yield "custom_domain.certificate_arn must be an ACM certificate ARN"
        if self.name == "local" and self.state is not None:
            yield "state: the local environment keeps local state"
        if self.name != "local" and self.state is None and self.aws_endpoint is None:
            yield "state: an S3 backend is required outside the local environment and the emulator"
        if self.aws_endpoint is not None and not re.fullmatch(r"https?://[^\s/]+/?", self.aws_endpoint):
            yield f"aws_endpoint {self.aws_endpoint!r} must be a base URL like http://127.0.0.1:5000"
        if self.aws_endpoint is not None and self.state is not None:
            yield "state: a stack applied to the emulator keeps local state"


def _state(env: str, region: str) -> StateBackend:
    # One bucket per environment (its own account in practice); bucket names are global, so an organisation
    # forking this changes the prefix here and nowhere else.
    return StateBackend(
        bucket=f"{PROJECT}-terraform-state-{env}", key=f"{PROJECT}/{env}/terraform.tfstate", region=region
    )


def _host_architecture() -> Literal["arm64", "x86_64"]:
    return "x86_64" if platform.machine().lower() in ("x86_64", "amd64") else "arm64"


def _configs() -> dict[str, EnvConfig]:
    region = "us-east-1"
    return {
        # The local cloud: this machine's Python and CPU, the emulator's endpoint, plain redis-server.
        "local": EnvConfig(
            name="local",
            region=region,
            availability_zones=(f"{region}a", f"{region}b"),
            vpc_cidr="10.10.0.0/16",
            nat_mode="single",
            redis_node_type="cache.t4g.micro",
            redis_replicas=1,
            redis_automatic_failover=True,
            redis_snapshot_retention_days=1,
            redis_iam_auth=False,
            log_retention_days=7,
            replaced_package_days=None,
            lambda_memory_mb=256,
            lambda_architecture=_host_architecture(),
            lambda_runtime=f"python3.{sys.version_info.minor}",
            log_level="DEBUG",
            stage_name="local",
            throttling_rate_limit=100.0,
            throttling_burst_limit=200,
            jwt=JwtSettings(algorithms=("HS256",)),
            jwt_secret_recovery_days=0,
            aws_endpoint="http://127.0.0.1:5000",
        ),
        "dev": EnvConfig(
            name="dev",
            region=region,
            availability_zones=(f"{region}a", f"{region}b"),
            vpc_cidr="10.20.0.0/16",
            nat_mode="single",
            redis_node_type="cache.t4g.small",
            redis_replicas=1,
            # Failover costs nothing with a replica already running, and dev should fail like prod does.
            redis_automatic_failover=True,
            redis_snapshot_retention_days=1,
            log_retention_days=14,
            lambda_memory_mb=512,
            stage_name="dev",
            throttling_rate_limit=100.0,
            throttling_burst_limit=200,
            # A shared HMAC secret is acceptable for dev: the identity provider team puts its value.
            jwt=JwtSettings(
                algorithms=("HS256",), issuer="https://auth.dev.example.edu/", audience="classwire-dev"
            ),
            state=_state("dev", region),
        ),
        "staging": EnvConfig(
            name="staging",
            region=region,
            availability_zones=(f"{region}a", f"{region}b", f"{region}c"),
            vpc_cidr="10.30.0.0/16",
            nat_mode="per_az",
            redis_node_type="cache.r7g.large",
            redis_replicas=2,
            redis_automatic_failover=True,
            redis_snapshot_retention_days=3,
            log_retention_days=30,
            lambda_memory_mb=1024,
            stage_name="staging",
            throttling_rate_limit=500.0,
            throttling_burst_limit=1000,
            jwt=JwtSettings(
                algorithms=("RS256", "ES256"),
                issuer="https://auth.staging.example.edu/",
                audience="classwire-staging",
                jwks_url="https://auth.staging.example.edu/.well-known/jwks.json",
            ),
            state=_state("staging", region),
        ),
        "prod": EnvConfig(
            name="prod",
            region=region,
            availability_zones=(f"{region}a", f"{region}b", f"{region}c"),
            vpc_cidr="10.40.0.0/16",
            nat_mode="per_az",
            redis_node_type="cache.r7g.large",
            redis_replicas=2,
            # Cluster mode with one shard: the same three nodes as without it (the reference profile fits
            # one), and the platform grows by adding shards online, with no new endpoint or client.
            redis_shards=1,
            redis_automatic_failover=True,
            redis_snapshot_retention_days=7,
            log_retention_days=365,
            replaced_package_days=90,
            lambda_memory_mb=1024,
            stage_name="prod",
            # The reference profile's peak is ~3,700 requests/s from the clients (`make cost ENV=prod`); its
            # @connections posts need the account's throttle raised as well (README, "Cost").
            throttling_rate_limit=5000.0,
            throttling_burst_limit=10000,
            # Placeholder identity provider: replace issuer, audience and jwks_url with the real ones.
            jwt=JwtSettings(
                algorithms=("RS256", "ES256"),
                issuer="https://auth.example.edu/",
                audience="classwire",
                jwks_url="https://auth.example.edu/.well-known/jwks.json",
            ),
            jwt_secret_recovery_days=30,
            alarm_email="classwire-oncall@example.edu",
            state=_state("prod", region),
        ),
    }


def load(env: str) -> EnvConfig:
    """The validated config of one environment."""
    configs = _configs()
    if env not in configs:
        raise ConfigError(f"unknown environment {env!r}; choose one of {', '.join(ENVIRONMENTS)}")
    return configs[env]
