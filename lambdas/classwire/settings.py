"""Runtime settings of the Lambdas, carried in their environment variables.

The infrastructure config builds a `Settings` per environment and writes it with `to_env()`;
each handler reads it back once per execution environment with `Settings.from_env()`.
Both sides use this module, so a variable's name is written exactly once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# API Gateway closes a connection after 2 hours; records outlive that so a live one is never expired.
CONNECTION_TTL_SECONDS = 3 * 3600
# A connection is not open until $connect returns (at most API Gateway's 29 s integration timeout after
# its join), and a post to it until then fails as gone: a 410 that soon after the join proves nothing.
CONNECTING_GRACE_SECONDS = 30
# A resend with the same sender and id within this window yields the original event. The clients never
# resend an id more than RESEND_WINDOW_SECONDS after its first attempt, so a resend always finds its record.
IDEMPOTENCY_WINDOW_SECONDS = 15 * 60
RESEND_WINDOW_SECONDS = 10 * 60
# An ended class stays ended this long unless a teacher reopens it (a week: past any reuse of its id).
ENDED_TTL_SECONDS = 7 * 24 * 3600
# Clients piggyback delivery telemetry on a ping this often (the client libraries' default); a report
# older than two intervals is stale, so a member whose client stopped reporting shows as unknown.
TELEMETRY_INTERVAL_SECONDS = 30
TELEMETRY_FRESH_SECONDS = 2 * TELEMETRY_INTERVAL_SECONDS
# API Gateway's WebSocket frame limit is 32 KB; replies stay below it with room for the envelope.
FRAME_LIMIT_BYTES = 32 * 1024


class SettingsError(ValueError):
    """A setting is missing or out of range; the message names the variable."""


@dataclass(frozen=True)
class Limits:
    """What one user, connection or classroom may use (README, "Limits"); every bound has its error."""

    max_data_bytes: int = 16 * 1024
    # `send`, per user and classroom (over all the user's connections); a connection that keeps sending
    # past it is closed, and reconnecting does not refill it.
    rate_per_second: float = 20.0
    rate_burst: int = 40
    # Every other action (sync, who, ping, and refused frames), per user and classroom, in its own bucket.
    read_rate_per_second: float = 10.0
    read_rate_burst: int = 60
    # $connect per user and classroom: closing a flooder must not be undone by reconnecting at once.
    connect_rate_per_second: float = 0.5
    connect_burst: int = 10
    log_max_events: int = 10_000
    log_max_age_seconds: int = 24 * 3600
    # Frame bytes one classroom log may hold; the oldest events go first.
    log_max_bytes: int = 16 * 1024 * 1024
    max_connections_per_user: int = 5
    max_connections_per_classroom: int = 2_000
    # A user's leave is announced this long after its last connection went; a reconnect within it (API
    # Gateway's 2-hour close, a dropped Wi-Fi) announces nothing. 0: at once.
    presence_grace_seconds: int = 30
    # Above this many users a classroom is crowded (until it falls to 3/4 of it): students' joins and leaves
    # go to the teachers only, and students see an occupancy count, so a class start costs O(N), not O(N^2).
    presence_live_max_users: int = 100

    def validate(self) -> None:
        if not 1 <= self.max_data_bytes <= FRAME_LIMIT_BYTES // 2:
            raise SettingsError(
                f"max_data_bytes must be 1..{FRAME_LIMIT_BYTES // 2}, got {self.max_data_bytes}"
            )
        if (
            min(self.rate_per_second, self.read_rate_per_second) <= 0
            or min(self.rate_burst, self.read_rate_burst) < 1
        ):
            raise SettingsError("rates must be > 0 and bursts >= 1")
        if self.log_max_events < 1 or self.log_max_age_seconds < 60:
            raise SettingsError("log_max_events must be >= 1 and log_max_age_seconds >= 60")
        if self.log_max_bytes < 4 * FRAME_LIMIT_BYTES:
            # The newest event always stays, so the budget must hold a few of the largest.
            raise SettingsError(f"log_max_bytes must be >= {4 * FRAME_LIMIT_BYTES}, got {self.log_max_bytes}")
        if not 0 <= self.presence_grace_seconds <= 300:
            raise SettingsError(f"presence_grace_seconds must be 0..300, got {self.presence_grace_seconds}")
        if self.presence_live_max_users < 2:
            raise SettingsError(f"presence_live_max_users must be >= 2, got {self.presence_live_max_users}")
        if self.max_connections_per_user < 1 or self.max_connections_per_classroom < 1:
            raise SettingsError("max_connections_per_user and max_connections_per_classroom must be >= 1")


@dataclass(frozen=True)
class FanoutSettings:
    """How one invocation posts a classroom's events in rounds (README, "Batching")."""

    # A flusher that takes the lease waits this long before its first round, so that more events join it
    # (0: a quiet classroom's event goes out at once).
    linger_ms: int = 0
    # A flusher starts no round after this long; what is left waits for the next invocation that finds the
    # lease free. Below the Lambda timeout by at least one round's worst case.
    budget_ms: int = 3_000
    # The lease outlives its flusher by at most this much (a flusher that died mid-round): the Lambda timeout.
    lease_ms: int = 10_000

    def validate(self) -> None:
        if not 0 <= self.linger_ms <= 1_000:
            raise SettingsError(f"fanout linger_ms must be 0..1000, got {self.linger_ms}")
        if not 0 < self.budget_ms < self.lease_ms:
            raise SettingsError("fanout budget_ms must be > 0 and below lease_ms")
        if self.linger_ms >= self.budget_ms:
            raise SettingsError("fanout linger_ms must be below budget_ms")


