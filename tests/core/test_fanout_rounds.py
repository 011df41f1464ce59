"""Fan-out in rounds (README, "Batching"): one invocation at a time posts a classroom's events, and what is
appended while it posts goes out together in its next round. Against a real redis-server.

The property test drives the Lua protocol through arbitrary interleavings of appends, posts, settles,
flushers that die, leases that run out and flushers that stop at their budget: no event is ever left
undelivered, and without a death none is delivered twice or out of order.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classwire.classroom import ClassroomService, pack_events
from classwire.classroom_store import ClassroomStore, Member, Round
from classwire.settings import CONNECTION_TTL_SECONDS, FRAME_LIMIT_BYTES, FanoutSettings, Limits
from tests.core.test_classroom_store import UNLIMITED

ROOM = "room-1"


def member(n: int, role: str = "student") -> Member:
    return Member(f"conn-{n}", ROOM, f"user-{n}", role, f"User {n}")


@dataclass
class Report:
    delivered: tuple[str, ...]
    gone: tuple[str, ...] = ()
    failed: tuple[object, ...] = ()


@dataclass
class Connections:
    """@connections as the core sees it: records every post; `during` runs inside the n-th post_each."""

    posts: list[tuple[str, bytes]] = field(default_factory=list)
    calls: int = 0
    during: dict[int, Callable[[], object]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    closed: list[str] = field(default_factory=list)
    posted_before_close: list[int] = field(default_factory=list)  # posts made when each close began

    def post_each(self, posts: Sequence[tuple[str, bytes]]) -> Report:
        self.calls += 1
        hook = self.during.pop(self.calls, None)
        if hook:
            hook()
        delivered = []
        for connection_id, data in posts:
            if connection_id not in self.gone:
                self.posts.append((connection_id, data))
                delivered.append(connection_id)
        return Report(tuple(delivered), tuple(c for c, _ in posts if c in self.gone))

    def post_many(self, connection_ids: Sequence[str], data: bytes) -> Report:
        return self.post_each([(c, data) for c in connection_ids])

    def delete(self, connection_id: str) -> None:
        self.closed.append(connection_id)

    def delete_many(self, connection_ids: Sequence[str]) -> None:
        self.closed.extend(connection_ids)
        self.posted_before_close.append(len(self.posts))

    def messages_to(self, connection_id: str) -> list[dict]:
        return [json.loads(data) for c, data in self.posts if c == connection_id]

    def events_to(self, connection_id: str) -> list[dict]:
        events: list[dict] = []
        for message in self.messages_to(connection_id):
            events.extend(message["events"] if message["type"] == "events" else [message])
        return events


def limits() -> Limits:
    return Limits(**UNLIMITED)


def service(redis_client, connections: Connections, **fanout) -> ClassroomService:
    settings_ = FanoutSettings(**fanout)
    return ClassroomService(
        ClassroomStore(redis_client, limits(), settings_),
        connections,
        limits(),
        fanout=settings_,
    )


def send(event: str, client_id: str, data: object = None) -> str:
    return json.dumps({"action": "send", "id": client_id, "event": event, "data": data or {"n": client_id}})


def seqs(events: list[dict]) -> list[int]:
    return [e["seq"] for e in events if e.get("seq") is not None]


def seated(core: ClassroomService, members: Sequence[Member], batch: bool = True) -> None:
    for m in members:
        assert core.connect(m, 0, batch=batch) is None


def room_of(
    redis_client, members: Sequence[Member], **fanout
) -> tuple[Connections, ClassroomService, ClassroomService]:
    """The members seated (posts cleared), the invocation under test, and another one (its posts unwatched)."""
    connections = Connections()
    core = service(redis_client, connections, **fanout)
    seated(core, members)
    connections.posts.clear()
    return connections, core, service(redis_client, Connections(), **fanout)


def while_posting(connections: Connections, action: Callable[[], object]) -> None:
    """Runs `action` inside the next post_each: other invocations appending while a round is in flight."""
    connections.during[connections.calls + 1] = action


# -- the service: rounds, batches, the guarantee ------------------------------------------------------------


def test_a_quiet_classroom_posts_each_event_at_once_as_a_plain_event_frame(redis_client):
    room = [member(n) for n in range(3)]
    connections, core, _ = room_of(redis_client, room)
    core.handle(room[0], send("chat", "m1"))
    for m in room:
        assert [(f["type"], f["id"]) for f in connections.messages_to(m.connection_id)] == [("event", "m1")]
    assert redis_client.get(f"cw:{{{ROOM}}}:flusher") is None  # handed back: nothing was left


def test_events_appended_during_a_round_go_out_together_in_the_next(redis_client):
    """The busy room: 10 members, 5 sending while the first sender's round is in flight."""
    room = [member(n) for n in range(10)]
    connections, core, others = room_of(redis_client, room)  # the others find the lease taken
    while_posting(connections, lambda: [others.handle(room[n], send("stroke", f"s{n}")) for n in range(1, 5)])
    core.handle(room[0], send("stroke", "s0"))
    assert others.connections.posts == []  # type: ignore[attr-defined]
    for m in room:
        messages = connections.messages_to(m.connection_id)
        assert [f["type"] for f in messages] == ["event", "events"]
        assert [e["id"] for e in connections.events_to(m.connection_id)] == ["s0", "s1", "s2", "s3", "s4"]
        events = connections.events_to(m.connection_id)
        assert seqs(events) == sorted(seqs(events))
    # 5 events to 10 members in 20 messages, not 50.
    assert len(connections.posts) == 20


