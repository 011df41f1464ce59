"""The Redis data model on a real redis-server: order, idempotency, retention, sync, pruning, isolation."""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest
import redis

from classwire.classroom_store import (
    ClassroomStore,
    JoinRefused,
    Member,
    NotMember,
    Published,
    PublishResult,
    RateLimited,
    Report,
)
from classwire.settings import (
    CONNECTION_TTL_SECONDS,
    IDEMPOTENCY_WINDOW_SECONDS,
    RESEND_WINDOW_SECONDS,
    TELEMETRY_FRESH_SECONDS,
    Limits,
)


def member(n: int, room: str = "room-1", role: str = "student") -> Member:
    return Member(f"conn-{room}-{n}", room, f"user-{n}", role, f"User {n}")


# The tests' own reads are not what is being rate limited.
UNLIMITED = {
    "rate_per_second": 10_000,
    "rate_burst": 10_000,
    "read_rate_per_second": 10_000,
    "read_rate_burst": 10_000,
    # Leaves at once: these tests are of the log and the registry; the grace has tests of its own.
    "presence_grace_seconds": 0,
    # Never crowded: these tests read every join from the log; crowding has tests of its own.
    "presence_live_max_users": 1_000_000,
}


def limits(**overrides) -> Limits:
    return Limits(**{**UNLIMITED, **overrides})


@pytest.fixture
def store(redis_client) -> ClassroomStore:
    return ClassroomStore(redis_client, limits())


def reader(room: str) -> Member:
    return Member("reader", room, "reader", "student")


def sync(
    store: ClassroomStore, room: str, since: int, since_eid: str, limit: int, budget: int, epoch: str = ""
):
    return store.sync(reader(room), since, since_eid, epoch, limit, budget)


def roster_of(store: ClassroomStore, room: str) -> list[dict]:
    return store.roster(reader(room)).connections


def log_epoch(store: ClassroomStore, room: str) -> str:
    return sync(store, room, 0, "", 1, 10**9).epoch


def appended(result: PublishResult) -> Published:
    """What a publish appended (or, for a duplicate, relays again); only a refused one has nothing."""
    assert result.published is not None, result.status
    return result.published


def seqs(frames: list[str]) -> list[int]:
    return [json.loads(f)["seq"] for f in frames]


