"""Presence at scale (README, "Presence"): per-user joins and leaves, a reconnect grace, and crowded classrooms
whose students' comings and goings reach the teachers only. Against a real redis-server."""

from __future__ import annotations

import json
from collections.abc import Sequence

from classwire.classroom import ClassroomService
from classwire.classroom_store import ClassroomStore, Member
from classwire.settings import FanoutSettings, Limits
from tests.core.test_classroom_store import UNLIMITED
from tests.core.test_fanout_rounds import ROOM, Connections, member, seated, send

LIVE_MAX = 4  # more users than this: crowded; back to live at 3


def service(redis_client, connections: Connections, **overrides) -> ClassroomService:
    limits = Limits(**{**UNLIMITED, "presence_live_max_users": LIVE_MAX, **overrides})
    return ClassroomService(ClassroomStore(redis_client, limits, FanoutSettings()), connections, limits)


def logged(core: ClassroomService, reader: Member) -> list[dict]:
    reply = json.loads(core.handle(reader, json.dumps({"action": "sync", "since": 0, "limit": 200})) or "{}")
    return reply["events"]


def presence_to(connections: Connections, connection_id: str) -> list[dict]:
    return [m for m in connections.messages_to(connection_id) if m["type"] == "presence"]


def changes_to(connections: Connections, connection_id: str) -> list[tuple[str, bool]]:
    return [
        (c["userId"], c["present"]) for m in presence_to(connections, connection_id) for c in m["changes"]
    ]


def announced(events: Sequence[dict]) -> list[tuple[str, str, bool]]:
    return [(e["event"], e["from"], e["data"]["crowded"]) for e in events if e["event"] in ("join", "leave")]


def test_a_crowded_classroom_tells_only_its_teachers_of_students_coming_and_going(redis_client):
    connections = Connections()
    core = service(redis_client, connections)
    teacher, students = member(0, role="teacher"), [member(n) for n in range(1, 8)]
    seated(core, [teacher, *students])
    # Up to LIVE_MAX users every join is logged; the fifth user's join says the classroom is now crowded,
    # and the students after it are announced to the teacher alone.
    assert announced(logged(core, teacher)) == [
        ("join", "user-0", False),
        ("join", "user-1", False),
        ("join", "user-2", False),
        ("join", "user-3", False),
        ("join", "user-4", True),
    ]
    assert changes_to(connections, teacher.connection_id) == [
        ("user-5", True),
        ("user-6", True),
        ("user-7", True),
    ]
    for student in students:
        assert presence_to(connections, student.connection_id) == []
    connections.posts.clear()

    for student in reversed(students[2:]):  # 8 users down to 3
        core.disconnect(student)
    # Leaves while crowded go to the teacher; the one that brings the classroom to 3/4 of LIVE_MAX is logged
    # and says it is no longer crowded (the students then re-read the roster with `who`).
    assert changes_to(connections, teacher.connection_id) == [
        ("user-7", False),
        ("user-6", False),
        ("user-5", False),
        ("user-4", False),
    ]
    assert announced(logged(core, teacher))[5:] == [("leave", "user-3", False)]
    latest = presence_to(connections, teacher.connection_id)[-1]
    assert latest["crowded"] is True and latest["users"] == 4
    core.disconnect(students[1])
    assert announced(logged(core, teacher))[-1] == ("leave", "user-2", False)


def test_crowding_leaves_the_log_unbroken_for_the_members_who_stay(redis_client):
    connections = Connections()
    core = service(redis_client, connections)
    teacher, stays = member(0, role="teacher"), member(1)
    seated(core, [teacher, stays])
    crowd = [member(n) for n in range(2, 12)]
    for n, m in enumerate(crowd):
        assert core.connect(m, 0, batch=True) is None
        core.handle(teacher, send("stroke", f"s{n}"))
        if n % 2:
            core.disconnect(m)
    events = connections.events_to(stays.connection_id)
    received = [e["seq"] for e in events]
    # Every event after this member's own join, in order, none missing: the log's seqs are contiguous.
    assert received == list(range(received[0], received[-1] + 1))
    assert [e["seq"] for e in logged(core, teacher)][-1] == received[-1]


def test_occupancy_reaches_everyone_in_pongs_and_the_roster(redis_client):
    core = service(redis_client, Connections())
    members = [member(0, role="teacher"), *(member(n) for n in range(1, 7))]
    seated(core, members)
    pong = json.loads(core.handle(members[3], json.dumps({"action": "ping", "seq": 0})) or "{}")
    assert pong["users"] == 7
    roster = json.loads(core.handle(members[3], json.dumps({"action": "who"})) or "{}")
    assert roster["crowded"] is True and roster["users"] == 7 and len(roster["members"]) == 7


def test_a_reconnect_wave_within_the_grace_announces_nothing(redis_client):
    connections = Connections()
    core = service(redis_client, connections, presence_grace_seconds=30)
    teacher, students = member(0, role="teacher"), [member(n) for n in range(1, 9)]
    seated(core, [teacher, *students])
    before = logged(core, teacher)
    connections.posts.clear()
    for student in students:  # API Gateway's 2-hour close: each one goes and comes straight back
        core.disconnect(student)
        again = Member(student.connection_id + "-again", ROOM, student.user_id, "student", student.name)
        assert core.connect(again, 0, batch=True) is None
    core.disconnect(teacher)
    assert core.connect(Member("teacher-again", ROOM, teacher.user_id, "teacher", teacher.name), 0) is None
    assert logged(core, teacher) == before
    assert connections.posts == []


def test_a_student_cannot_send_presence(redis_client):
    connections = Connections()
    core = service(redis_client, connections)
    teacher, student = member(0, role="teacher"), member(1)
    seated(core, [teacher, student])
    connections.posts.clear()
    for event in ("join", "leave", "presence"):
        reply = json.loads(core.handle(student, send(event, f"x-{event}")) or "{}")
        assert reply["type"] == "error" and reply["code"] == "bad_request"
    assert connections.posts == []


def test_a_leave_that_fell_due_with_nobody_there_is_dropped_not_announced_to_the_next_class(redis_client):
    core = service(redis_client, Connections(), presence_grace_seconds=30)
    alice, bob = member(1), member(2)
    seated(core, [alice])
    core.disconnect(alice)  # the last one out: her leave waits for the grace, and nobody is left to sweep it
    away = f"cw:{{{ROOM}}}:away"
    assert redis_client.zrange(away, 0, -1) == [b"user-1"]
    seconds, _ = redis_client.time()
    redis_client.zadd(away, {"user-1": seconds * 1000 - 6 * 60 * 1000})  # due six minutes ago
    seated(core, [bob])  # the next class
    assert redis_client.zcard(away) == 0
    assert [e["event"] for e in logged(core, bob)].count("leave") == 0
    pong = json.loads(core.handle(bob, json.dumps({"action": "ping", "seq": 0})) or "{}")
    assert pong["users"] == 1
