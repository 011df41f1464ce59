"""$connect, $disconnect and the message routes as Lambda sees them: API Gateway events in, real Redis
behind, fan-out over real HTTP to a local @connections stub that checks every SigV4 signature."""

from __future__ import annotations

import json

import pytest

from bench.events import Caller, LambdaContext, disconnect_event
from classwire.handlers import disconnect
from classwire.settings import CONNECTING_GRACE_SECONDS
from tests.support.handler_calls import frames_to, join, send
from tests.support.redis_state import stored_state

TEACHER = Caller("T1cOnn3ct10nId=", "tina", "teacher", "room-1", "Tina")
STUDENT = Caller("S1cOnn3ct10nId=", "sam", "student", "room-1", "Sam")
OUTSIDER = Caller("O1cOnn3ct10nId=", "olga", "student", "room-2", "Olga")
OUTSIDER_IN_ROOM = Caller("P1cOnn3ct10nId=", "pete", "student", "room-1", "Pete")


def test_connect_registers_the_member_and_announces_the_join_to_the_others(stub):
    join(TEACHER, STUDENT)
    # The joining connection is not open yet during $connect: only the teacher hears of the student.
    assert [(f["event"], f["from"]) for f in frames_to(stub, TEACHER)] == [("join", "sam")]
    assert frames_to(stub, STUDENT) == []
    assert stub.signature_failures == 0


def test_send_fans_out_to_the_classroom_only_and_the_sender_gets_its_copy_as_ack(stub):
    join(TEACHER, STUDENT, OUTSIDER)
    stub.reset()
    assert send(STUDENT, {"action": "send", "id": "m1", "event": "chat", "data": {"text": "hi"}}) == {
        "statusCode": 200
    }
    for member in (TEACHER, STUDENT):
        (event,) = frames_to(stub, member)
        assert (event["type"], event["event"], event["id"], event["data"]) == (
            "event",
            "chat",
            "m1",
            {"text": "hi"},
        )
        assert event["classroom"] == "room-1"
    assert frames_to(stub, OUTSIDER) == []


def test_a_volatile_event_reaches_the_others_but_not_its_sender(stub):
    join(TEACHER, STUDENT, OUTSIDER)
    sams_tablet = Caller("S2tAbl3tC0nnId=", "sam", "student", "room-1", "Sam")
    join(sams_tablet)
    stub.reset()
    assert send(STUDENT, {"action": "send", "id": "v1", "event": "cursor", "data": {"x": 1}}) == {
        "statusCode": 200
    }
    (cursor,) = frames_to(stub, TEACHER)
    assert (cursor["event"], cursor["from"], cursor["data"]) == ("cursor", "sam", {"x": 1})
    assert "seq" not in cursor
    assert [f["event"] for f in frames_to(stub, sams_tablet)] == ["cursor"]  # the user's other connection
    assert frames_to(stub, STUDENT) == []  # it would acknowledge nothing
    assert frames_to(stub, OUTSIDER) == []


def test_two_way_routes_answer_in_the_response_body(stub):
    join(TEACHER, STUDENT)
    roster = json.loads(send(TEACHER, {"action": "who"})["body"])
    assert roster["type"] == "roster"
    assert {m["userId"] for m in roster["members"]} == {"tina", "sam"}
    synced = json.loads(send(STUDENT, {"action": "sync", "since": 0})["body"])
    assert [e["event"] for e in synced["events"]] == ["join", "join"]
    assert json.loads(send(STUDENT, {"action": "ping"})["body"])["type"] == "pong"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_request"),
        ({"action": "dance"}, "unknown_action"),
        ({"action": "send", "id": "x", "event": "chat", "data": {}, "classroom": "room-2"}, "forbidden"),
        ({"action": "send", "id": "x", "event": "clear", "data": {}}, "forbidden"),
    ],
)
def test_bad_frames_get_a_precise_error_and_change_nothing(stub, redis_client, frame, code):
    join(TEACHER, STUDENT)
    before = stored_state(redis_client)
    stub.reset()
    reply = json.loads(send(STUDENT, frame)["body"])
    assert (reply["type"], reply["code"]) == ("error", code)
    assert stub.posts == []
    assert stored_state(redis_client) == before