def test_concurrent_senders_get_gapless_unique_seqs(redis_server):
    senders = [member(n) for n in range(8)]
    setup = ClassroomStore(redis.Redis.from_url(redis_server.url), limits())
    setup._redis.flushall()
    for m in senders:
        setup.join(m, 0)
    assigned: list[int] = []
    lock = threading.Lock()

    def send_many(sender: Member) -> None:
        own = ClassroomStore(redis.Redis.from_url(redis_server.url), limits())
        for i in range(50):
            result = own.publish(sender, f"{sender.user_id}-{i}", "stroke", f'{{"i":{i}}}', True)
            with lock:
                assigned.append(result.seq)

    threads = [threading.Thread(target=send_many, args=(m,)) for m in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 8 joins then 400 strokes: every seq from 9 to 408 exactly once.
    assert sorted(assigned) == list(range(9, 409))
    page = sync(setup, "room-1", 0, "", 1000, 10**9)
    frames = [json.loads(f) for f in page.frames]
    assert [f["seq"] for f in frames] == list(range(1, 409))
    # The chain links: each event names its predecessor.
    assert all(b["prev"] == a["eid"] for a, b in itertools.pairwise(frames))


def test_resend_with_same_id_returns_the_original(store):
    alice = member(1, role="teacher")
    store.join(alice, 0)
    first = store.publish(alice, "m1", "chat", '{"t":"hi"}', True)
    again = store.publish(alice, "m1", "chat", '{"t":"changed"}', True)
    assert first.status == "ok" and again.status == "duplicate"
    assert again.seq == first.seq
    assert again.published.frames == [first.published.frames[-1]]
    # Another user may use the same client id: ids are per sender.
    bob = member(2)
    store.join(bob, 0)
    assert store.publish(bob, "m1", "chat", "1", True).seq == first.seq + 2


def test_volatile_events_take_no_seq(store):
    alice = member(1)
    store.join(alice, 0)
    result = store.publish(alice, "c1", "cursor", '{"x":1}', False)
    assert (result.status, result.seq, result.published.frames) == ("ok", 0, [])
    assert sync(store, "room-1", 0, "", 100, 10**9).last == 1


def test_sync_pages_by_bytes_and_count(store):
    alice = member(1)
    store.join(alice, 0)
    for i in range(20):
        store.publish(alice, f"m{i}", "stroke", json.dumps({"pad": "x" * 1000}), True)
    page = sync(store, "room-1", 0, "", 1000, 5_000)
    assert page.more and not page.reset
    assert sum(len(f) + 1 for f in page.frames) <= 5_000
    seen = seqs(page.frames)
    while page.more:
        page = sync(store, "room-1", page.last, "", 1000, 5_000)
        seen += seqs(page.frames)
    assert seen == list(range(1, 22))
    by_count = sync(store, "room-1", 5, "", 3, 10**9)
    assert (seqs(by_count.frames), by_count.last, by_count.more) == ([6, 7, 8], 8, True)


def test_sync_resets_when_since_was_trimmed(redis_client):
    store = ClassroomStore(redis_client, limits(log_max_events=5))
    alice = member(1)
    store.join(alice, 0)
    for i in range(10):
        store.publish(alice, f"m{i}", "chat", "1", True)
    page = sync(store, "room-1", 2, "", 100, 10**9)
    assert page.reset and seqs(page.frames) == [7, 8, 9, 10, 11]
    assert not sync(store, "room-1", 6, "", 100, 10**9).reset


def test_sync_resets_when_the_event_at_since_differs(store):
    alice = member(1)
    store.join(alice, 0)
    store.publish(alice, "m1", "chat", "1", True)
    eid = json.loads(sync(store, "room-1", 1, "", 1, 10**9).frames[0])["eid"]
    assert not sync(store, "room-1", 2, eid, 10, 10**9).reset
    diverged = sync(store, "room-1", 2, "0000000000000000", 10, 10**9)
    assert diverged.reset and seqs(diverged.frames) == [1, 2]


def test_sync_resets_when_since_is_beyond_the_log(store):
    store.join(member(1), 0)
    page = sync(store, "room-1", 50, "", 10, 10**9)
    assert page.reset and seqs(page.frames) == [1]


def test_age_retention_trims_old_events_while_the_classroom_is_active(redis_client):
    store = ClassroomStore(redis_client, limits(log_max_age_seconds=2))
    alice = member(1)
    store.join(alice, 0)
    store.publish(alice, "old", "chat", "1", True)
    time.sleep(1.2)
    store.publish(alice, "mid", "chat", "2", True)
    time.sleep(1.0)
    store.publish(alice, "new", "chat", "3", True)
    page = sync(store, "room-1", 0, "", 100, 10**9)
    assert page.reset and seqs(page.frames) == [3, 4]


def test_an_idle_log_expires_whole_and_clients_are_told_to_reset(redis_client):
    store = ClassroomStore(redis_client, limits(log_max_age_seconds=1))
    alice = member(1)
    store.join(alice, 0)
    store.publish(alice, "old", "chat", "1", True)
    eid = json.loads(sync(store, "room-1", 1, "", 1, 10**9).frames[0])["eid"]
    time.sleep(1.1)
    store.publish(alice, "new", "chat", "2", True)
    # The seq restarted at 1: a client holding seq 2 (or seq 1 of the old log) must rebuild.
    assert sync(store, "room-1", 2, "", 100, 10**9).reset
    page = sync(store, "room-1", 1, eid, 100, 10**9)
    assert page.reset and [json.loads(f)["id"] for f in page.frames] == ["new"]


def test_rate_limit_is_a_token_bucket(redis_client):
    store = ClassroomStore(redis_client, Limits(rate_per_second=5, rate_burst=3))
    alice = member(1)
    store.join(alice, 0)
    assert [store.publish(alice, f"m{i}", "chat", "1", True).status for i in range(3)] == ["ok"] * 3
    with pytest.raises(RateLimited) as limited:
        store.publish(alice, "m3", "chat", "1", True)
    assert 0 < limited.value.retry_after_ms <= 400 and not limited.value.flooding
    time.sleep(0.45)
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
    assert [m["userId"] for m in roster_of(store, "room-1")] == ["user-1"]
    assert store.publish(bob, "m2", "chat", "1", True).status == "not_member"


def test_leave_and_join_are_idempotent_and_a_repeat_returns_the_original_event(store):
    # A repeat is what redis-py's retry sends when the first reply was lost: its event must still be fanned
    # out, and never appended twice.
    alice = member(1)
    joined = store.join(alice, 0).frames
    assert len(joined) == 1 and store.join(alice, 0).frames == joined
    left = store.leave("room-1", [alice.connection_id]).frames
    assert len(left) == 1 and store.leave("room-1", [alice.connection_id]).frames == left
    assert sync(store, "room-1", 0, "", 10, 10**9).last == 2


def test_connections_per_user_are_counted(store):
    a1 = Member("c1", "room-1", "alice", "teacher", "Alice")
    a2 = Member("c2", "room-1", "alice", "teacher", "Alice")
    store.join(a1, 0)
    store.join(a2, 0)  # announces nothing: alice is here already
    assert [e["userId"] for e in roster_of(store, "room-1")] == ["alice", "alice"]
    assert store.leave("room-1", ["c1"]).frames == []  # nor this: alice is still here
    assert json.loads(store.leave("room-1", ["c2"]).frames[0])["data"] == {
        "connections": 0,
        "users": 0,
        "crowded": False,
    }


def test_classrooms_are_isolated(store):
    store.join(member(1, "room-1"), 0)
    store.join(member(2, "room-2"), 0)
    result = store.publish(member(1, "room-1"), "m1", "chat", "1", True)
    assert result.published.connection_ids == ["conn-room-1-1"]
    assert seqs(sync(store, "room-2", 0, "", 100, 10**9).frames) == [1]
    assert [m["userId"] for m in roster_of(store, "room-2")] == ["user-2"]
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
    assert isinstance(stats, dict)
    return sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))