def test_a_connection_without_batch_gets_one_event_per_frame(redis_client):
    connections = Connections()
    core = service(redis_client, connections)
    batched, plain = member(1), member(2)
    seated(core, [batched])
    seated(core, [plain], batch=False)
    connections.posts.clear()
    others = service(redis_client, Connections())
    connections.during[connections.calls + 1] = lambda: [
        others.handle(batched, send("chat", f"c{n}")) for n in range(3)
    ]
    core.handle(plain, send("chat", "first"))
    assert [f["type"] for f in connections.messages_to(plain.connection_id)] == ["event"] * 4
    assert [f["type"] for f in connections.messages_to(batched.connection_id)] == ["event", "events"]
    for m in (batched, plain):
        assert [e["id"] for e in connections.events_to(m.connection_id)] == ["first", "c0", "c1", "c2"]


def test_a_volatile_event_in_a_batch_never_goes_back_to_its_sender(redis_client):
    room = [member(n) for n in range(4)]
    connections, core, others = room_of(redis_client, room)
    while_posting(
        connections,
        lambda: [
            others.handle(room[1], send("cursor", "k1", {"x": 1})),
            others.handle(room[2], send("chat", "c2")),
            others.handle(room[2], send("cursor", "k2", {"x": 2})),
        ],
    )
    core.handle(room[0], send("chat", "c0"))
    got = {m.connection_id: [e["id"] for e in connections.events_to(m.connection_id)] for m in room}
    assert got == {
        "conn-0": ["c0", "c2", "k1", "k2"],
        "conn-1": ["c0", "c2", "k2"],
        "conn-2": ["c0", "c2", "k1"],
        "conn-3": ["c0", "c2", "k1", "k2"],
    }
    # Volatile events carry no seq, and are what the sender wrote.
    (k1,) = [e for e in connections.events_to("conn-0") if e["id"] == "k1"]
    assert "seq" not in k1 and k1["data"] == {"x": 1} and k1["from"] == "user-1" and k1["event"] == "cursor"


class Died(BaseException):
    """The flusher's process dying (timeout, out of memory): nothing in the core catches it."""


def test_a_flusher_killed_mid_round_strands_nothing(redis_client):
    """Killed with its round half posted and events queued behind it: once its lease runs out, the next
    telemetry ping posts every event after the last finished round, the half-posted ones again."""
    room = [member(n) for n in range(4)]
    connections, core, others = room_of(redis_client, room, lease_ms=300, budget_ms=200)

    def die() -> None:
        others.handle(room[1], send("chat", "queued-1"))
        others.handle(room[2], send("chat", "queued-2"))
        raise Died

    connections.during[connections.calls + 1] = die
    with pytest.raises(Died):
        core.handle(room[0], send("chat", "killed"))
    assert connections.posts == []
    # While the dead flusher's lease lasts, a ping takes nothing over (a live flusher may be slow).
    ping = json.dumps({"action": "ping", "seq": 1})
    core.handle(room[3], ping)
    assert connections.posts == []
    redis_client.pexpire(f"cw:{{{ROOM}}}:flusher", 1)  # the lease runs out
    time.sleep(0.01)
    pong = json.loads(core.handle(room[3], ping) or "{}")
    assert pong["type"] == "pong"
    for m in room:
        assert [e["id"] for e in connections.events_to(m.connection_id)][-3:] == [
            "killed",
            "queued-1",
            "queued-2",
        ]
    assert redis_client.get(f"cw:{{{ROOM}}}:flusher") is None