def test_disconnect_removes_the_member_and_announces_the_leave(stub):
    join(TEACHER, STUDENT)
    stub.reset()
    assert disconnect.handler(disconnect_event(STUDENT), LambdaContext()) == {"statusCode": 200}
    assert [(f["event"], f["from"]) for f in frames_to(stub, TEACHER)] == [("leave", "sam")]
    roster = json.loads(send(TEACHER, {"action": "who"})["body"])
    assert [m["userId"] for m in roster["members"]] == ["tina"]


def test_a_gone_connection_is_pruned_by_the_fan_out_that_meets_it(stub, redis_client):
    join(TEACHER, STUDENT)
    # The student joined longer ago than a $connect can take (its expiry moves, not the clock).
    redis_client.zincrby("cw:{room-1}:members", -(CONNECTING_GRACE_SECONDS + 1) * 1000, STUDENT.connection_id)
    stub.gone.add(STUDENT.connection_id)
    send(TEACHER, {"action": "send", "id": "m1", "event": "chat", "data": {"text": "anyone?"}})
    # The 410 pruned the student, and the leave that prune appended reached the teacher.
    assert [f["event"] for f in frames_to(stub, TEACHER)][-2:] == ["chat", "leave"]
    roster = json.loads(send(TEACHER, {"action": "who"})["body"])
    assert [m["userId"] for m in roster["members"]] == ["tina"]


def test_a_gone_peer_met_by_a_volatile_event_is_posted_once_and_its_leave_reaches_the_sender(
    stub, redis_client
):
    join(TEACHER, STUDENT, OUTSIDER_IN_ROOM)
    redis_client.zincrby(
        "cw:{room-1}:members", -(CONNECTING_GRACE_SECONDS + 1) * 1000, OUTSIDER_IN_ROOM.connection_id
    )
    stub.gone.add(OUTSIDER_IN_ROOM.connection_id)
    stub.reset()
    send(TEACHER, {"action": "send", "id": "v1", "event": "cursor", "data": {"x": 1}})
    assert [f["event"] for f in frames_to(stub, STUDENT)] == ["cursor", "leave"]
    # The leave is a persistent event: its sender's copy goes to the cursor's sender too.
    assert [f["event"] for f in frames_to(stub, TEACHER)] == ["leave"]
    posts_to_gone = [
        r for r in stub.requests if r.method == "POST" and r.connection_id == OUTSIDER_IN_ROOM.connection_id
    ]
    assert len(posts_to_gone) == 1


def test_a_connection_still_connecting_is_not_pruned_by_a_410(stub):
    join(TEACHER, STUDENT)
    # Until the student's $connect returns, API Gateway answers 410 for it: no proof it is gone.
    stub.gone.add(STUDENT.connection_id)
    send(TEACHER, {"action": "send", "id": "m1", "event": "chat", "data": {"text": "welcome"}})
    assert [f["event"] for f in frames_to(stub, TEACHER)][-1] == "chat"
    roster = json.loads(send(TEACHER, {"action": "who"})["body"])
    assert [m["userId"] for m in roster["members"]] == ["sam", "tina"]


def test_the_teacher_ending_the_class_closes_every_connection(stub):
    join(TEACHER, STUDENT)
    send(TEACHER, {"action": "send", "id": "e1", "event": "end", "data": {}})
    deleted = {r.connection_id for r in stub.requests if r.method == "DELETE"}
    assert deleted == {TEACHER.connection_id, STUDENT.connection_id}


# -- delivery telemetry --------------------------------------------------------------------------------------


def emf_lines(captured: str) -> list[dict]:
    """The EMF documents Powertools printed: one JSON line per flush."""
    lines = [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def metric_values(lines: list[dict], name: str) -> list[float]:
    values: list[float] = []
    for line in lines:
        if name in line:
            value = line[name]
            values += value if isinstance(value, list) else [value]
    return values


def redis_calls(redis_client) -> int:
    stats = redis_client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))


