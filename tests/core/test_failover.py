"""Redis failover as ElastiCache does it: the runtime's client follows the primary endpoint, and a
write the new primary never received is detected (sync answers `reset`), never silently replaced."""

from __future__ import annotations

import json

import pytest

from classwire import runtime
from classwire.classroom_store import Member
from localcloud.cache import ReplicationGroup


@pytest.fixture
def group(monkeypatch):
    with ReplicationGroup() as replication_group:
        monkeypatch.setenv("CLASSWIRE_REDIS_URL", replication_group.url)
        monkeypatch.setenv(
            "CLASSWIRE_JWT_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:jwt"
        )
        runtime.reset()
        yield replication_group
        runtime.reset()


def test_the_client_follows_the_endpoint_through_a_failover(group):
    store = runtime.classroom_store()
    alice = Member("c1", "room-1", "alice", "teacher")
    store.join(alice, 0)
    first = store.publish(alice, "m1", "chat", "1", True)
    group.wait_in_sync()
    group.failover()
    # The pooled connection died with the endpoint move; the retry reconnects to the new primary.
    second = store.publish(alice, "m2", "chat", "2", True)
    assert (first.seq, second.seq) == (2, 3)
    assert group.replica.client().info("replication")["role"] == "slave"
    replication = runtime.redis_client().info("replication")
    assert isinstance(replication, dict) and replication["role"] == "master"


def test_writes_lost_in_a_failover_are_announced_by_reset(group):
    store = runtime.classroom_store()
    alice = Member("c1", "room-1", "alice", "teacher")
    store.join(alice, 0)
    store.publish(alice, "m1", "chat", "1", True)
    group.wait_in_sync()
    # The replica stops receiving writes (as if the link lagged); the next event reaches only the primary.
    group.replica.client().replicaof("127.0.0.1", 1)
    acknowledged = store.publish(alice, "m2", "chat", "2", True)
    assert acknowledged.published is not None
    lost_frame = json.loads(acknowledged.published.frames[-1])
    group.failover()
    # On the new primary seq 3 is free again: a different event takes it.
    replacement = store.publish(alice, "m3", "chat", "3", True)
    assert replacement.seq == lost_frame["seq"] == 3
    assert replacement.published is not None
    assert json.loads(replacement.published.frames[-1])["eid"] != lost_frame["eid"]
    # A client that applied the lost event syncs from it and is told to rebuild.
    page = store.sync(alice, lost_frame["seq"], lost_frame["eid"], "", 100, 30_000)
    assert page.reset
    assert [json.loads(f)["id"] for f in page.frames] == [None, "m1", "m3"]