# -- delivery telemetry ------------------------------------------------------------------------------------


def test_a_report_records_how_far_behind_a_member_is_and_the_roster_shows_it(store, redis_client):
    teacher, behind, quiet = member(0, role="teacher"), member(1), member(2)
    for m in (teacher, behind, quiet):
        store.join(m, 0)
    for n in range(3):
        store.publish(teacher, f"m{n}", "chat", "1", True)
    last = 6  # three joins, three chats
    epoch = log_epoch(store, "room-1")
    assert store.report(behind, last - 2, 340) == Report(last, 2, epoch, users=3, crowded=False)
    assert store.report(teacher, last, None) == Report(last, 0, epoch, users=3, crowded=False)
    roster = {m["userId"]: (m["lagMs"], m["behind"]) for m in roster_of(store, "room-1")}
    assert roster == {"user-0": (None, 0), "user-1": (340, 2), "user-2": (None, None)}
    # The telemetry hash lives as long as the connections it describes.
    assert 0 < redis_client.pttl("cw:{room-1}:lag") <= CONNECTION_TTL_SECONDS * 1000


def test_a_client_ahead_of_the_log_is_not_behind(store):
    alice = member(1)
    store.join(alice, 0)
    # It holds events a failover lost; its next sync resets it.
    epoch = log_epoch(store, "room-1")
    assert store.report(alice, 99, 10) == Report(1, 0, epoch, users=1, crowded=False)


def test_stale_telemetry_is_ignored(store, redis_client):
    alice = member(1)
    store.join(alice, 0)
    store.report(alice, 0, 500)
    (recorded,) = redis_client.hvals("cw:{room-1}:lag")
    seq, lag, at, behind = recorded.decode().split(":")
    stale_at = int(at) - TELEMETRY_FRESH_SECONDS * 1000 - 1
    redis_client.hset("cw:{room-1}:lag", alice.connection_id, f"{seq}:{lag}:{stale_at}:{behind}")
    (entry,) = roster_of(store, "room-1")
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
    for gone in (bob, alice):
        with pytest.raises(NotMember):
            store.report(gone, 2, 10)
    assert redis_client.hlen("cw:{room-1}:lag") == 0


