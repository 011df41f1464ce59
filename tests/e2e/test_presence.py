"""A crowded classroom end to end (README, "Presence"): the local system with a low crowding threshold, real
WebSockets and the Python client. (The demo page's teacher and student views: tests/browser.)"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from classwire.settings import Limits
from localcloud.system import LocalSystem
from tests.e2e.conftest import Members

LIVE_MAX = 3  # more users than this: crowded
GRACE_SECONDS = 1


@pytest.fixture(scope="module")
def crowdable():
    limits = Limits(presence_live_max_users=LIVE_MAX, presence_grace_seconds=GRACE_SECONDS)
    with LocalSystem(key=secrets.token_urlsafe(48), limits=limits) as local:
        yield local


async def until(condition, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def joins(client) -> list[str]:
    return [e["from"] for e in client.events if e["event"] == "join"]


def test_a_crowded_classroom_tells_its_teacher_and_counts_for_its_students(crowdable):
    classroom = f"crowd-{secrets.token_hex(3)}"

    async def scenario():
        heard: list[tuple[str, bool]] = []
        async with Members(crowdable) as room:

            def on_presence(frame: dict) -> None:
                heard.extend((c["userId"], c["present"]) for c in frame["changes"])

            # Pings every 0.3 s: they carry the occupancy, and sweep the leaves whose grace has passed.
            teacher = await room.join(
                "tina", classroom, "teacher", on_presence=on_presence, telemetry_interval=0.3
            )
            early = [
                await room.join(f"s{n}", classroom, telemetry_interval=0.3) for n in range(1, LIVE_MAX + 1)
            ]
            late = await room.join("zoe", classroom, telemetry_interval=0.3)
            await until(lambda: ("zoe", True) in heard)
            await until(lambda: all(c.crowded and c.users == LIVE_MAX + 2 for c in (*early, late)))
            members = await late.who()
            assert len(members) == LIVE_MAX + 2  # the whole roster, on request
            # The late join reached nobody's log; the classroom's events still reach everyone, in order.
            ack = await teacher.send("chat", {"text": "welcome"})
            for client in (*early, late):
                await client.wait_for_seq(ack["seq"])
                assert "zoe" not in joins(client)
            # A dropped socket back within the grace announces nothing, to the teacher either.
            assert late._ws is not None
            await late._ws.close()
            await late.catch_up()
            await asyncio.sleep(GRACE_SECONDS + 1)
            assert ("zoe", False) not in heard
            # A student gone for good: the teacher hears of it once the grace has passed.
            await early[0].close()
            await until(lambda: ("s1", False) in heard)
            await until(lambda: teacher.users == LIVE_MAX + 1)

    asyncio.run(asyncio.wait_for(scenario(), 90))
