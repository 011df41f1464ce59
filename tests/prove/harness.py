"""What the reliability tests share: clients that remember everything they applied, the server's own
view of a classroom log (read from the Redis primary), and the gateway-side ways to cut a connection."""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import time
import urllib.parse
from dataclasses import dataclass, field

import redis

from classwire_client import ClasswireClient
from localcloud.system import LocalSystem

Key = tuple[int, str, object]  # (seq, eid, id): an event as the protocol identifies it


def key(event: dict) -> Key:
    return (event["seq"], event["eid"], event.get("id"))


def ack_key(ack: dict | None) -> Key:
    """The key of a persistent send's acknowledgement (only a send with persistent=False returns None)."""
    assert ack is not None
    return key(ack)


@dataclass
class Member:
    """A client plus everything it ever handed to the application, split at each `reset`."""

    client: ClasswireClient
    classroom: str
    user: str
    epochs: list[list[dict]] = field(default_factory=lambda: [[]])

    def applied(self, event: dict) -> None:
        self.epochs[-1].append(event)

    def reset(self) -> None:
        self.epochs.append([])

    def view(self) -> list[Key]:
        return [key(event) for event in self.client.events]

    def ever_held(self) -> set[Key]:
        return {key(event) for epoch in self.epochs for event in epoch}


def member(system: LocalSystem, user: str, classroom: str, role: str = "student", **options) -> Member:
    client = ClasswireClient(
        url=system.websocket_url,
        token=system.token(user, classroom, role, name=user),
        classroom=classroom,
        user_id=user,
        **options,
    )
    held = Member(client, classroom, user)
    client.on_event = held.applied
    client.on_reset = held.reset
    return held


def server_log(client: redis.Redis, classroom: str) -> list[dict]:
    """The classroom's log on the current primary, oldest first."""
    entries = client.xrange(f"cw:{{{classroom}}}:log", "-", "+")
    assert isinstance(entries, list)
    return [json.loads(fields[b"f"]) for _, fields in entries]


def last_seq(client: redis.Redis, classroom: str) -> int:
    seq = client.hget(f"cw:{{{classroom}}}:meta", "seq")
    assert seq is None or isinstance(seq, bytes)
    return int(seq or 0)


def connection_ids(client: redis.Redis, classroom: str) -> list[str]:
    members = client.zrange(f"cw:{{{classroom}}}:members", 0, -1)
    assert isinstance(members, list)
    return [c.decode() for c in members]


def delete_connection(management_endpoint: str, connection_id: str) -> int:
    """`DELETE @connections/{id}`: API Gateway closes the connection (what a Lambda may do at any time).
    The local gateway checks that a SigV4 header is there, not its signature."""
    url = urllib.parse.urlsplit(management_endpoint)
    assert url.hostname is not None
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        conn.request(
            "DELETE",
            f"{url.path}/@connections/{urllib.parse.quote(connection_id, safe='')}",
            headers={"Authorization": "AWS4-HMAC-SHA256 Credential=local/prove"},
        )
        return conn.getresponse().status
    finally:
        conn.close()


def chain_breaks(epoch: list[dict]) -> int:
    """Places where an epoch's events do not follow one another (seq + 1, prev == previous eid)."""
    return sum(
        1
        for before, after in itertools.pairwise(epoch)
        if after["seq"] != before["seq"] + 1 or after["prev"] != before["eid"]
    )


async def settle(
    system: LocalSystem,
    members: list[Member],
    classrooms: list[str],
    quiet: float = 1.0,
    timeout: float = 60.0,
) -> None:
    """Waits until every client is connected with nothing left to send and no classroom log has grown for
    `quiet` seconds (joins and leaves of the last reconnections are in)."""
    deadline = time.monotonic() + timeout
    redis_client = system.redis_client()
    try:
        last = None
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            busy = any(not m.client._connected.is_set() or m.client.pending for m in members)
            seqs = await asyncio.to_thread(lambda: [last_seq(redis_client, c) for c in classrooms])
            if busy or seqs != last:
                last, stable_since = seqs, time.monotonic()
            elif time.monotonic() - stable_since >= quiet:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("the system did not settle")
    finally:
        redis_client.close()


async def catch_up_all(members: list[Member], timeout: float = 30.0, parallel: int = 50) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(held: Member) -> None:
        async with gate:
            await held.client.catch_up(timeout)

    await asyncio.gather(*(one(m) for m in members))
