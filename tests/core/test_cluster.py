"""The classroom store on a real Redis Cluster (3 primaries, 3 replicas on loopback), as ElastiCache's
cluster mode runs it: every script is routed to its classroom's shard by the key it declares."""

from __future__ import annotations

import json
import signal

import pytest
import redis.cluster
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from classwire.classroom import ClassroomService
from classwire.classroom_store import ClassroomStore, Member
from classwire.settings import Limits
from localcloud.cache import ShardedCluster, wait_replicated
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


def test_a_shard_failover_that_lost_writes_is_announced_and_leaves_the_other_shards_untouched(cluster):
    """ElastiCache promotes a shard's replica when its primary fails; replication is asynchronous, so an
    acknowledged write can be lost. As on one primary (test_failover.py), the next event of that classroom
    takes the lost seq with another eid and its members get `reset`, never silence; classrooms of the other
    shards notice nothing."""
    client = redis.cluster.RedisCluster(
        host="127.0.0.1",
        port=cluster.nodes[0].port,
        socket_timeout=1,
        socket_connect_timeout=1,
        retry=Retry(ExponentialBackoff(cap=0.5), retries=20),
    )
    store = ClassroomStore(client, LIMITS)
    shard_a, shard_b = cluster.shards_of(["fail-" + str(n) for n in range(40)])[:2]
    room_a, room_b = shard_a[1], shard_b[1]
    teacher_a, teacher_b = (Member(f"{r}-t", r, "tina", "teacher", "Tina") for r in (room_a, room_b))
    for teacher in (teacher_a, teacher_b):
        store.join(teacher, 0)
        store.publish(teacher, "before", "chat", "1", True)
    primary, replica = cluster.primary_and_replica(shard_a[0])
    wait_replicated(primary, replica, 15.0)  # the replica has everything so far
    try:
        # The replica stops (and its replication link with it: a stopped process's socket would still
        # buffer the stream), so the next write reaches the primary alone.
        replica.process.send_signal(signal.SIGSTOP)
        primary.client().execute_command("CLIENT", "KILL", "TYPE", "replica")
        lost = store.publish(teacher_a, "lost", "chat", "2", True)  # acknowledged by the primary alone
        assert lost.published is not None
        lost_eid = json.loads(lost.published.frames[0])["eid"]
        primary.process.send_signal(signal.SIGSTOP)
        replica.process.send_signal(signal.SIGCONT)
        replica.client().execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
        cluster.wait_promoted(replica)
        # The other shard's classroom goes on as if nothing happened.
        assert store.publish(teacher_b, "during", "chat", "3", True).seq == 3
        page_b = store.sync(teacher_b, 2, "", "", 10, 30_000)
        assert not page_b.reset and page_b.last == 3
        # The failed-over classroom's next event takes the lost seq, with another eid: a member holding the
        # lost event is told to reset.
        after = store.publish(teacher_a, "after", "chat", "4", True)
        assert after.seq == lost.seq and after.published is not None
        assert json.loads(after.published.frames[0])["eid"] != lost_eid
        page_a = store.sync(teacher_a, lost.seq, lost_eid, "", 10, 30_000)
        assert page_a.reset
    finally:  # whatever failed, no node stays stopped for the module's other tests
        replica.process.send_signal(signal.SIGCONT)
        primary.process.send_signal(signal.SIGCONT)
        client.close()
    cluster.wait_ready()