@dataclass(frozen=True)
class JwtSettings:
    """How the authorizer verifies tokens: HS256 with a Secrets Manager secret, or RS256/ES256 via JWKS."""

    algorithms: tuple[str, ...] = ("HS256",)
    secret_arn: str = ""
    jwks_url: str = ""
    issuer: str = ""
    audience: str = ""
    leeway_seconds: int = 30
    # How long a fetched JWKS is trusted: a key removed from it is refused at most this much later.
    jwks_lifespan_seconds: int = 300

    def validate(self) -> None:
        if not self.algorithms:
            raise SettingsError("jwt algorithms must not be empty")
        symmetric = {a for a in self.algorithms if a.startswith("HS")}
        asymmetric = {a for a in self.algorithms if a[:2] in ("RS", "ES", "PS")}
        if symmetric and asymmetric:
            # Mixing them is what makes algorithm-confusion attacks possible.
            raise SettingsError("jwt algorithms must be all HMAC or all public-key, not both")
        if symmetric - {"HS256", "HS384", "HS512"} or asymmetric - {
            "RS256",
            "ES256",
            "RS384",
            "ES384",
            "PS256",
        }:
            raise SettingsError(f"unsupported jwt algorithms: {self.algorithms}")
        if symmetric and not self.secret_arn:
            raise SettingsError("HMAC jwt algorithms need secret_arn")
        if asymmetric and not self.jwks_url:
            raise SettingsError("public-key jwt algorithms need jwks_url")
        if not 0 <= self.leeway_seconds <= 300:
            raise SettingsError("jwt leeway_seconds must be 0..300")
        if not 10 <= self.jwks_lifespan_seconds <= 3600:
            raise SettingsError("jwt jwks_lifespan_seconds must be 10..3600")


@dataclass(frozen=True)
class RedisSettings:
    """Where the connection registry and classroom logs live, and how to authenticate."""

    url: str = "redis://127.0.0.1:6379/0"
    # "none" (local), or "iam": ElastiCache RBAC with an IAM auth token, so no password exists at all.
    auth: str = "none"
    user: str = ""
    cache_name: str = ""
    # A Redis Cluster (ElastiCache cluster mode): `url` is its configuration endpoint, and each script goes
    # to its classroom's shard.
    cluster: bool = False

    def validate(self) -> None:
        if not self.url.startswith(("redis://", "rediss://")):
            raise SettingsError(f"redis url must start with redis:// or rediss://, got {self.url!r}")
        if self.auth not in ("none", "iam"):
            raise SettingsError(f"redis auth must be 'none' or 'iam', got {self.auth!r}")
        if self.auth == "iam" and not (self.user and self.cache_name and self.url.startswith("rediss://")):
            raise SettingsError("redis iam auth needs user, cache_name and a rediss:// url")


