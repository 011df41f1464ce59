"""The whole local system on a real Redis Cluster (3 primaries, 3 replicas): real WebSockets, the Python
client, the handlers' cluster client routing each script to its classroom's shard."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from localcloud.system import LocalSystem
from tests.e2e.conftest import Members


@pytest.fixture(scope="module")
def on_a_cluster():
    with LocalSystem(key=secrets.token_urlsafe(48), redis="cluster") as local:
        yield local


def test_classrooms_on_different_shards_each_get_their_own_events_in_order(on_a_cluster):
    rooms = [f"shard-{secrets.token_hex(3)}-{n}" for n in range(6)]
    redis = on_a_cluster.redis_client()
    shards = {redis.keyslot(f"cw:{{{room}}}:meta") // (16384 // 3 + 1) for room in rooms}

    async def scenario():
        async with Members(on_a_cluster) as members:
            pairs = []
            for room in rooms:
                teacher = await members.join("tina", room, "teacher")
                student = await members.join("sam", room)
                pairs.append((room, teacher, student))
            for room, sender, _ in pairs:
                for n in range(5):
                    await sender.send("stroke", {"room": room, "n": n})
            for room, _, student in pairs:
                await student.catch_up()
                strokes = [e["data"] for e in student.events if e["event"] == "stroke"]
                assert strokes == [{"room": room, "n": n} for n in range(5)]
                seqs = [e["seq"] for e in student.events]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

    asyncio.run(asyncio.wait_for(scenario(), 90))
    assert len(shards) > 1, "the classrooms all hashed to one shard: pick other names"