def test_a_report_and_a_roster_are_one_round_trip_whatever_the_room_size(store, redis_client):
    members = [member(n) for n in range(1000)]
    for m in members:
        store.join(m, 0)
    for m in members:
        store.report(m, 990, 25)  # also loads the scripts
    roster_of(store, "room-1")
    epoch = log_epoch(store, "room-1")
    before = _calls(redis_client)
    assert store.report(members[7], 995, 30) == Report(1000, 5, epoch, users=1000, crowded=False)
    assert _calls(redis_client) - before == 1
    before = _calls(redis_client)
    roster = roster_of(store, "room-1")
    assert _calls(redis_client) - before == 1
    assert len(roster) == 1000 and all(m["lagMs"] is not None for m in roster)


# -- issue 11: the guarantee under faults, and bounds on what one user may use -------------------------------


def test_idempotency_keys_of_different_users_never_collide(store):
    # Both would have been `cw:{room-1}:idem:a:b:c`: the second event dropped, answered with the first's.
    colon_user = Member("conn-x", "room-1", "a:b", "student")
    plain_user = Member("conn-y", "room-1", "a", "student")
    store.join(colon_user, 0)
    store.join(plain_user, 0)
    first = store.publish(colon_user, "c", "chat", '"from a:b"', True)
    second = store.publish(plain_user, "b:c", "chat", '"from a"', True)
    assert (first.status, second.status) == ("ok", "ok") and second.seq == first.seq + 1
    assert json.loads(second.published.frames[-1])["data"] == "from a"


def test_a_duplicate_carries_the_members_to_fan_the_original_out_to_again(store):
    alice, bob = member(1), member(2)
    store.join(alice, 0)
    store.join(bob, 0)
    first = store.publish(alice, "m1", "chat", "1", True)
    again = store.publish(alice, "m1", "chat", "1", True)
    assert again.status == "duplicate"
    assert sorted(again.published.connection_ids) == sorted([alice.connection_id, bob.connection_id])
    assert again.published.frames == first.published.frames[-1:]
    assert again.epoch == json.loads(first.published.frames[-1])["epoch"]


def test_a_resend_of_a_trimmed_event_names_its_seq_and_is_never_appended_again(redis_client):
    store = ClassroomStore(redis_client, limits(log_max_events=3))
    alice = member(1)
    store.join(alice, 0)
    original = store.publish(alice, "m1", "chat", "1", True)
    for n in range(2, 6):
        store.publish(alice, f"m{n}", "chat", "1", True)
    again = store.publish(alice, "m1", "chat", "1", True)
    assert again.published is not None
    assert (again.status, again.seq, again.published.frames) == ("duplicate", original.seq, [])
    assert sync(store, "room-1", 0, "", 100, 10**9).last == 6  # nothing appended
    # The record outlives every resend a client may make (they stop RESEND_WINDOW_SECONDS after the first
    # attempt; a frame in flight takes at most API Gateway's 29 s integration timeout more).
    record = f"{len(alice.user_id)}:{alice.user_id}:m1"
    assert redis_client.hget("cw:{room-1}:idem", record) == f"{original.seq}:{again.epoch}".encode()
    written_at = redis_client.zscore("cw:{room-1}:idem_at", record) / 1000
    assert RESEND_WINDOW_SECONDS + 29 < IDEMPOTENCY_WINDOW_SECONDS
    assert abs(written_at - time.time()) < 5


def test_idempotency_records_past_the_window_are_dropped_by_later_sends(redis_client):
    store = ClassroomStore(redis_client, limits())
    alice = member(1)
    store.join(alice, 0)
    store.publish(alice, "old", "chat", "1", True)
    old = f"{len(alice.user_id)}:{alice.user_id}:old"
    redis_client.zadd("cw:{room-1}:idem_at", {old: 1})  # written long ago
    store.publish(alice, "new", "chat", "1", True)
    assert redis_client.hget("cw:{room-1}:idem", old) is None
    assert redis_client.zscore("cw:{room-1}:idem_at", old) is None