@dataclass(frozen=True)
class Settings:
    redis: RedisSettings = field(default_factory=RedisSettings)
    jwt: JwtSettings = field(default_factory=JwtSettings)
    limits: Limits = field(default_factory=Limits)
    fanout: FanoutSettings = field(default_factory=FanoutSettings)
    # Overrides the @connections endpoint computed from the event (custom domains, local cloud).
    management_endpoint: str = ""
    service_name: str = "classwire"
    metrics_namespace: str = "Classwire"
    log_level: str = "INFO"

    def validate(self) -> Settings:
        self.redis.validate()
        self.jwt.validate()
        self.limits.validate()
        self.fanout.validate()
        return self

    def to_env(self) -> dict[str, str]:
        """The Lambda environment variables that carry these settings."""
        return {name: _format(_get(self, path)) for name, path in _VARIABLES.items()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, dict[str, Any]] = {"": {}}  # each value parsed to its field's type
        defaults = cls()
        for name, path in _VARIABLES.items():
            default = _get(defaults, path)
            raw = environ.get(name)
            value = default if raw is None else _parse(name, raw, default)
            section, _, attr = path.rpartition(".")
            values.setdefault(section, {})[attr] = value
        return cls(
            redis=RedisSettings(**values["redis"]),
            jwt=JwtSettings(**values["jwt"]),
            limits=Limits(**values["limits"]),
            fanout=FanoutSettings(**values["fanout"]),
            **values[""],
        ).validate()


# Environment variable -> attribute path. Powertools reads its own two variables directly.
_VARIABLES: dict[str, str] = {
    "CLASSWIRE_REDIS_URL": "redis.url",
    "CLASSWIRE_REDIS_AUTH": "redis.auth",
    "CLASSWIRE_REDIS_USER": "redis.user",
    "CLASSWIRE_REDIS_CACHE_NAME": "redis.cache_name",
    "CLASSWIRE_REDIS_CLUSTER": "redis.cluster",
    "CLASSWIRE_JWT_ALGORITHMS": "jwt.algorithms",
    "CLASSWIRE_JWT_SECRET_ARN": "jwt.secret_arn",
    "CLASSWIRE_JWT_JWKS_URL": "jwt.jwks_url",
    "CLASSWIRE_JWT_ISSUER": "jwt.issuer",
    "CLASSWIRE_JWT_AUDIENCE": "jwt.audience",
    "CLASSWIRE_JWT_LEEWAY_SECONDS": "jwt.leeway_seconds",
    "CLASSWIRE_JWT_JWKS_LIFESPAN_SECONDS": "jwt.jwks_lifespan_seconds",
    "CLASSWIRE_MAX_DATA_BYTES": "limits.max_data_bytes",
    "CLASSWIRE_RATE_PER_SECOND": "limits.rate_per_second",
    "CLASSWIRE_RATE_BURST": "limits.rate_burst",
    "CLASSWIRE_READ_RATE_PER_SECOND": "limits.read_rate_per_second",
    "CLASSWIRE_READ_RATE_BURST": "limits.read_rate_burst",
    "CLASSWIRE_CONNECT_RATE_PER_SECOND": "limits.connect_rate_per_second",
    "CLASSWIRE_CONNECT_BURST": "limits.connect_burst",
    "CLASSWIRE_LOG_MAX_EVENTS": "limits.log_max_events",
    "CLASSWIRE_LOG_MAX_AGE_SECONDS": "limits.log_max_age_seconds",
    "CLASSWIRE_LOG_MAX_BYTES": "limits.log_max_bytes",
    "CLASSWIRE_MAX_CONNECTIONS_PER_USER": "limits.max_connections_per_user",
    "CLASSWIRE_MAX_CONNECTIONS_PER_CLASSROOM": "limits.max_connections_per_classroom",
    "CLASSWIRE_PRESENCE_GRACE_SECONDS": "limits.presence_grace_seconds",
    "CLASSWIRE_PRESENCE_LIVE_MAX_USERS": "limits.presence_live_max_users",
    "CLASSWIRE_FANOUT_LINGER_MS": "fanout.linger_ms",
    "CLASSWIRE_FANOUT_BUDGET_MS": "fanout.budget_ms",
    "CLASSWIRE_FANOUT_LEASE_MS": "fanout.lease_ms",
    "CLASSWIRE_MANAGEMENT_ENDPOINT": "management_endpoint",
    "POWERTOOLS_SERVICE_NAME": "service_name",
    "POWERTOOLS_METRICS_NAMESPACE": "metrics_namespace",
    "POWERTOOLS_LOG_LEVEL": "log_level",
}


def _get(settings: Settings, path: str) -> object:
    value: object = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _format(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _parse(name: str, raw: str, default: object) -> object:
    try:
        if isinstance(default, tuple):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a valid {type(default).__name__}") from exc
    return raw