def test_a_flusher_past_its_budget_hands_the_rest_to_the_next_touch(redis_client):
    room = [member(n) for n in range(3)]
    connections, core, others = room_of(redis_client, room, budget_ms=1)

    def slow_round() -> None:
        others.handle(room[1], send("chat", "late"))
        time.sleep(0.005)  # the round outlasts the budget

    connections.during[connections.calls + 1] = slow_round
    core.handle(room[0], send("chat", "first"))
    assert [e["id"] for e in connections.events_to("conn-2")] == ["first"]
    assert redis_client.get(f"cw:{{{ROOM}}}:flusher") is None  # handed back with one event left
    core.handle(room[2], json.dumps({"action": "ping", "seq": 0}))  # the next touch posts it
    for m in room:
        assert [e["id"] for e in connections.events_to(m.connection_id)] == ["first", "late"]


def test_a_linger_gathers_the_events_appended_meanwhile_into_the_first_round(redis_client):
    connections = Connections()
    others = service(redis_client, Connections())
    room = [member(n) for n in range(3)]
    core = service(redis_client, connections, linger_ms=20)
    seated(core, room)
    connections.posts.clear()
    core.sleep = lambda seconds: [
        others.handle(room[1], send("chat", "b")),
        others.handle(room[2], send("cursor", "k", {"x": 0})),
        others.handle(room[1], send("chat", "c")),
    ]
    core.handle(room[0], send("chat", "a"))
    assert [f["type"] for f in connections.messages_to("conn-0")] == ["events"]
    assert [e["id"] for e in connections.events_to("conn-0")] == ["a", "b", "c", "k"]
    assert [e["id"] for e in connections.events_to("conn-2")] == ["a", "b", "c"]


def test_an_end_posted_by_another_invocations_round_still_closes_the_class(redis_client):
    connections = Connections()
    core = service(redis_client, connections)
    teacher, student = member(0, "teacher"), member(1)
    seated(core, [teacher, student])
    connections.posts.clear()
    others = service(redis_client, Connections())
    connections.during[connections.calls + 1] = lambda: others.handle(teacher, send("end", "e", "null"))
    core.handle(student, send("chat", "bye"))
    assert [e["event"] for e in connections.events_to(student.connection_id)] == ["chat", "end"]
    assert sorted(connections.closed) == sorted([teacher.connection_id, student.connection_id])


def test_a_gone_connection_found_by_a_round_leaves_in_the_next(redis_client):
    connections = Connections()
    core = service(redis_client, connections)
    room = [member(n) for n in range(3)]
    seated(core, room)
    # conn-2 joined a minute ago (past the 30 s grace of a $connect still running) and is gone since.
    joined_ms = int(time.time() * 1000) - 60_000
    redis_client.zadd(f"cw:{{{ROOM}}}:members", {"conn-2": joined_ms + CONNECTION_TTL_SECONDS * 1000})
    connections.gone.add("conn-2")
    connections.posts.clear()
    core.handle(room[0], send("chat", "m"))
    for m in room[:2]:
        events = connections.events_to(m.connection_id)
        assert [(e["event"], e["from"]) for e in events] == [("chat", "user-0"), ("leave", "user-2")]


def test_pack_events_keeps_every_frame_under_the_limit_and_in_order():
    events = [
        json.dumps({"type": "event", "seq": n, "pad": "x" * (n * 997 % 9000)}).encode() for n in range(40)
    ]
    frames = pack_events(events)
    assert all(len(f) <= FRAME_LIMIT_BYTES for f in frames)
    unpacked: list[dict] = []
    for f in frames:
        message = json.loads(f)
        unpacked.extend(message["events"] if message["type"] == "events" else [message])
    assert [e["seq"] for e in unpacked] == list(range(40))
    assert len(frames) < len(events) / 3


# -- the protocol under every interleaving ---------------------------------------------------------------


@dataclass
class Invocation:
    round: Round
    posted: bool = False