def test_every_event_carries_the_epoch_of_its_log_and_a_restarted_log_gets_a_new_one(store, redis_client):
    alice = member(1)
    store.join(alice, 0)
    before = json.loads(store.publish(alice, "m1", "chat", "1", True).published.frames[-1])
    assert len(before["epoch"]) == 16 and sync(store, "room-1", 0, "", 10, 10**9).epoch == before["epoch"]
    # A failover to an empty replica (or an eviction) loses the log; the next event starts it again.
    redis_client.delete("cw:{room-1}:meta", "cw:{room-1}:log")
    after = json.loads(store.publish(alice, "m2", "chat", "1", True).published.frames[-1])
    assert (after["seq"], after["prev"]) == (1, "") and after["epoch"] != before["epoch"]
    # A client that holds the old epoch is reset, even at a seq the new log has too.
    assert sync(store, "room-1", 0, "", 10, 10**9, epoch=before["epoch"]).reset
    assert not sync(store, "room-1", 0, "", 10, 10**9, epoch=after["epoch"]).reset


def test_a_log_whose_meta_was_evicted_restarts_instead_of_failing_every_append(store, redis_client):
    alice = member(1)
    store.join(alice, 0)
    for n in range(3):
        store.publish(alice, f"m{n}", "chat", "1", True)
    redis_client.delete("cw:{room-1}:meta")  # the stream survives, its counter does not
    result = store.publish(alice, "next", "chat", "1", True)
    assert json.loads(result.published.frames[-1])["seq"] == 1
    assert seqs(sync(store, "room-1", 0, "", 10, 10**9).frames) == [1]


def test_sync_from_just_before_the_oldest_retained_event_checks_the_eid(redis_client):
    store = ClassroomStore(redis_client, limits(log_max_events=3))
    alice = member(1)
    store.join(alice, 0)
    frames = [appended(store.publish(alice, f"m{n}", "chat", "1", True)).frames[-1] for n in range(5)]
    eids = {json.loads(f)["seq"]: json.loads(f)["eid"] for f in frames}
    assert seqs(sync(store, "room-1", 0, "", 10, 10**9).frames) == [4, 5, 6]  # seq 3 is trimmed
    assert not sync(store, "room-1", 3, eids[3], 10, 10**9).reset
    other = sync(store, "room-1", 3, "00000000000000ff", 10, 10**9)
    assert other.reset and seqs(other.frames) == [4, 5, 6]


def test_the_log_keeps_to_its_byte_budget_oldest_first(redis_client):
    budget = 4 * 32 * 1024
    store = ClassroomStore(redis_client, limits(log_max_bytes=budget))
    alice = member(1)
    store.join(alice, 0)
    for n in range(40):
        store.publish(alice, f"m{n}", "stroke", json.dumps({"pad": "x" * 16_000}), True)
    entries = redis_client.xrange("cw:{room-1}:log")
    held = sum(len(fields[b"f"]) for _, fields in entries)
    assert held <= budget and int(redis_client.hget("cw:{room-1}:meta", "bytes")) == held
    assert seqs([fields[b"f"] for _, fields in entries])[-1] == 41 and len(entries) < 10
    # A client behind the trim rebuilds from what is retained.
    assert sync(store, "room-1", 5, "", 100, 10**9).reset


def test_a_user_may_hold_five_connections_per_classroom(store):
    connections = [Member(f"c{n}", "room-1", "alice", "student") for n in range(6)]
    for connection in connections[:5]:
        store.join(connection, 0)
    with pytest.raises(JoinRefused) as refused:
        store.join(connections[5], 0)
    assert refused.value.reason == "user_limit"
    assert roster_of(store, "room-1") and len(roster_of(store, "room-1")) == 5
    store.leave("room-1", ["c0"])
    store.join(connections[5], 0)


def test_a_full_classroom_refuses_the_next_connection(redis_client):
    store = ClassroomStore(redis_client, limits(max_connections_per_classroom=3))
    for n in range(3):
        store.join(member(n), 0)
    with pytest.raises(JoinRefused) as refused:
        store.join(member(3, role="teacher"), 0)
    assert refused.value.reason == "classroom_full"
    assert sync(store, "room-1", 0, "", 10, 10**9).last == 3  # no join was logged for it


