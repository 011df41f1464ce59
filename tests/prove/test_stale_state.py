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


def redis_ms(redis_client) -> int:
    seconds, micros = redis_client.time()
    return seconds * 1000 + micros // 1000


def away(redis_client, room: str) -> list[str]:
    """Users whose last connection went and whose leave waits for the presence grace."""
    return [user.decode() for user in redis_client.zrange(f"cw:{{{room}}}:away", 0, -1)]


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

        # amy and ben reconnect (announcing nothing: each one's old connection is still on record), and amy's
        # next event fans out to the three old connections, gets 410 and prunes them.
        started = time.monotonic()
        await amy.client.catch_up()
        await amy.client.send("chat", {"text": "anyone there?"})

        async def pruned():
            current = set(connection_ids(redis_client, room))
            return not (current & stale) and len(current) == 2 and roster(await amy.client.who())

        members = await wait_for(pruned)
        figures.record(
            "stale", "410 prune: stale connections removed", len(stale), note="after a SIGKILLed gateway"
        )
        figures.record("stale", "410 prune: time to clean roster", round(time.monotonic() - started, 2), "s")
        assert members == {"amy": 1, "ben": 1}
        # cat's leave is announced once the presence grace has passed (a reconnect would have cancelled it),
        # by the next write or ping: its grace passes at once, and amy writes.
        assert away(redis_client, room) == ["cat"]
        redis_client.zadd(f"cw:{{{room}}}:away", {"cat": redis_ms(redis_client) - 1})
        said = await amy.client.send("chat", {"text": "cat has gone"})
        await amy.client.catch_up()
        leaves = [e for e in amy.client.events if e["event"] == "leave"]
        assert [e["from"] for e in leaves].count("cat") == 1
        [cat_left] = [e for e in leaves if e["from"] == "cat"]
        assert cat_left["data"]["connections"] == 0 and cat_left["seq"] + 1 == said["seq"]

        # eve's expired record is pruned by the next write in its classroom, before anything is posted to it
        # (by the same script as fay's join). Nobody else was there to tell: her leave is dropped, and the new
        # class hears nothing of her.
        fay = member(system, "fay", idle_room)
        await fay.client.start()
        assert roster(await fay.client.who()) == {"fay": 1}
        assert connection_ids(redis_client, idle_room) != [eve_connection]
        assert away(redis_client, idle_room) == []
        await fay.client.catch_up()
        assert [e["from"] for e in fay.client.events if e["event"] == "leave"] == []
        figures.record(
            "stale",
            "TTL prune: expired record removed by the next write",
            1,
            note="by the next join; nobody left to tell of the leave",
        )
        for held in (amy, ben, fay):
            await held.client.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        redis_client.close()
