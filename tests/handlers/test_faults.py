"""The guarantee when a hop fails: a Redis reply lost, delayed or cut mid-command, an invocation killed
between its append and its fan-out, @connections answering 429/500 or never; and what one user may use.

Redis sits behind a fault proxy (localcloud/redis_faults.py); the handlers run as Lambda runs them."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from unittest import mock

import pytest

from bench.events import Caller, LambdaContext, connect_event
from classwire import runtime
from classwire.handlers import connect
from classwire.management_api import ManagementApi
from localcloud.redis_faults import RedisFaultProxy
from tests.support.handler_calls import connect_as, frames_to, join, send

TEACHER = Caller("T1cOnn3ct10nId=", "tina", "teacher", "room-1", "Tina")
STUDENT = Caller("S1cOnn3ct10nId=", "sam", "student", "room-1", "Sam")
LATECOMER = Caller("L1cOnn3ct10nId=", "lea", "student", "room-1", "Lea")


@pytest.fixture
def faults(redis_server):
    with RedisFaultProxy(redis_server.port) as proxy:
        yield proxy


@pytest.fixture
def redis_url(faults) -> str:
    return faults.url


def logged(redis_client, event: str) -> list[dict]:
    frames = [json.loads(fields[b"f"]) for _, fields in redis_client.xrange("cw:{room-1}:log")]
    return [f for f in frames if f["event"] == event]


def chat(client_id: str, event: str = "chat", data: object = None) -> dict:
    return {"action": "send", "id": client_id, "event": event, "data": data or {"text": client_id}}


def assert_everyone_got_it_once(stub, redis_client, client_id: str, event: str = "chat") -> None:
    (appended,) = [e for e in logged(redis_client, event) if e["id"] == client_id]
    for member in (TEACHER, STUDENT):
        copies = [f for f in frames_to(stub, member) if f.get("id") == client_id]
        assert copies and {(f["seq"], f["eid"]) for f in copies} == {(appended["seq"], appended["eid"])}


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda proxy: proxy.drop_reply(b"m-lost"), id="reply lost after Redis ran it"),
        pytest.param(lambda proxy: proxy.delay_reply(b"m-lost", 2.5), id="reply later than the timeout"),
        pytest.param(lambda proxy: proxy.reset_mid_request(b"m-lost"), id="reset mid-command"),
    ],
)
def test_an_event_reaches_every_member_whatever_happened_to_its_redis_reply(
    stub, faults, redis_client, fault
):
    join(TEACHER, STUDENT)
    send(STUDENT, chat("m-warm"))  # the script is loaded: the fault meets the call that runs it
    stub.reset()
    fault(faults)
    assert send(STUDENT, chat("m-lost")) == {"statusCode": 200}
    assert faults.fired
    # Appended once, and fanned out: redis-py's retry met the idempotency record of the first run.
    assert_everyone_got_it_once(stub, redis_client, "m-lost")


def test_an_end_whose_reply_was_lost_still_closes_the_class(stub, faults, redis_client):
    join(TEACHER, STUDENT)
    send(STUDENT, chat("m-warm"))
    stub.reset()
    faults.drop_reply(b"m-end")
    send(TEACHER, chat("m-end", "end", "null"))
    assert_everyone_got_it_once(stub, redis_client, "m-end", "end")
    closed = {r.connection_id for r in stub.requests if r.method == "DELETE"}
    assert closed == {TEACHER.connection_id, STUDENT.connection_id}
    assert connect_as(LATECOMER)["statusCode"] == 403


def _send_and_die_before_the_fan_out(frame: dict, ready) -> None:
    """A Lambda invocation that appends and is killed (timeout, out of memory) before its first post."""
    runtime.reset()  # this process's own connections

    def killed(*_args, **_kwargs):
        ready.set()
        os.kill(os.getpid(), signal.SIGKILL)

    with mock.patch.object(ManagementApi, "post_each", killed):
        send(TEACHER if frame["event"] == "end" else STUDENT, frame)


@pytest.mark.parametrize("event", ["chat", "end"])
def test_an_invocation_killed_between_its_append_and_its_fan_out(stub, redis_client, event):
    join(TEACHER, STUDENT)
    stub.reset()
    frame = chat("m-killed", event, None if event == "chat" else "null")
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    worker = context.Process(target=_send_and_die_before_the_fan_out, args=(frame, ready))
    worker.start()
    worker.join(30)
    assert worker.exitcode == -signal.SIGKILL and ready.is_set()
    assert len(logged(redis_client, event)) == 1 and stub.posts == []
    if event == "end":
        # The class ended with the append: nobody may join while its fan-out never happened.
        assert connect_as(LATECOMER)["statusCode"] == 403
    # The sender's client resends after its acknowledgement timeout: the room gets the original now.
    send(TEACHER if event == "end" else STUDENT, frame)
    assert_everyone_got_it_once(stub, redis_client, "m-killed", event)
    assert len(logged(redis_client, event)) == 1
    if event == "end":
        # The dead invocation still holds the classroom's round: the class closes once that round is posted,
        # after what came before the `end`. Its lease runs out (the Lambda timeout); the next ping posts it.
        assert not [r for r in stub.requests if r.method == "DELETE"]
        redis_client.delete("cw:{room-1}:flusher")
        send(STUDENT, {"action": "ping", "seq": 0})
        closed = {r.connection_id for r in stub.requests if r.method == "DELETE"}
        assert closed == {TEACHER.connection_id, STUDENT.connection_id}


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"errors": (429, "ThrottlingException")}, id="429 throttled"),
        pytest.param({"errors": (500, "InternalServerError")}, id="500"),
        pytest.param({"hang": True}, id="no answer (read timeout)"),
    ],
)
def test_a_member_whose_post_failed_is_told_it_is_behind(stub, redis_client, failure):
    join(TEACHER, STUDENT)
    if "errors" in failure:
        stub.errors[STUDENT.connection_id] = failure["errors"]
    else:
        stub.hang.add(STUDENT.connection_id)
    stub.reset()
    send(TEACHER, chat("m1"))
    assert [f["id"] for f in frames_to(stub, TEACHER)] == ["m1"]  # the others are not held up
    if "errors" in failure:  # (a post never answered may or may not have been delivered)
        assert frames_to(stub, STUDENT) == []
    stub.errors.clear()
    stub.hang.clear()
    last = logged(redis_client, "chat")[0]["seq"]
    pong = json.loads(send(STUDENT, {"action": "ping", "seq": last - 1})["body"])
    assert (pong["behind"], pong["last"]) == (1, last) and pong["epoch"] == logged(redis_client, "chat")[0][
        "epoch"
    ]


def test_a_resend_of_an_event_no_longer_logged_is_acknowledged_by_seq(stub, redis_client, monkeypatch):
    monkeypatch.setenv("CLASSWIRE_LOG_MAX_EVENTS", "2")
    runtime.reset()
    join(TEACHER, STUDENT)
    send(STUDENT, chat("m1"))
    first = next(f for f in frames_to(stub, STUDENT) if f.get("id") == "m1")
    for n in range(2, 5):
        send(STUDENT, chat(f"m{n}"))
    reply = json.loads(send(STUDENT, chat("m1"))["body"])
    assert reply == {"type": "ack", "id": "m1", "seq": first["seq"], "epoch": first["epoch"]}
    assert [e["id"] for e in logged(redis_client, "chat")] == ["m3", "m4"]


def test_a_users_sixth_connection_and_a_full_classroom_are_refused(stub, monkeypatch):
    for n in range(5):
        join(Caller(f"A{n}=", "alice", "student"))
    refused = connect_as(Caller("A5=", "alice", "student"))
    assert refused["statusCode"] == 429 and "too many connections" in refused["body"]
    monkeypatch.setenv("CLASSWIRE_MAX_CONNECTIONS_PER_CLASSROOM", "6")
    runtime.reset()
    join(Caller("B0=", "bob", "student"))
    assert connect_as(Caller("C0=", "carol", "teacher"))["statusCode"] == 429


def test_a_connection_that_floods_is_closed_and_nothing_else_is_harmed(stub, redis_client, monkeypatch):
    monkeypatch.setenv("CLASSWIRE_READ_RATE_BURST", "5")
    runtime.reset()
    join(TEACHER, STUDENT)
    stub.reset()
    replies = [send(STUDENT, {"action": "who"}).get("body") for _ in range(12)]
    codes = [json.loads(r)["code"] if r and '"error"' in r else "ok" for r in replies if r]
    assert codes[:5] == ["ok"] * 5 and set(codes[5:]) == {"rate_limited"}
    closing = [f for f in frames_to(stub, STUDENT) if f.get("type") == "error"]
    assert closing and all(f["action"] == "who" and "closed" in f["message"] for f in closing)
    assert {r.connection_id for r in stub.requests if r.method == "DELETE"} == {STUDENT.connection_id}
    # The teacher's own budget is untouched.
    assert json.loads(send(TEACHER, {"action": "who"})["body"])["type"] == "roster"


def test_a_flood_of_refused_frames_is_charged_and_closed(stub, monkeypatch):
    monkeypatch.setenv("CLASSWIRE_READ_RATE_BURST", "5")
    runtime.reset()
    join(TEACHER, STUDENT)
    codes = [json.loads(send(STUDENT, "{not json").get("body") or "{}").get("code") for _ in range(12)]
    assert codes[:5] == ["bad_request"] * 5 and "rate_limited" in codes
    assert {r.connection_id for r in stub.requests if r.method == "DELETE"} == {STUDENT.connection_id}


def test_a_connection_the_registry_lost_is_closed_on_its_next_keep_alive(stub, redis_client):
    join(TEACHER, STUDENT)
    redis_client.zrem("cw:{room-1}:members", STUDENT.connection_id)  # evicted, or pruned by mistake
    stub.reset()
    assert send(STUDENT, {"action": "ping"}) == {"statusCode": 200}
    (told,) = frames_to(stub, STUDENT)
    assert (told["code"], told["action"]) == ("forbidden", "ping")
    assert [r.connection_id for r in stub.requests if r.method == "DELETE"] == [STUDENT.connection_id]


def test_only_a_teachers_explicit_reopen_reopens_an_ended_class(stub, redis_client):
    join(TEACHER, STUDENT)
    send(TEACHER, chat("bye", "end", "null"))
    refused = json.loads(send(STUDENT, chat("late")).get("body") or "{}")
    assert refused["code"] == "ended"
    again = Caller("T2cOnn3ct10nId=", "tina", "teacher", "room-1", "Tina")
    join(again)  # the teacher's client reconnecting: the class stays ended
    assert connect_as(LATECOMER)["statusCode"] == 403
    opener = Caller("T3cOnn3ct10nId=", "tina", "teacher", "room-1", "Tina")
    event = connect_event(opener)
    event["queryStringParameters"]["reopen"] = "1"
    assert connect.handler(event, LambdaContext()) == {"statusCode": 200}
    assert logged(redis_client, "join")[-1]["data"] == {
        "connections": 3,
        "reopened": True,
        "users": 2,
        "crowded": False,
    }
    assert connect_as(LATECOMER) == {"statusCode": 200}


def test_a_join_whose_redis_reply_was_lost_is_still_announced(stub, faults, redis_client):
    join(TEACHER, STUDENT)  # the join script is loaded
    stub.reset()
    faults.drop_reply(LATECOMER.connection_id.encode())
    assert connect_as(LATECOMER) == {"statusCode": 200}
    assert faults.fired == ["drop_reply"]
    (announced,) = [f for f in frames_to(stub, TEACHER) if f["event"] == "join"]
    assert announced["from"] == "lea" and len(logged(redis_client, "join")) == 3
