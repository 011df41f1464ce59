"""What one Lambda execution environment builds once and reuses across invocations: settings,
the Redis client, the @connections clients, logger and metrics.

Redis and the fan-out client are imported where first used, so the authorizer's cold start never
pays for them.
"""

from __future__ import annotations

import functools
import json
import os
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics

from classwire.settings import Settings

if TYPE_CHECKING:
    import redis
    import redis.cluster

    from classwire.auth import TokenVerifier
    from classwire.classroom import ClassroomService
    from classwire.classroom_store import ClassroomStore
    from classwire.management_api import ManagementApi

# Powertools reads these variables itself; the defaults keep a missing one from failing every flush.
# ASCII JSON: a value with an unpaired surrogate (a hostile frame or event) is escaped, not a write error
# that would lose the log line.
logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", Settings.service_name),
    json_serializer=functools.partial(json.dumps, separators=(",", ":"), default=str, ensure_ascii=True),
)
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", Settings.metrics_namespace),
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", Settings.service_name),
)


# Every log line carries the invocation's API Gateway request id as its correlation_id (beside the Lambda
# request id and cold start that inject_lambda_context adds): one id finds a frame's whole path.
API_GATEWAY_REQUEST_ID = "requestContext.requestId"


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


@functools.cache
def redis_client() -> redis.Redis | redis.cluster.RedisCluster:
    import redis
    import redis.cluster
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError
    from redis.retry import Retry

    config = settings().redis
    credential_provider = None
    if config.auth == "iam":
        from classwire.redis_iam import IamAuthTokenProvider  # botocore only where IAM auth is used

        credential_provider = IamAuthTokenProvider(config.user, config.cache_name)
    # A failover moves the primary endpoint (or, in a cluster, a shard's primary): a connection error or
    # READONLY reply means reconnect (which re-resolves it) and try again. Every script is safe to repeat.
    retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=6)
    options = {
        "credential_provider": credential_provider,
        "socket_timeout": 2,
        "socket_connect_timeout": 2,
        "health_check_interval": 30,
    }
    if config.cluster:
        # The cluster client follows MOVED and ASK replies and refreshes its slot map after a failover.
        return redis.cluster.RedisCluster.from_url(config.url, retry=retry, **options)
    return redis.Redis.from_url(
        config.url, retry=retry, retry_on_error=[ConnectionError, TimeoutError, ReadOnlyError], **options
    )


@functools.cache
def management_api(endpoint: str) -> ManagementApi:
    from classwire.management_api import ManagementApi

    return ManagementApi.from_environment(endpoint)


@functools.cache
def classroom_store() -> ClassroomStore:
    from classwire.classroom_store import ClassroomStore

    return ClassroomStore(redis_client(), settings().limits, settings().fanout)


def classroom_service(domain_name: str, stage: str) -> ClassroomService:
    from classwire.classroom import ClassroomService

    return ClassroomService(
        store=classroom_store(),
        connections=management_api(management_endpoint(domain_name, stage)),
        limits=settings().limits,
        fanout=settings().fanout,
        metric=lambda name, unit, value: metrics.add_metric(name=name, unit=unit, value=value),
    )


def management_endpoint(domain_name: str, stage: str) -> str:
    """The @connections endpoint for this API: configured (custom domain, local cloud) or the event's."""
    return settings().management_endpoint or f"https://{domain_name}/{stage}"


@functools.cache
def token_verifier() -> TokenVerifier:
    """The authorizer's verifier: the JWKS's keys, or the HS256 secret read once from Secrets Manager."""
    from classwire.auth import CachedSecret, JwksKeys, TokenVerifier

    jwt_settings = settings().jwt
    if jwt_settings.jwks_url:
        return TokenVerifier(
            jwt_settings, JwksKeys(jwt_settings.jwks_url, jwt_settings.jwks_lifespan_seconds)
        )
    return TokenVerifier(jwt_settings, CachedSecret(functools.partial(read_secret, jwt_settings.secret_arn)))


def read_secret(secret_arn: str) -> str:
    import boto3  # from the Lambda runtime; imported on first use so a JWKS setup never pays for it

    return boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]


# Everything above that an execution environment builds once (tests/handlers/test_log_context.py checks
# that no cached builder is missing here).
CACHED = (settings, redis_client, management_api, classroom_store, token_verifier)


def reset() -> None:
    """Forget what this execution environment built, as a new one would start (tests change settings)."""
    for cached in CACHED:
        cached.cache_clear()