def test_after_end_students_are_refused_until_a_teacher_reopens_the_class(store, redis_client):
    teacher, student, late = member(0, role="teacher"), member(1), member(2)
    store.join(teacher, 0)
    store.join(student, 0)
    store.publish(teacher, "bye", "end", "null", True, closes_class=True)
    with pytest.raises(JoinRefused) as refused:
        store.join(late, 0)
    assert refused.value.reason == "ended"
    # A student whose connection was not closed yet cannot keep talking either.
    assert store.publish(student, "m1", "chat", "1", True).status == "ended"
    # The teacher's own reconnect (its client had not applied the `end` yet) does not undo it.
    store.join(Member("t-again", "room-1", "user-0", "teacher"), 0)
    with pytest.raises(JoinRefused):
        store.join(late, 0)
    # Nor does a teacher's connection that is itself refused.
    full = ClassroomStore(redis_client, limits(max_connections_per_classroom=1))
    with pytest.raises(JoinRefused):
        full.join(member(8, role="teacher"), 0, reopen=True)
    with pytest.raises(JoinRefused):
        store.join(late, 0)
    # A teacher reopening it does, and says so in the join.
    reopened = json.loads(store.join(member(9, role="teacher"), 0, reopen=True).frames[-1])
    assert reopened["data"] == {"connections": 1, "reopened": True, "users": 3, "crowded": False}
    store.join(late, 0)
    assert store.publish(late, "m2", "chat", "1", True).status == "ok"


def test_an_ended_class_outlives_its_log(redis_client):
    store = ClassroomStore(redis_client, limits(log_max_age_seconds=60))
    teacher = member(0, role="teacher")
    store.join(teacher, 0)
    store.publish(teacher, "bye", "end", "null", True, closes_class=True)
    redis_client.delete("cw:{room-1}:meta", "cw:{room-1}:log")  # expired, or evicted
    with pytest.raises(JoinRefused):
        store.join(member(1), 0)
    assert redis_client.pttl("cw:{room-1}:ended") > 6 * 24 * 3600 * 1000
    # The `end` is in no log a client can read any more: a teacher starting the class again reopens it, and
    # says so, so that server and clients agree.
    join = json.loads(store.join(member(5, role="teacher"), 0).frames[-1])
    assert join["data"] == {"connections": 1, "reopened": True, "users": 2, "crowded": False}
    store.join(member(1), 0)


def test_a_teachers_reopen_is_announced_even_when_the_ended_mark_was_lost(store, redis_client):
    teacher = member(0, role="teacher")
    store.join(teacher, 0)
    store.publish(teacher, "bye", "end", "null", True, closes_class=True)
    redis_client.delete("cw:{room-1}:ended")  # evicted; the log still holds the `end`
    join = json.loads(store.join(member(5, role="teacher"), 0, reopen=True).frames[-1])
    assert join["data"]["reopened"] is True  # so the clients do not stay ended


def test_a_stream_whose_counter_was_evicted_is_not_served(store, redis_client):
    alice = member(1)
    store.join(alice, 0)
    store.publish(alice, "m1", "chat", "1", True)
    redis_client.delete("cw:{room-1}:meta")
    page = sync(store, "room-1", 2, "", 10, 10**9)
    assert (page.reset, page.frames, page.more) == (True, [], False)  # one empty reset, not a loop


def test_a_connection_whose_record_was_evicted_is_no_member_and_a_refused_join_returns_the_leaves(
    store, redis_client
):
    alice, bob = member(1), member(2)
    store.join(alice, 0)
    store.join(bob, 0)
    redis_client.hdel("cw:{room-1}:info", alice.connection_id)
    with pytest.raises(NotMember):
        store.report(alice, 0, None)
    redis_client.zadd("cw:{room-1}:members", {bob.connection_id: 1}, xx=True)  # bob vanished long ago
    teacher = member(0, role="teacher")
    full = ClassroomStore(redis_client, limits(max_connections_per_classroom=1))
    with pytest.raises(JoinRefused) as refused:
        full.join(teacher, 0)
    assert [json.loads(f)["event"] for f in refused.value.pruned.frames] == ["leave"]


def test_a_resent_end_after_the_class_was_reopened_does_not_close_it_again(store):
    teacher = member(0, role="teacher")
    store.join(teacher, 0)
    store.publish(teacher, "bye", "end", "null", True, closes_class=True)
    assert store.publish(teacher, "bye", "end", "null", True, closes_class=True).still_ended
    store.join(member(9, role="teacher"), 0, reopen=True)
    assert not store.publish(teacher, "bye", "end", "null", True, closes_class=True).still_ended