def test_a_telemetry_ping_is_recorded_answered_with_behind_and_published_as_emf(stub, redis_client, capsys):
    join(TEACHER, STUDENT)
    send(TEACHER, {"action": "send", "id": "m1", "event": "chat", "data": {"text": "hi"}})  # seq 3
    capsys.readouterr()
    pong = json.loads(send(STUDENT, {"action": "ping", "seq": 1, "lagMs": 420})["body"])
    assert pong["type"] == "pong" and pong["behind"] == 2
    (line,) = [line for line in emf_lines(capsys.readouterr().out) if "MemberLagMs" in line]
    assert metric_values([line], "MemberLagMs") == [420] and metric_values([line], "MembersBehind") == [1]
    # One dimension (service); the classroom is a searchable property of the line, not a dimension.
    directive = line["_aws"]["CloudWatchMetrics"][0]
    assert directive["Dimensions"] == [["service"]]
    assert line["classroomId"] == "room-1"
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units["MemberLagMs"] == "Milliseconds" and units["MembersBehind"] == "Count"
    caught_up = json.loads(send(TEACHER, {"action": "ping", "seq": 3})["body"])
    assert caught_up["behind"] == 0
    (line,) = [line for line in emf_lines(capsys.readouterr().out) if "MembersBehind" in line]
    assert (
        metric_values([line], "MembersBehind") == [0] and "MemberLagMs" not in line
    )  # no lag measured: none published


def test_a_bare_ping_costs_one_redis_call_its_rate_check_and_records_nothing(stub, redis_client):
    join(TEACHER)
    send(TEACHER, {"action": "ping"})  # loads the scripts
    send(TEACHER, {"action": "ping", "seq": 1})
    redis_client.delete("cw:{room-1}:lag")
    before = redis_calls(redis_client)
    pong = json.loads(send(TEACHER, {"action": "ping"})["body"])
    assert redis_calls(redis_client) == before + 1
    assert pong["type"] == "pong" and "behind" not in pong
    assert not redis_client.exists("cw:{room-1}:lag")
    send(TEACHER, {"action": "ping", "seq": 1, "lagMs": 5})
    assert redis_calls(redis_client) == before + 2


def test_who_shows_each_users_lag_and_never_a_connection_id(stub):
    second_tab = Caller("T2cOnn3ct10nId=", "tina", "teacher", "room-1", "Tina")
    join(TEACHER, second_tab, STUDENT)  # seq 1..2: tina's second tab announces nothing
    send(TEACHER, {"action": "ping", "seq": 2, "lagMs": 40})
    send(second_tab, {"action": "ping", "seq": 1, "lagMs": 900})
    body = send(TEACHER, {"action": "who"})["body"]
    roster = {m["userId"]: m for m in json.loads(body)["members"]}
    # A user's lag is its worst connection's; a member that never reported is unknown.
    assert (roster["tina"]["lagMs"], roster["tina"]["behind"], roster["tina"]["connections"]) == (900, 1, 2)
    assert (roster["sam"]["lagMs"], roster["sam"]["behind"]) == (None, None)
    for caller in (TEACHER, second_tab, STUDENT):
        assert caller.connection_id not in body


def test_replays_and_resends_are_counted(stub, capsys):
    join(TEACHER, STUDENT)
    for n in range(3):
        send(TEACHER, {"action": "send", "id": f"m{n}", "event": "chat", "data": {"n": n}})  # seq 3..5
    capsys.readouterr()
    send(STUDENT, {"action": "sync", "since": 0})  # a first load is not a replay
    assert metric_values(emf_lines(capsys.readouterr().out), "Replays") == []
    send(STUDENT, {"action": "sync", "since": 3})  # catching up: seq 4 and 5
    assert metric_values(emf_lines(capsys.readouterr().out), "Replays") == [2]
    send(TEACHER, {"action": "send", "id": "m2", "event": "chat", "data": {"n": 2}})  # a resend of m2
    assert metric_values(emf_lines(capsys.readouterr().out), "Resends") == [1]
