"""Connections that vanish without `$disconnect` leave the roster: a fan-out that meets 410 prunes them,
and a record past its TTL is pruned by the next write of its classroom (issue 5, "Stale state").

The gateway is killed with SIGKILL, so no `$disconnect` runs for any of its connections: exactly the
case API Gateway documents as possible ($disconnect is best effort).
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time

from classwire.settings import CONNECTING_GRACE_SECONDS, CONNECTION_TTL_SECONDS
from tests.prove.harness import connection_ids, member

TWO_HOURS_MS = 2 * 3600 * 1000


def roster(members: list[dict]) -> dict[str, int]:
    return {entry["userId"]: entry["connections"] for entry in members}


async def wait_for(condition, timeout: float = 30.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(every)


def test_connections_that_vanish_without_disconnect_are_pruned(system, figures):
    room = f"stale-{secrets.token_hex(3)}"  # the 410 path
    idle_room = f"ttl-{secrets.token_hex(3)}"  # the TTL path
    redis_client = system.redis_client()

    async def scenario():
        amy, ben, cat = (member(system, user, room, backoff_cap=1.0) for user in ("amy", "ben", "cat"))
        eve = member(system, "eve", idle_room, backoff_cap=1.0)
        for held in (amy, ben, cat, eve):
            await held.client.start()
        assert roster(await amy.client.who()) == {"amy": 1, "ben": 1, "cat": 1}
        stale = set(connection_ids(redis_client, room))
        [eve_connection] = connection_ids(redis_client, idle_room)

        # Connection records outlive API Gateway's 2-hour maximum connection.
        expiry_ms = redis_client.zscore(f"cw:{{{idle_room}}}:members", eve_connection)
        ttl_ms = redis_client.pttl(f"cw:{{{idle_room}}}:members")
        now_ms = redis_client.time()[0] * 1000
        assert expiry_ms - now_ms > TWO_HOURS_MS and ttl_ms > TWO_HOURS_MS
        figures.record(
            "stale", "connection record TTL", CONNECTION_TTL_SECONDS // 60, "min", "must exceed 120"
        )

        # Every connection vanishes at once and no $disconnect runs.
        await asyncio.to_thread(system.kill_gateway, signal.SIGKILL)
        await cat.client.close()  # cat never comes back; eve neither
        await eve.client.close()
        assert set(connection_ids(redis_client, room)) == stale, (
            "no $disconnect ran, the records are all there"
        )
        # A minute passes for the others (a 410 within $connect's 30 s grace proves nothing), three hours
        # for eve's record: their expiry moves, not the clock.
        for connection in stale:
            redis_client.zincrby(
                f"cw:{{{room}}}:members", -(CONNECTING_GRACE_SECONDS + 30) * 1000, connection
            )
        redis_client.zadd(f"cw:{{{idle_room}}}:members", {eve_connection: now_ms - 1})
        await asyncio.to_thread(system.start_gateway)

        # amy and ben reconnect: their joins fan out to the three old connections, get 410, prune them.
        started = time.monotonic()

        async def pruned():
            current = set(connection_ids(redis_client, room))
            return not (current & stale) and len(current) == 2 and roster(await amy.client.who())

        members = await wait_for(pruned)
        figures.record(
            "stale", "410 prune: stale connections removed", len(stale), note="after a SIGKILLed gateway"
        )
        figures.record("stale", "410 prune: time to clean roster", round(time.monotonic() - started, 2), "s")
        assert members == {"amy": 1, "ben": 1}
        await amy.client.catch_up()
        leaves = [e for e in amy.client.events if e["event"] == "leave"]
        assert [e["from"] for e in leaves].count("cat") == 1
        assert any(e["from"] == "cat" and e["data"] == {"connections": 0} for e in leaves)

        # eve's expired record is pruned by the next write in its classroom, before anything is posted to it:
        # the leave is appended by the same script as fay's join, immediately before it.
        fay = member(system, "fay", idle_room)
        await fay.client.start()
        await fay.client.catch_up()
        by_kind = {(e["event"], e["from"]): e for e in fay.client.events}
        assert by_kind[("leave", "eve")]["seq"] + 1 == by_kind[("join", "fay")]["seq"]
        assert roster(await fay.client.who()) == {"fay": 1}
        assert connection_ids(redis_client, idle_room) != [eve_connection]
        figures.record(
            "stale", "TTL prune: expired record removed by the next write", 1, note="leave seq = join seq - 1"
        )
        for held in (amy, ben, fay):
            await held.client.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        redis_client.close()