def test_every_action_is_rate_limited_and_a_flood_is_told_to_go(redis_client):
    store = ClassroomStore(redis_client, Limits(read_rate_per_second=5, read_rate_burst=4))
    alice = member(1)
    store.join(alice, 0)
    calls = [
        lambda: store.sync(alice, 0, "", "", 10, 10**9),
        lambda: store.roster(alice).connections,
        lambda: store.report(alice, 1, None),
        lambda: store.admit(alice),
    ]
    for call in calls:
        call()
    for call in calls:
        with pytest.raises(RateLimited) as limited:
            call()
        assert limited.value.retry_after_ms > 0 and not limited.value.flooding
    outcomes = []
    for _ in range(3):
        try:
            store.admit(alice)
        except RateLimited as error:
            outcomes.append(error.flooding)
    assert outcomes[-1] is True  # it kept going past its limit: close it
    # Another connection's bucket is its own.
    bob = member(2)
    store.join(bob, 0)
    store.admit(bob)


def test_the_roster_of_a_huge_classroom_does_not_hit_luas_unpack_limit(store, redis_client):
    far_future = int(time.time() * 1000) + 3_600_000
    pipe = redis_client.pipeline(transaction=False)
    for n in range(9_000):
        pipe.zadd("cw:{room-1}:members", {f"c{n}": far_future})
        pipe.hset("cw:{room-1}:info", f"c{n}", json.dumps({"userId": f"u{n}", "role": "student", "name": ""}))
    pipe.execute()
    assert len(roster_of(store, "room-1")) == 9_000


def test_a_log_whose_stream_was_evicted_restarts_with_a_new_epoch(redis_client):
    store = ClassroomStore(redis_client, limits(log_max_bytes=4 * 32 * 1024))
    alice = member(1)
    store.join(alice, 0)
    for n in range(12):
        store.publish(alice, f"m{n}", "stroke", json.dumps({"pad": "x" * 15_000}), True)
    before = sync(store, "room-1", 0, "", 100, 10**9).epoch
    redis_client.delete("cw:{room-1}:log")  # evicted; the counters survive (a ping keeps meta warm)
    frames = [appended(store.publish(alice, f"n{n}", "chat", "1", True)).frames[-1] for n in range(3)]
    assert [json.loads(f)["seq"] for f in frames] == [1, 2, 3]
    page = sync(store, "room-1", 13, "", 100, 10**9, epoch=before)
    assert page.reset and seqs(page.frames) == [1, 2, 3] and page.epoch != before
    # A resend of one of them finds it, instead of an empty log.
    assert appended(store.publish(alice, "n1", "chat", "1", True)).frames == [frames[1]]


def test_a_log_from_before_epochs_is_kept_and_named(store, redis_client):
    alice = member(1)
    store.join(alice, 0)
    store.publish(alice, "m1", "chat", "1", True)
    redis_client.hdel("cw:{room-1}:meta", "epoch")  # as the release before this one wrote it
    after = json.loads(store.publish(alice, "m2", "chat", "1", True).published.frames[-1])
    assert after["seq"] == 3 and after["epoch"]
    assert seqs(sync(store, "room-1", 0, "", 100, 10**9).frames) == [1, 2, 3]


def test_rates_are_per_user_and_reconnecting_refills_nothing(redis_client):
    store = ClassroomStore(redis_client, Limits(rate_per_second=1, rate_burst=3, connect_burst=4))
    tabs = [Member(f"tab{n}", "room-1", "mallory", "student") for n in range(2)]
    for tab in tabs:
        store.join(tab, 0)
    results = []
    for n in range(4):
        try:
            results.append(store.publish(tabs[n % 2], f"m{n}", "chat", "1", True).status)
        except RateLimited:
            results.append("rate_limited")
    assert results == ["ok", "ok", "ok", "rate_limited"]  # one bucket over both tabs
    store.leave("room-1", ["tab0"])
    fresh = Member("tab9", "room-1", "mallory", "student")
    store.join(fresh, 0)
    with pytest.raises(RateLimited):
        store.publish(fresh, "m9", "chat", "1", True)  # a new connection inherits the empty bucket
    # Connecting again and again is limited too.
    with pytest.raises(JoinRefused) as refused:
        for n in range(10):
            store.join(Member(f"again{n}", "room-1", "mallory", "student"), 0)
            store.leave("room-1", [f"again{n}"])
    assert refused.value.reason == "too_fast"


