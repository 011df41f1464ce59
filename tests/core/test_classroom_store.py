"""The Redis data model on a real redis-server: order, idempotency, retention, sync, pruning, isolation."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from classwire.classroom_store import ClassroomStore, Member, Report
from classwire.settings import CONNECTION_TTL_SECONDS, TELEMETRY_FRESH_SECONDS, Limits


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


# -- delivery telemetry ------------------------------------------------------------------------------------


def test_a_report_records_how_far_behind_a_member_is_and_the_roster_shows_it(store, redis_client):
    teacher, behind, quiet = member(0, role="teacher"), member(1), member(2)
    for m in (teacher, behind, quiet):
        store.join(m, 0)
    for n in range(3):
        store.publish(teacher, f"m{n}", "chat", "1", True)
    last = 6  # three joins, three chats
    assert store.report(behind, last - 2, 340) == Report(last, 2)
    assert store.report(teacher, last, None) == Report(last, 0)
    roster = {m["userId"]: (m["lagMs"], m["behind"]) for m in store.roster("room-1")}
    assert roster == {"user-0": (None, 0), "user-1": (340, 2), "user-2": (None, None)}
    # The telemetry hash lives as long as the connections it describes.
    assert 0 < redis_client.pttl("cw:{room-1}:lag") <= CONNECTION_TTL_SECONDS * 1000


def test_a_client_ahead_of_the_log_is_not_behind(store):
    alice = member(1)
    store.join(alice, 0)
    # It holds events a failover lost; its next sync resets it.
    assert store.report(alice, 99, 10) == Report(1, 0)


def test_stale_telemetry_is_ignored(store, redis_client):
    alice = member(1)
    store.join(alice, 0)
    store.report(alice, 0, 500)
    (recorded,) = redis_client.hvals("cw:{room-1}:lag")
    seq, lag, at, behind = recorded.decode().split(":")
    stale_at = int(at) - TELEMETRY_FRESH_SECONDS * 1000 - 1
    redis_client.hset("cw:{room-1}:lag", alice.connection_id, f"{seq}:{lag}:{stale_at}:{behind}")
    (entry,) = store.roster("room-1")
    assert (entry["lagMs"], entry["behind"]) == (None, None)


def test_telemetry_is_removed_with_the_member_on_leave_and_prune(store, redis_client):
    alice, bob = member(1), member(2)
    store.join(alice, 0)
    store.join(bob, 0)
    store.report(alice, 2, 10)
    store.report(bob, 2, 10)
    store.leave("room-1", [alice.connection_id])
    assert redis_client.hkeys("cw:{room-1}:lag") == [bob.connection_id.encode()]
    # Bob vanished without $disconnect; the next operation that prunes removes his telemetry too.
    redis_client.zadd("cw:{room-1}:members", {bob.connection_id: 1}, xx=True)
    carol = member(3)
    store.join(carol, 0)
    assert redis_client.hlen("cw:{room-1}:lag") == 0
    # A connection that is no longer a member records nothing.
    assert store.report(bob, 2, 10) is None
    assert store.report(alice, 2, 10) is None
    assert redis_client.hlen("cw:{room-1}:lag") == 0


def test_a_report_and_a_roster_are_one_round_trip_whatever_the_room_size(store, redis_client):
    members = [member(n) for n in range(1000)]
    for m in members:
        store.join(m, 0)
    for m in members:
        store.report(m, 990, 25)  # also loads the scripts
    store.roster("room-1")
    before = _calls(redis_client)
    assert store.report(members[7], 995, 30) == Report(1000, 5)
    assert _calls(redis_client) - before == 1
    before = _calls(redis_client)
    roster = store.roster("room-1")
    assert _calls(redis_client) - before == 1
    assert len(roster) == 1000 and all(m["lagMs"] is not None for m in roster)
