"""The classroom store on a real Redis Cluster (3 primaries, 3 replicas on loopback), as ElastiCache's
cluster mode runs it: every script is routed to its classroom's shard by the key it declares."""

from __future__ import annotations

import json

import pytest

from classwire.classroom import ClassroomService
from classwire.classroom_store import ClassroomStore, Member
from classwire.settings import Limits
from localcloud.cache import ShardedCluster
from tests.core.test_classroom_store import UNLIMITED
from tests.core.test_fanout_rounds import Connections, send

LIMITS = Limits(**UNLIMITED)


@pytest.fixture(scope="module")
def cluster():
    with ShardedCluster() as running:
        yield running


def seat(core: ClassroomService, room: str, n: int) -> list[Member]:
    members = [
        Member(f"{room}-c{i}", room, f"u{i}", "teacher" if i == 0 else "student", f"U{i}") for i in range(n)
    ]
    for m in members:
        assert core.connect(m, 0, batch=True) is None
    return members


def test_classrooms_spread_over_the_shards_and_each_works_on_its_own(cluster):
    client = cluster.client()
    connections = Connections()
    core = ClassroomService(ClassroomStore(client, LIMITS), connections, LIMITS)
    rooms = [f"spread-{n}" for n in range(24)]
    for room in rooms:
        teacher, _ = seat(core, room, 2)
        core.handle(teacher, send("chat", f"{room}-hello"))
    per_shard = {}
    for primary in cluster.primaries():
        keys = primary.client().keys("cw:{spread-*}:meta")
        per_shard[primary.port] = len(keys)
    assert sum(per_shard.values()) == len(rooms) and all(per_shard.values()), per_shard
    for room in rooms:  # each classroom's events reached its own members only
        events = connections.events_to(f"{room}-c1")
        assert [e["event"] for e in events] == ["chat"] and events[0]["classroom"] == room
    client.close()


def test_the_whole_protocol_runs_on_a_cluster(cluster):
    client = cluster.client()
    connections = Connections()
    core = ClassroomService(ClassroomStore(client, LIMITS), connections, LIMITS)
    teacher, *students = seat(core, "whole", 4)
    for n in range(5):
        core.handle(students[n % 3], send("stroke", f"s{n}"))
    core.handle(teacher, send("cursor", "k1", {"x": 1}))
    page = json.loads(core.handle(students[0], json.dumps({"action": "sync", "since": 0})) or "{}")
    assert [e["seq"] for e in page["events"]] == list(range(1, 10))  # 4 joins, 5 strokes
    roster = json.loads(core.handle(teacher, json.dumps({"action": "who"})) or "{}")
    assert roster["users"] == 4 and len(roster["members"]) == 4
    pong = json.loads(core.handle(students[1], json.dumps({"action": "ping", "seq": 9})) or "{}")
    assert (pong["behind"], pong["last"]) == (0, 9)
    core.disconnect(students[2])
    assert [e["event"] for e in connections.events_to(teacher.connection_id)][-1] == "leave"
    assert "k1" in [e.get("id") for e in connections.events_to(students[0].connection_id)]
    client.close()