STEPS = st.lists(
    st.tuples(
        st.sampled_from(["send", "post", "settle", "stop", "die", "expire", "ping"]), st.integers(0, 7)
    ),
    max_size=60,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_no_schedule_of_appends_rounds_deaths_and_expiries_strands_an_event(redis_client, steps):
    redis_client.flushall()
    store = ClassroomStore(redis_client, limits(), FanoutSettings())
    room = [member(n) for n in range(3)]
    delivered: dict[str, list[int]] = defaultdict(list)
    running: list[Invocation] = []

    def start(round_: Round | None) -> None:
        if round_ is not None:
            running.append(Invocation(round_))

    def post(invocation: Invocation) -> None:
        for connection_id in invocation.round.connection_ids:
            delivered[connection_id].extend(json.loads(f)["seq"] for f in invocation.round.frames)
        invocation.posted = True

    for m in room:  # seated, every join's round run to its end
        start(store.join(m, 0, batch=True).round)
        while running:
            joining = running.pop()
            post(joining)
            start(store.settle(ROOM, joining.round))
    delivered.clear()
    first = int(redis_client.hget(f"cw:{{{ROOM}}}:meta", "seq"))
    faults = stopped = False
    for n, (action, pick) in enumerate(steps):
        invocation = running[pick % len(running)] if running else None
        if action == "send":
            start(store.publish(room[pick % 3], f"m{n}", "chat", "{}", True).published.round)  # type: ignore[union-attr]
        elif action == "ping":
            start(store.report(room[pick % 3], 0, None).round)
        elif action == "expire":
            faults |= redis_client.delete(f"cw:{{{ROOM}}}:flusher") > 0
        elif invocation is None:
            continue
        elif action == "post" and not invocation.posted:
            post(invocation)
        elif action in ("settle", "stop") and invocation.posted:
            stopped |= action == "stop"
            following = store.settle(ROOM, invocation.round, stop=action == "stop")
            running.remove(invocation)
            start(following)
        elif action == "die":
            running.remove(invocation)
            faults = True
    last = int(redis_client.hget(f"cw:{{{ROOM}}}:meta", "seq"))
    expected = list(range(first + 1, last + 1))
    # Whatever is still running finishes; a dead flusher's lease runs out; every member pings.
    while running:
        finishing = running.pop()
        if not finishing.posted:
            post(finishing)
        start(store.settle(ROOM, finishing.round))
    if not (faults or stopped):  # the flushers alone delivered everything: nothing waits for a ping
        assert all(delivered[m.connection_id] == expected for m in room)
    redis_client.delete(f"cw:{{{ROOM}}}:flusher")
    while True:
        for m in room:
            start(store.report(m, 0, None).round)
        if not running:
            break
        while running:
            finishing = running.pop()
            post(finishing)
            start(store.settle(ROOM, finishing.round))
    for m in room:
        got = delivered[m.connection_id]
        assert set(got) == set(expected), f"{m.connection_id} missed {set(expected) - set(got)}"
        if not faults:  # no death and no lost lease: each once, in order
            assert got == expected


# -- what the outside review found ---------------------------------------------------------------------


def test_a_resent_end_closes_no_one_before_the_events_ahead_of_it_are_posted(redis_client):
    connections = Connections()
    core = service(redis_client, connections, lease_ms=300, budget_ms=200)
    teacher, student = member(0, "teacher"), member(1)
    seated(core, [teacher, student])
    connections.posts.clear()

    def die() -> None:
        raise Died

    connections.during[connections.calls + 1] = die
    with pytest.raises(Died):  # a flusher dies holding the lease
        core.handle(student, send("chat", "first"))
    core.handle(student, send("chat", "ahead"))  # queued behind the dead flusher
    core.handle(teacher, send("end", "e", "null"))  # queued too
    core.handle(teacher, send("end", "e", "null"))  # the teacher's resend, the lease still held
    assert connections.closed == []  # nobody closed before "first" and "ahead" are posted
    redis_client.delete(f"cw:{{{ROOM}}}:flusher")  # the dead flusher's lease runs out
    core.handle(student, json.dumps({"action": "ping"}))  # a bare keep-alive takes the round
    assert sorted(connections.closed) == sorted([teacher.connection_id, student.connection_id])
    # (The resend posted its `end` at once; the client holds it in its gap buffer.) By the close, the
    # student had been posted everything ahead of it.
    before_close = Connections(posts=connections.posts[: connections.posted_before_close[0]])
    assert {"first", "ahead", "e"} <= {e["id"] for e in before_close.events_to(student.connection_id)}


def test_a_resent_end_whose_round_was_posted_closes_the_class_again(redis_client):
    connections = Connections()
    core = service(redis_client, connections)
    teacher, student = member(0, "teacher"), member(1)
    seated(core, [teacher, student])
    core.handle(teacher, send("end", "e", "null"))
    connections.closed.clear()  # as if those closes had failed
    core.handle(teacher, send("end", "e", "null"))
    assert sorted(connections.closed) == sorted([teacher.connection_id, student.connection_id])


def test_a_lingering_flusher_posts_a_lone_volatile_event(redis_client):
    room = [member(n) for n in range(2)]
    connections, core, _ = room_of(redis_client, room, linger_ms=5)
    core.handle(room[0], send("cursor", "k", {"x": 1}))
    assert [e["id"] for e in connections.events_to("conn-1")] == ["k"]
    assert connections.events_to("conn-0") == []


def test_connect_refuses_a_joiner_when_its_round_carried_the_end(redis_client):
    connections = Connections()
    core = service(redis_client, connections)
    teacher, student, late = member(0, "teacher"), member(1), member(2)
    seated(core, [teacher, student])
    others = service(redis_client, Connections())
    connections.during[connections.calls + 1] = lambda: others.handle(teacher, send("end", "e", "null"))
    assert core.connect(late, 0, batch=True) == (403, "the class has ended; a teacher may reopen it")
    assert redis_client.zscore(f"cw:{{{ROOM}}}:members", late.connection_id) is None


def test_a_dead_flushers_backlog_past_its_limit_still_posts_the_end(redis_client):
    connections = Connections()
    core = service(redis_client, connections)
    teacher, student = member(0, "teacher"), member(1)
    seated(core, [teacher, student])
    redis_client.set(f"cw:{{{ROOM}}}:flusher", "dead", px=60_000)  # a dead flusher's lease
    store = core.store
    store.publish(teacher, "e", "end", "null", True, closes_class=True)
    for n in range(300):  # more than a round catches up on after a death (BACKLOG_MAX)
        store.publish(teacher, f"m{n}", "chat", "1", True)
    redis_client.delete(f"cw:{{{ROOM}}}:flusher")
    connections.posts.clear()
    core.handle(student, json.dumps({"action": "ping", "seq": 0}))
    assert "end" in [e["event"] for e in connections.events_to(student.connection_id)]
    assert student.connection_id in connections.closed


def test_a_strangers_bare_ping_takes_no_round_and_a_refused_rerun_hands_its_lease_back(redis_client):
    connections, core, _ = room_of(redis_client, [member(0), member(1)])
    store = core.store
    redis_client.set(f"cw:{{{ROOM}}}:flusher", "dead", px=60_000)
    store.publish(member(0), "waiting", "chat", "1", True)  # queued behind a dead flusher
    redis_client.delete(f"cw:{{{ROOM}}}:flusher")
    stranger = Member("gone", ROOM, "user-9", "student")
    assert store.admit(stranger) == (False, None)
    assert redis_client.get(f"cw:{{{ROOM}}}:flusher") is None  # left for a member to take
    # A rerun (the same lease token) refused after its first run took the round: the lease goes back.
    redis_client.set(f"cw:{{{ROOM}}}:flusher", "token", px=60_000)
    rest = store._lease()[1:]
    store._lease = lambda: ("token", *rest)  # type: ignore[method-assign]
    assert store.publish(stranger, "x", "chat", "1", True).status == "not_member"
    assert redis_client.get(f"cw:{{{ROOM}}}:flusher") is None
    core.handle(member(1), json.dumps({"action": "ping"}))
    assert "waiting" in [e["id"] for e in connections.events_to("conn-1")]


def test_a_resend_whose_own_round_carries_it_posts_it_once(redis_client):
    connections, core, _ = room_of(redis_client, [member(0), member(1)])
    redis_client.set(f"cw:{{{ROOM}}}:flusher", "dead", px=60_000)
    core.handle(member(0), send("chat", "m"))  # appended; its round is a dead flusher's
    redis_client.delete(f"cw:{{{ROOM}}}:flusher")
    core.handle(member(0), send("chat", "m"))  # the resend takes the round, which carries it
    assert [e["id"] for e in connections.events_to("conn-1")] == ["m"]
