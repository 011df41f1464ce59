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


def test_the_last_classs_waiting_leaves_are_dropped_once_nobody_is_there(redis_client):
    connections = Connections()
    core = service(redis_client, connections, presence_grace_seconds=30)
    teacher, students = member(0, role="teacher"), [member(n) for n in range(1, 8)]
    seated(core, [teacher, *students])
    for m in [*students, teacher]:
        core.disconnect(m)  # each leave waits for the grace; the last one out leaves nobody to tell
    assert redis_client.exists(f"cw:{{{ROOM}}}:away", f"cw:{{{ROOM}}}:crowd") == 0
    newcomer = member(9)
    seated(core, [newcomer])  # the next class: not crowded, and its first join is logged
    assert announced(logged(core, newcomer))[-1] == ("join", "user-9", False)
    pong = json.loads(core.handle(newcomer, json.dumps({"action": "ping", "seq": 0})) or "{}")
    assert (pong["users"], pong["crowded"]) == (1, False)


def test_a_leave_however_late_is_announced_while_anyone_is_there_even_by_a_bare_ping(redis_client):
    core = service(redis_client, Connections(), presence_grace_seconds=30)
    teacher, student = member(0, role="teacher"), member(1)
    seated(core, [teacher, student])
    core.disconnect(student)
    seconds, _ = redis_client.time()
    redis_client.zadd(f"cw:{{{ROOM}}}:away", {"user-1": seconds * 1000 - 6 * 60 * 1000})  # due long ago
    core.handle(teacher, json.dumps({"action": "ping"}))  # a bare keep-alive (telemetry off)
    assert announced(logged(core, teacher))[-1] == ("leave", "user-1", False)


def test_the_pinger_is_not_told_it_is_behind_the_leave_its_own_ping_announces(redis_client):
    core = service(redis_client, Connections(), presence_grace_seconds=30)
    teacher, student = member(0, role="teacher"), member(1)
    seated(core, [teacher, student])
    core.disconnect(student)
    last = logged(core, teacher)[-1]["seq"]
    redis_client.zadd(f"cw:{{{ROOM}}}:away", {"user-1": 0})
    pong = json.loads(core.handle(teacher, json.dumps({"action": "ping", "seq": last})) or "{}")
    assert (pong["behind"], pong["last"]) == (0, last)
    assert logged(core, teacher)[-1]["event"] == "leave"


def test_with_a_linger_the_teacher_still_gets_the_changes_of_the_first_take(redis_client):
    connections = Connections()
    limits = Limits(**{**UNLIMITED, "presence_live_max_users": LIVE_MAX})
    fanout = FanoutSettings(linger_ms=20)
    teacher, crowd = member(0, role="teacher"), [member(n) for n in range(1, 6)]
    other = ClassroomService(
        ClassroomStore(redis_client, limits, fanout), Connections(), limits, fanout=fanout
    )
    armed: list[str] = []
    # During the linger of the last join's round, a stroke is appended (its round is the lingering one's).
    core = ClassroomService(
        ClassroomStore(redis_client, limits, fanout),
        connections,
        limits,
        fanout=fanout,
        sleep=lambda _: armed and other.handle(teacher, send("stroke", armed.pop())),
    )
    seated(core, [teacher, *crowd[:-1]])
    connections.posts.clear()
    armed.append("during")
    assert core.connect(crowd[-1], 0, batch=True) is None
    assert changes_to(connections, teacher.connection_id) == [("user-5", True)]
    assert "during" in [e.get("id") for e in connections.events_to(teacher.connection_id)]