def test_a_first_sync_starts_at_the_last_clear_and_a_catching_up_one_does_not(store):
    teacher, alice = member(0, role="teacher"), member(1)
    store.join(teacher, 0)
    store.join(alice, 0)
    for n in range(5):
        store.publish(alice, f"old{n}", "stroke", "1", True)
    cleared = store.publish(teacher, "c1", "clear", "null", True, starts_board=True)
    store.publish(alice, "new", "stroke", "2", True)
    first = sync(store, "room-1", 0, "", 200, 30_000)
    assert first.reset and seqs(first.frames) == [cleared.seq, cleared.seq + 1]
    # A member catching up from where it was gets everything after that, the old board included.
    again = sync(store, "room-1", 2, "", 200, 30_000)
    assert not again.reset and seqs(again.frames) == list(range(3, cleared.seq + 2))
    # Naming an epoch, a member held something: a seq-0 sync of it is not a first one.
    epoch = log_epoch(store, "room-1")
    assert seqs(sync(store, "room-1", 0, "", 200, 30_000, epoch=epoch).frames)[0] == 1


def test_a_first_sync_into_an_ended_class_starts_no_later_than_its_end(store):
    teacher, alice = member(0, role="teacher"), member(1)
    store.join(teacher, 0)
    store.join(alice, 0)
    ended = store.publish(teacher, "e", "end", "null", True, closes_class=True)
    store.publish(teacher, "c", "clear", "null", True, starts_board=True)
    page = sync(store, "room-1", 0, "", 200, 30_000)
    assert seqs(page.frames)[0] == ended.seq and page.reset


def test_a_first_sync_ignores_an_end_trimmed_out_of_the_log(redis_client):
    store = ClassroomStore(redis_client, limits(log_max_events=5))
    teacher, alice = member(0, role="teacher"), member(1)
    store.join(teacher, 0)
    store.join(alice, 0)
    store.publish(teacher, "e", "end", "null", True, closes_class=True)
    store.publish(teacher, "r", "chat", "1", True)  # a teacher may still write in an ended class
    for n in range(6):  # the `end` is trimmed away
        store.publish(teacher, f"old{n}", "stroke", "1", True)
    cleared = store.publish(teacher, "c", "clear", "null", True, starts_board=True)
    store.publish(teacher, "new", "stroke", "2", True)
    page = sync(store, "room-1", 0, "", 200, 30_000)
    assert seqs(page.frames) == [cleared.seq, cleared.seq + 1] and page.reset


def test_a_reconnect_within_the_grace_announces_nothing_and_a_user_gone_for_it_leaves(redis_client):
    store = ClassroomStore(redis_client, limits(presence_grace_seconds=1))
    alice, bob = member(1), member(2)
    store.join(alice, 0)
    store.join(bob, 0)
    assert store.leave("room-1", [alice.connection_id]).frames == []  # not yet announced
    again = Member("conn-room-1-1b", "room-1", alice.user_id, "student", "User 1")
    assert store.join(again, 0).frames == []  # back within the grace: nothing at all
    assert store.leave("room-1", [bob.connection_id]).frames == []
    time.sleep(1.1)
    # The next ping announces bob's leave (one user, its last connection gone for the grace).
    store.report(alice := again, 0, None)
    events = [json.loads(f) for f in sync(store, "room-1", 0, "", 200, 30_000).frames]
    assert [(e["event"], e["from"]) for e in events][-1] == ("leave", "user-2")
    assert [e["event"] for e in events].count("leave") == 1 and [e["event"] for e in events].count(
        "join"
    ) == 2


def test_a_users_second_connection_announces_no_second_join(redis_client):
    store = ClassroomStore(redis_client, limits())
    alice = member(1)
    assert len(store.join(alice, 0).frames) == 1
    tab = Member("conn-room-1-tab", "room-1", alice.user_id, "student", "User 1")
    assert store.join(tab, 0).frames == []
    assert store.leave("room-1", [tab.connection_id]).frames == []
    assert len(store.leave("room-1", [alice.connection_id]).frames) == 1  # the last one out
