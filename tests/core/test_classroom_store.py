"""The Redis data model on a real redis-server: order, idempotency, retention, sync, pruning, isolation."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from classwire.classroom_store import ClassroomStore, Member
from classwire.settings import Limits


def member(n: int, room: str = "room-1", role: str = "student") -> Member:
    return Member(f"conn-{room}-{n}", room, f"user-{n}", role, f"User {n}")


@pytest.fixture
def store(redis_client) -> ClassroomStore:
    return ClassroomStore(redis_client, Limits(rate_per_second=10_000, rate_burst=10_000))


def seqs(frames: list[str]) -> list[int]:
    return [json.loads(f)["seq"] for f in frames]


def test_concurrent_senders_get_gapless_unique_seqs(redis_server):
    limits = Limits(rate_per_second=10_000, rate_burst=10_000)
    senders = [member(n) for n in range(8)]
    setup = ClassroomStore(redis.Redis.from_url(redis_server.url), limits)
    setup._redis.flushall()
    for m in senders:
        setup.join(m, 0)
    assigned: list[int] = []
    lock = threading.Lock()

    def send_many(sender: Member) -> None:
        own = ClassroomStore(redis.Redis.from_url(redis_server.url), limits)
        for i in range(50):
            result = own.publish(sender, f"{sender.user_id}-{i}", "stroke", '{"i":%d}' % i, True)
            with lock:
                assigned.append(result.seq)

    threads = [threading.Thread(target=send_many, args=(m,)) for m in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 8 joins then 400 strokes: every seq from 9 to 408 exactly once.
    assert sorted(assigned) == list(range(9, 409))
    page = setup.sync("room-1", 0, "", 1000, 10**9)
    frames = [json.loads(f) for f in page.frames]
    assert [f["seq"] for f in frames] == list(range(1, 409))
    # The chain links: each event names its predecessor.
    assert all(b["prev"] == a["eid"] for a, b in zip(frames, frames[1:]))


def test_resend_with_same_id_returns_the_original(store):
    alice = member(1, role="teacher")
    store.join(alice, 0)
    first = store.publish(alice, "m1", "chat", '{"t":"hi"}', True)
    again = store.publish(alice, "m1", "chat", '{"t":"changed"}', True)
    assert first.status == "ok" and again.status == "duplicate"
    assert again.seq == first.seq
    assert again.original_frame == first.published.frames[-1]
    # Another user may use the same client id: ids are per sender.
    bob = member(2)
    store.join(bob, 0)
    assert store.publish(bob, "m1", "chat", "1", True).seq == first.seq + 2


def test_volatile_events_take_no_seq(store):
    alice = member(1)
    store.join(alice, 0)
    result = store.publish(alice, "c1", "cursor", '{"x":1}', False)
    assert (result.status, result.seq, result.published.frames) == ("ok", 0, [])
    assert store.sync("room-1", 0, "", 100, 10**9).last == 1


def test_sync_pages_by_bytes_and_count(store):
    alice = member(1)
    store.join(alice, 0)
    for i in range(20):
        store.publish(alice, f"m{i}", "stroke", json.dumps({"pad": "x" * 1000}), True)
    page = store.sync("room-1", 0, "", 1000, 5_000)
    assert page.more and not page.reset
    assert sum(len(f) + 1 for f in page.frames) <= 5_000
    seen = seqs(page.frames)
    while page.more:
        page = store.sync("room-1", page.last, "", 1000, 5_000)
        seen += seqs(page.frames)
    assert seen == list(range(1, 22))
    by_count = store.sync("room-1", 5, "", 3, 10**9)
    assert (seqs(by_count.frames), by_count.last, by_count.more) == ([6, 7, 8], 8, True)


def test_sync_resets_when_since_was_trimmed(redis_client):
    store = ClassroomStore(redis_client, Limits(log_max_events=5, rate_per_second=1000, rate_burst=1000))
    alice = member(1)
    store.join(alice, 0)
    for i in range(10):
        store.publish(alice, f"m{i}", "chat", "1", True)
    page = store.sync("room-1", 2, "", 100, 10**9)
    assert page.reset and seqs(page.frames) == [7, 8, 9, 10, 11]
    assert not store.sync("room-1", 6, "", 100, 10**9).reset


def test_sync_resets_when_the_event_at_since_differs(store):
    alice = member(1)
    store.join(alice, 0)
    store.publish(alice, "m1", "chat", "1", True)
    eid = json.loads(store.sync("room-1", 1, "", 1, 10**9).frames[0])["eid"]
    assert not store.sync("room-1", 2, eid, 10, 10**9).reset
    diverged = store.sync("room-1", 2, "0000000000000000", 10, 10**9)
    assert diverged.reset and seqs(diverged.frames) == [1, 2]


def test_sync_resets_when_since_is_beyond_the_log(store):
    store.join(member(1), 0)
    page = store.sync("room-1", 50, "", 10, 10**9)
    assert page.reset and seqs(page.frames) == [1]


def test_age_retention_trims_old_events_while_the_classroom_is_active(redis_client):
    store = ClassroomStore(redis_client, Limits(log_max_age_seconds=2, rate_per_second=1000, rate_burst=1000))
    alice = member(1)
    store.join(alice, 0)
    store.publish(alice, "old", "chat", "1", True)
    time.sleep(1.2)
    store.publish(alice, "mid", "chat", "2", True)
    time.sleep(1.0)
    store.publish(alice, "new", "chat", "3", True)
    page = store.sync("room-1", 0, "", 100, 10**9)
    assert page.reset and seqs(page.frames) == [3, 4]


def test_an_idle_log_expires_whole_and_clients_are_told_to_reset(redis_client):
    store = ClassroomStore(redis_client, Limits(log_max_age_seconds=1, rate_per_second=1000, rate_burst=1000))
    alice = member(1)
    store.join(alice, 0)
    store.publish(alice, "old", "chat", "1", True)
    eid = json.loads(store.sync("room-1", 1, "", 1, 10**9).frames[0])["eid"]
    time.sleep(1.1)
    store.publish(alice, "new", "chat", "2", True)
    # The seq restarted at 1: a client holding seq 2 (or seq 1 of the old log) must rebuild.
    assert store.sync("room-1", 2, "", 100, 10**9).reset
    page = store.sync("room-1", 1, eid, 100, 10**9)
    assert page.reset and [json.loads(f)["id"] for f in page.frames] == ["new"]


def test_rate_limit_is_a_token_bucket(redis_client):
    store = ClassroomStore(redis_client, Limits(rate_per_second=5, rate_burst=3))
    alice = member(1)
    store.join(alice, 0)
    results = [store.publish(alice, f"m{i}", "chat", "1", True) for i in range(4)]
    assert [r.status for r in results] == ["ok", "ok", "ok", "rate_limited"]
    assert 0 < results[-1].retry_after_ms <= 200
    time.sleep(0.25)
    assert store.publish(alice, "m9", "chat", "1", True).status == "ok"


def test_expired_members_are_pruned_with_a_leave(store, redis_client):
    alice, bob = member(1), member(2)
    store.join(alice, 0)
    store.join(bob, 0)
    # Bob's connection vanished without $disconnect and outlived API Gateway's 2-hour maximum.
    redis_client.zadd("cw:{room-1}:members", {bob.connection_id: 1}, xx=True)
    result = store.publish(alice, "m1", "chat", "1", True)
    events = [json.loads(f) for f in result.published.frames]
    assert [(e["event"], e["from"]) for e in events] == [("leave", "user-2"), ("chat", "user-1")]
    assert result.published.connection_ids == [alice.connection_id]
    assert [m["userId"] for m in store.roster("room-1")] == ["user-1"]
    assert store.publish(bob, "m2", "chat", "1", True).status == "not_member"


def test_leave_and_join_are_idempotent(store):
    alice = member(1)
    assert len(store.join(alice, 0).frames) == 1
    assert store.join(alice, 0).frames == []
    assert len(store.leave("room-1", [alice.connection_id]).frames) == 1
    assert store.leave("room-1", [alice.connection_id]).frames == []


def test_connections_per_user_are_counted(store):
    a1 = Member("c1", "room-1", "alice", "teacher", "Alice")
    a2 = Member("c2", "room-1", "alice", "teacher", "Alice")
    store.join(a1, 0)
    second = json.loads(store.join(a2, 0).frames[0])
    assert second["data"] == {"connections": 2}
    assert json.loads(store.leave("room-1", ["c1"]).frames[0])["data"] == {"connections": 1}


def test_classrooms_are_isolated(store):
    store.join(member(1, "room-1"), 0)
    store.join(member(2, "room-2"), 0)
    result = store.publish(member(1, "room-1"), "m1", "chat", "1", True)
    assert result.published.connection_ids == ["conn-room-1-1"]
    assert seqs(store.sync("room-2", 0, "", 100, 10**9).frames) == [1]
    assert [m["userId"] for m in store.roster("room-2")] == ["user-2"]
    # A member of room-1 is not a member of room-2, whatever it claims.
    impostor = Member("conn-room-1-1", "room-2", "user-1", "student")
    assert store.publish(impostor, "x", "chat", "1", True).status == "not_member"


def test_send_is_one_round_trip_whatever_the_room_size(store, redis_client):
    teacher = member(0, role="teacher")
    store.join(teacher, 0)
    for n in range(1, 1000):
        store.join(member(n), 0)
    store.publish(teacher, "warm", "chat", "1", True)  # loads the script
    before = _calls(redis_client)
    result = store.publish(teacher, "m1", "chat", "1", True)
    assert len(result.published.connection_ids) == 1000
    assert _calls(redis_client) - before == 1


def _calls(client: redis.Redis) -> int:
    # commandstats counts commands executed inside scripts too; count the client's calls instead.
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))
