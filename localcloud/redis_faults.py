"""A TCP proxy between the Lambda code and Redis that breaks the hop: the faults of a network between
a Lambda in a VPC and ElastiCache (`LocalSystem(redis_faults=...)`, and the handler tests).

The faults, each on one request:
- drop the reply: the request reaches Redis and runs; its reply is thrown away and the connection reset,
  as when a failover or a network blip takes the reply with it;
- reset mid-request: half of the request reaches Redis, then the connection is reset (Redis never ran it);
- delay the reply by some seconds (past the client's socket timeout, the client retries).

A fault is either armed for the next request whose bytes contain `match` (a client id), or drawn at random
for every request with the probabilities of a `LinkChaos`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from dataclasses import dataclass

from localcloud import draw_fault
from localcloud.cache import PrimaryEndpoint


@dataclass
class _Fault:
    kind: str
    match: bytes
    seconds: float = 0.0


@dataclass(frozen=True)
class LinkChaos:
    """Per-request probabilities of each fault, from a seeded generator (a run is repeatable)."""

    drop_reply: float = 0.0
    reset_mid_request: float = 0.0
    delay_reply: float = 0.0
    delay_seconds: float = 2.5
    seed: int = 0


class RedisFaultProxy(PrimaryEndpoint):
    def __init__(self, target_port: int, chaos: LinkChaos | None = None, port: int | None = None):
        super().__init__(target_port, port)
        self._faults: list[_Fault] = []
        self._chaos = chaos
        self._random = random.Random(chaos.seed if chaos else 0)
        self.fired: list[str] = []
        self._lock = threading.Lock()

    def drop_reply(self, match: bytes) -> None:
        self._arm(_Fault("drop_reply", match))

    def reset_mid_request(self, match: bytes) -> None:
        self._arm(_Fault("reset_mid_request", match))

    def delay_reply(self, match: bytes, seconds: float) -> None:
        self._arm(_Fault("delay_reply", match, seconds))

    def armed(self, match: bytes) -> bool:
        """Whether a fault armed for `match` has yet to meet its request."""
        with self._lock:
            return any(fault.match == match for fault in self._faults)

    def _arm(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take(self, chunk: bytes) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.match in chunk:
                    self._faults.remove(fault)
                    self.fired.append(fault.kind)
                    return fault
            chaos = self._chaos
            if chaos is None:
                return None
            kind = draw_fault(
                self._random,
                {
                    "drop_reply": chaos.drop_reply,
                    "reset_mid_request": chaos.reset_mid_request,
                    "delay_reply": chaos.delay_reply,
                },
            )
            if kind is not None:
                self.fired.append(kind)
                return _Fault(kind, b"", chaos.delay_seconds)
        return None

    # -- one client connection -------------------------------------------------------------------------
    async def _forward(self, client_reader, client_writer, server_reader, server_writer) -> None:
        link = _Link(client_writer, server_writer)
        await asyncio.gather(
            self._requests(client_reader, link), self._replies(server_reader, link), return_exceptions=True
        )

    async def _requests(self, reader: asyncio.StreamReader, link: _Link) -> None:
        try:
            while chunk := await reader.read(65536):
                fault = self._take(chunk)
                if fault is not None and fault.kind == "reset_mid_request":
                    link.server.write(chunk[: len(chunk) // 2])
                    await link.server.drain()
                    link.abort()
                    return
                if fault is not None and fault.kind == "drop_reply":
                    link.swallow = True
                if fault is not None and fault.kind == "delay_reply":
                    link.delay = fault.seconds
                link.server.write(chunk)
                await link.server.drain()
                if link.swallow:
                    await asyncio.sleep(0.2)  # Redis runs it; the reply is never forwarded
                    link.abort()
                    return
        finally:
            link.abort()

    async def _replies(self, reader: asyncio.StreamReader, link: _Link) -> None:
        try:
            while chunk := await reader.read(65536):
                if link.swallow:
                    continue
                if link.delay:
                    delay, link.delay = link.delay, 0.0
                    await asyncio.sleep(delay)
                link.client.write(chunk)
                await link.client.drain()
        finally:
            link.abort()


@dataclass
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    swallow: bool = False
    delay: float = 0.0

    def abort(self) -> None:
        for writer in (self.client, self.server):
            with contextlib.suppress(Exception):
                writer.transport.abort()
