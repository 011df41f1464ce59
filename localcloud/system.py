"""The whole system on this machine: Redis, the AWS emulator, the gateway running the handlers, the page.

`make deploy` builds the gateway's manifest from what `terraform apply` created in the emulator
(`localcloud.deploy`); tests that do not need Terraform build it from the route table with the same
runtime settings (`LocalSystem.from_route_table`). Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

import redis as redis_py

from classwire.settings import JwtSettings, Limits, RedisSettings, Settings
from classwire_infra.paths import ROOT
from localcloud import free_port
from localcloud.cache import RedisServer, ReplicationGroup, ShardedCluster
from localcloud.emulator import REGION, AwsEmulator
from localcloud.gateway import GatewayProcess, GatewayQuotas, GatewayThread, PostFaults
from localcloud.manifest import Manifest
from localcloud.redis_faults import LinkChaos, RedisFaultProxy
from localcloud.tokens import issue_token, signing_key

JWT_SECRET_NAME = "classwire/local/jwt-signing-key"


class LocalSystem:
    """Starts in dependency order and stops in reverse.

    `manifest=None` builds the API from the route table, running the handlers from `code` (a
    directory or a zip) with the runtime settings the local environment would get. `quotas` are API
    Gateway's service quotas the gateway enforces (the product's own limits are in its settings).

    For fault tests: `redis="replicated"` puts a primary and a replica behind a primary endpoint
    (`failover()` moves it, as ElastiCache does), and `gateway="process"` runs the gateway as its own
    process on a fixed port (`restart_gateway()`; clients reconnect to the same URL).
    `max_concurrency` is the number of execution environments per function. `redis_faults` puts a
    fault proxy between the functions and Redis (`redis_proxy`); `post_faults` makes the gateway's
    `@connections` throttle, fail or hang some POSTs; `kill_workers()` kills a function's execution
    environments mid-invocation. `limits` are the product's own (with `manifest=None`), for tests of a
    bound the defaults put out of reach.
    """

    def __init__(
        self,
        manifest: Manifest | None = None,
        *,
        code: Path = ROOT / "lambdas",
        quotas: GatewayQuotas | None = None,
        key: str = "",
        issuer: str = "",
        audience: str = "",
        gateway_port: int = 0,
        aws_port: int = 0,
        deploy: Callable[[AwsEmulator], Manifest] | None = None,
        redis: str = "single",
        gateway: str = "thread",
        max_concurrency: int = 10,
        redis_faults: LinkChaos | None = None,
        post_faults: PostFaults | None = None,
        limits: Limits | None = None,
    ):
        if redis not in ("single", "replicated", "cluster") or gateway not in ("thread", "process"):
            raise ValueError(
                f"redis must be single|replicated|cluster and gateway thread|process, got {redis}, {gateway}"
            )
        self.manifest = manifest
        self.code = code
        self.quotas = quotas or GatewayQuotas()
        self.key = key or signing_key()
        self.issuer = issuer
        self.audience = audience
        self.gateway_port = gateway_port or free_port()
        self.aws_port = aws_port
        # `deploy(aws)` applies the stack to the emulator and returns the API it created (make deploy).
        self.deploy = deploy
        self.redis_mode = redis
        self.gateway_mode = gateway
        self.max_concurrency = max_concurrency
        self.redis_faults = redis_faults
        self.post_faults = post_faults
        self.limits = limits or Limits()
        self.redis: RedisServer | ReplicationGroup | ShardedCluster | None = None
        self.redis_proxy: RedisFaultProxy | None = None
        self.aws: AwsEmulator | None = None
        self._gateway: GatewayThread | GatewayProcess | None = None
        self._stack = contextlib.ExitStack()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> LocalSystem:
        try:
            if self.redis_mode == "replicated":
                self.redis = self._stack.enter_context(ReplicationGroup())
            elif self.redis_mode == "cluster":
                if self.redis_faults is not None:
                    raise ValueError("the Redis fault proxy stands in front of one node, not a cluster")
                self.redis = self._stack.enter_context(ShardedCluster())
            else:
                self.redis = self._stack.enter_context(RedisServer())
            if self.redis_faults is not None:
                endpoint = int(self.redis.url.rsplit(":", 1)[1].split("/")[0])
                self.redis_proxy = self._stack.enter_context(RedisFaultProxy(endpoint, self.redis_faults))
            self.aws = self._stack.enter_context(AwsEmulator(self.aws_port or None))
            if self.deploy is not None:
                self.manifest = self.deploy(self.aws)
            secret_arn = self._store_signing_key()
            if self.manifest is None:
                settings = Settings(
                    redis=RedisSettings(url=self.redis.url, cluster=self.redis_mode == "cluster"),
                    jwt=JwtSettings(algorithms=("HS256",), secret_arn=secret_arn),
                    limits=self.limits,
                ).validate()
                self.manifest = Manifest.from_route_table(self.code, settings.to_env())
            if self.gateway_mode == "process":
                work_dir = Path(tempfile.mkdtemp(prefix="classwire-gateway-"))
                self._stack.callback(shutil.rmtree, work_dir, ignore_errors=True)
                self._gateway = GatewayProcess(
                    self.manifest,
                    work_dir=work_dir,
                    port=self.gateway_port,
                    quotas=self.quotas,
                    environment=self._local_environment(),
                    max_concurrency=self.max_concurrency,
                    post_faults=self.post_faults,
                )
            else:
                self._gateway = GatewayThread(
                    self.manifest,
                    port=self.gateway_port,
                    quotas=self.quotas,
                    environment=self._local_environment(),
                    max_concurrency=self.max_concurrency,
                    post_faults=self.post_faults,
                )
            self._stack.enter_context(self._gateway)
            return self
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> LocalSystem:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what clients need -----------------------------------------------------------------------
    @property
    def websocket_url(self) -> str:
        assert self._gateway is not None
        if isinstance(self._gateway, GatewayProcess):
            return self._gateway.websocket_url
        return self._gateway.gateway.websocket_url

    @property
    def management_endpoint(self) -> str:
        assert self._gateway is not None
        if isinstance(self._gateway, GatewayProcess):
            return self._gateway.management_endpoint
        return self._gateway.gateway.management_endpoint

    def redis_client(self) -> redis_py.Redis:
        """A client of the current primary (through the primary endpoint when replicated; of the whole
        cluster, routing each command to its key's shard, in cluster mode)."""
        assert self.redis is not None
        if isinstance(self.redis, ShardedCluster):
            return self.redis.client()  # type: ignore[return-value]  # the same commands, routed
        return redis_py.Redis.from_url(self.redis.url, socket_timeout=5)

    # -- faults ----------------------------------------------------------------------------------
    def restart_gateway(self, sig: int = signal.SIGTERM) -> None:
        """Stops the gateway process (SIGTERM: cleanly; SIGKILL: no `$disconnect` runs) and starts it
        again on the same port."""
        self._gateway_process().restart(sig)

    def kill_gateway(self, sig: int = signal.SIGKILL) -> None:
        self._gateway_process().stop(sig)

    def start_gateway(self) -> None:
        self._gateway_process().start()

    def _gateway_process(self) -> GatewayProcess:
        if not isinstance(self._gateway, GatewayProcess):
            raise RuntimeError("stopping or starting the gateway needs LocalSystem(gateway='process')")
        return self._gateway

    def kill_workers(self, function_name: str) -> int:
        """SIGKILLs every execution environment of a function, busy or not (a Lambda timeout or an out of
        memory, mid-invocation); the runtime replaces them. Returns how many were killed."""
        gateway = self._gateway
        parent = (
            gateway.process.pid if isinstance(gateway, GatewayProcess) and gateway.process else os.getpid()
        )
        marker = f"AWS_LAMBDA_FUNCTION_NAME={function_name}\0".encode()
        killed = 0
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after it.
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == parent and marker in (proc / "environ").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
                    killed += 1
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
        return killed

    def failover(self) -> None:
        """ElastiCache-style: promote the replica without waiting for it, move the primary endpoint."""
        if not isinstance(self.redis, ReplicationGroup):
            raise RuntimeError("failover needs LocalSystem(redis='replicated')")
        self.redis.failover()

    def token(
        self, user: str, classroom: str | list[str], role: str = "student", name: str = "", **kw
    ) -> str:
        classrooms = [classroom] if isinstance(classroom, str) else classroom
        return issue_token(
            user, classrooms, role, name, key=self.key, issuer=self.issuer, audience=self.audience, **kw
        )

    # -- internals -------------------------------------------------------------------------------
    def _store_signing_key(self) -> str:
        """The stack creates the secret without a value (its owner puts one); locally that is us."""
        assert self.aws is not None
        secrets = self.aws.client("secretsmanager")
        try:
            return secrets.create_secret(Name=JWT_SECRET_NAME, SecretString=self.key)["ARN"]
        except secrets.exceptions.ResourceExistsException:
            return secrets.put_secret_value(SecretId=JWT_SECRET_NAME, SecretString=self.key)["ARN"]

    def _local_environment(self) -> dict[str, str]:
        """What differs for every function on this machine: the emulator, this Redis and this gateway."""
        assert self.aws is not None and self.redis is not None and self.manifest is not None
        return {
            # The replication group's primary endpoint is, on this machine, this redis-server.
            "CLASSWIRE_REDIS_URL": self.redis_proxy.url if self.redis_proxy else self.redis.url,
            "CLASSWIRE_REDIS_CLUSTER": "true" if self.redis_mode == "cluster" else "false",
            "AWS_ENDPOINT_URL": self.aws.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "CLASSWIRE_MANAGEMENT_ENDPOINT": f"http://127.0.0.1:{self.gateway_port}/{self.manifest.stage}",
        }
