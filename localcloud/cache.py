"""The local stand-in for the ElastiCache replication group: real redis-server processes.

`RedisServer` runs one redis-server in its own data directory on 127.0.0.1. `ReplicationGroup` runs a
primary and a replica behind `PrimaryEndpoint`, a TCP proxy on a fixed port that plays the part of
ElastiCache's primary endpoint: on failover the replica is promoted, the endpoint moves to it (existing
connections drop, as they do when the DNS name moves and the old primary goes away), and the old primary
comes back as a replica of the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import redis
import redis.cluster

from classwire_infra.config import DEFAULT_EVICTION_POLICY
from localcloud import free_port, processes


class RedisServer:
    """`with RedisServer() as server:` gives `server.url`; extra config lines go in `extra`."""

    def __init__(self, extra: list[str] | None = None, port: int | None = None, data_dir: Path | None = None):
        self.extra = extra or []
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self._owns_dir = data_dir is None
        self.dir = data_dir or Path(tempfile.mkdtemp(prefix="classwire-redis-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make install`")
        self.dir.mkdir(parents=True, exist_ok=True)
        config = [
            "bind 127.0.0.1",
            f"port {self.port}",
            f"dir {self.dir}",
            'save ""',
            "appendonly no",
            "protected-mode yes",
            f"maxmemory-policy {DEFAULT_EVICTION_POLICY}",  # as the parameter group
            *self.extra,
        ]
        (self.dir / "redis.conf").write_text("\n".join(config) + "\n")
        # In a session of its own, so a Ctrl-C in the terminal reaches the orchestrator, not redis directly.
        self.process = processes.start_session(
            [binary, str(self.dir / "redis.conf")],
            stdout=(self.dir / "redis.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()[-2000:]}")
            try:
                if self.client().ping():
                    return
            except (redis.ConnectionError, OSError):
                time.sleep(0.05)
        raise RuntimeError("redis-server did not become ready")

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class PrimaryEndpoint:
    """A TCP proxy on a fixed loopback port that forwards to whichever server is the primary.
    Subclasses change what happens on the way (`_forward`: `localcloud.redis_faults`)."""

    def __init__(self, target_port: int, port: int | None = None):
        self.port = port or free_port()
        self._target = target_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name=type(self).__name__, daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrimaryEndpoint:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(5)
        return self

    def move_to(self, target_port: int) -> None:
        """Points the endpoint at another server and drops every connection made through it."""
        asyncio.run_coroutine_threadsafe(self._move(target_port), self._loop).result(5)

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            await self._drop_links()
            current = asyncio.current_task()
            pending = [task for task in asyncio.all_tasks() if task is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _move(self, target_port: int) -> None:
        self._target = target_port
        await self._drop_links()

    async def _drop_links(self) -> None:
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            client_writer.transport.abort()
            return
        self._links.update((client_writer, server_writer))
        await self._forward(client_reader, client_writer, server_reader, server_writer)
        self._links.difference_update((client_writer, server_writer))

    async def _forward(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        server_reader: asyncio.StreamReader,
        server_writer: asyncio.StreamWriter,
    ) -> None:
        await asyncio.gather(
            self._pipe(client_reader, server_writer),
            self._pipe(server_reader, client_writer),
            return_exceptions=True,
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()


def _replication_info(server: RedisServer) -> dict[str, Any]:
    """INFO replication of a server (redis-py types each command's reply as sync-or-async)."""
    info = server.client().info("replication")
    assert isinstance(info, dict)  # a synchronous client's INFO reply is parsed into a dict
    return info


def _caught_up(replica: dict[str, Any], offset: int) -> bool:
    """Whether a replica (its INFO replication) has its link up and has applied its primary's `offset`
    (the link is up only once its full sync has loaded)."""
    return replica.get("master_link_status") == "up" and int(replica.get("slave_repl_offset", -1)) >= offset


def wait_replicated(primary: RedisServer, replica: RedisServer, timeout: float = 10.0) -> None:
    """Returns once `replica` has applied every write `primary` had made when called (not WAIT: that waits
    only for the calling connection's own writes)."""
    target = int(_replication_info(primary)["master_repl_offset"])
    deadline = time.monotonic() + timeout
    while not _caught_up(_replication_info(replica), target):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the replica on port {replica.port} did not catch up with its primary")
        time.sleep(0.02)


class ReplicationGroup:
    """A primary and a replica behind a primary endpoint, with ElastiCache-style failover."""

    # Full syncs start at once rather than after redis' default 5 s wait for more replicas.
    REPLICATION_CONFIG: ClassVar[list[str]] = ["repl-diskless-sync-delay 0"]

    def __init__(self, endpoint_port: int | None = None):
        self.primary = RedisServer(extra=self.REPLICATION_CONFIG)
        self.replica = RedisServer(extra=self.REPLICATION_CONFIG)
        self.endpoint: PrimaryEndpoint | None = None
        self._endpoint_port = endpoint_port
        self.failovers = 0

    @property
    def url(self) -> str:
        assert self.endpoint is not None
        return self.endpoint.url

    def start(self) -> ReplicationGroup:
        self.primary.start()
        self.replica.start()
        self.replica.client().replicaof("127.0.0.1", self.primary.port)
        self.wait_in_sync()
        self.endpoint = PrimaryEndpoint(self.primary.port, self._endpoint_port).start()
        return self

    def wait_in_sync(self, timeout: float = 10.0) -> None:
        """Returns once the replica has applied every write the primary had made when called."""
        wait_replicated(self.primary, self.replica, timeout)

    def failover(self) -> None:
        """Promotes the replica without waiting for it to catch up (asynchronous replication: the
        primary's last writes can be lost, as in a real failover), then moves the endpoint to it."""
        old, new = self.primary, self.replica
        new.client().replicaof("NO", "ONE")
        assert self.endpoint is not None
        self.endpoint.move_to(new.port)
        old.client().replicaof("127.0.0.1", new.port)
        self.primary, self.replica = new, old
        self.failovers += 1

    def stop(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()
        self.primary.stop()
        self.replica.stop()

    def __enter__(self) -> ReplicationGroup:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _replicas_in_sync(replication: dict[int, Any]) -> bool:
    """Whether every replica in `replication` (INFO replication by port, of the nodes that answer) has its
    link up and has applied its primary's writes so far. A replica still in its first full sync holds
    nothing, and a test that fails its shard over would promote an empty node."""
    for info in replication.values():
        if info.get("role") != "slave":
            continue
        primary = replication.get(int(info.get("master_port", 0)))
        if primary is None:  # its primary is stopped by the test
            continue
        if not _caught_up(info, int(primary.get("master_repl_offset", 0))):
            return False
    return True


class ShardedCluster:
    """A real Redis Cluster on loopback, the stand-in for ElastiCache's cluster mode: `shards` primaries with
    `replicas` each, joined by `redis-cli --cluster create` (which spreads the 16,384 slots evenly).
    `url` is one node's; a cluster client discovers the rest from it."""

    CLUSTER_CONFIG: ClassVar[list[str]] = [
        "cluster-enabled yes",
        "cluster-config-file nodes.conf",
        "cluster-node-timeout 2000",
        *ReplicationGroup.REPLICATION_CONFIG,
    ]

    def __init__(self, shards: int = 3, replicas: int = 1):
        if shards < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 primaries")
        # The cluster bus port on its own free port (by default it is the port + 10,000, past 65,535 for a
        # high ephemeral one).
        self.nodes = [
            RedisServer(extra=[*self.CLUSTER_CONFIG, f"cluster-port {free_port()}"])
            for _ in range(shards * (1 + replicas))
        ]
        self.shards, self.replicas = shards, replicas

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> ShardedCluster:
        try:
            for node in self.nodes:
                node.start()
            cli = shutil.which("redis-cli")
            if cli is None:
                raise RuntimeError("redis-cli is not installed: run `make install`")
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *addresses,
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Returns once every node that answers says the cluster is up and every slot is served, and its
        replicas have taken their roles and synced (a node stopped for a test answers nothing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            texts: list[str] = []
            replication: dict[int, Any] = {}  # INFO replication by port
            for node in self.nodes:
                answering = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=0.5)
                try:
                    info = answering.execute_command("CLUSTER", "INFO")
                    replication[node.port] = answering.info("replication")
                except (redis.ConnectionError, redis.TimeoutError):
                    continue
                finally:
                    answering.close()
                texts.append(info.decode() if isinstance(info, bytes) else str(info))
            ready = texts and all("cluster_state:ok" in t and "cluster_slots_ok:16384" in t for t in texts)
            primaries = sum(node_info.get("role") == "master" for node_info in replication.values())
            # `redis-cli --cluster create` returns before every replica has taken its role.
            if ready and primaries == self.shards and _replicas_in_sync(replication):
                return
            time.sleep(0.1)
        raise RuntimeError("the cluster did not come up")

    def client(self) -> redis.cluster.RedisCluster:
        return redis.cluster.RedisCluster(host="127.0.0.1", port=self.nodes[0].port, socket_timeout=5)

    def primaries(self) -> list[RedisServer]:
        return [n for n in self.nodes if _replication_info(n).get("role") == "master"]

    def shards_of(self, classrooms: list[str]) -> list[tuple[RedisServer, str]]:
        """(the primary serving it, classroom) for the first classroom found on each shard."""
        client = self.client()
        try:
            by_port: dict[int, str] = {}
            for classroom in classrooms:
                node = client.get_node_from_key(f"cw:{{{classroom}}}:meta")
                by_port.setdefault(int(node.port), classroom)
        finally:
            client.close()
        primaries = {n.port: n for n in self.nodes}
        return [(primaries[port], classroom) for port, classroom in by_port.items()]

    def wait_promoted(self, node: RedisServer, timeout: float = 30.0) -> None:
        """Returns once `node` is a primary and the nodes that answer agree the cluster is up."""
        deadline = time.monotonic() + timeout
        while _replication_info(node).get("role") != "master":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the node on port {node.port} was not promoted")
            time.sleep(0.05)
        self.wait_ready(max(1.0, deadline - time.monotonic()))

    def primary_and_replica(self, primary: RedisServer) -> tuple[RedisServer, RedisServer]:
        """A primary and its (first) replica."""
        for node in self.nodes:
            info = _replication_info(node)
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == primary.port:
                return primary, node
        raise RuntimeError(f"no replica of the primary on port {primary.port}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> ShardedCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
