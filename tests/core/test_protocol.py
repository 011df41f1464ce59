"""Client frame parsing: every malformed frame gets the precise error code and message."""

from __future__ import annotations

import json

import pytest

from classwire.protocol import Ping, ProtocolError, Send, Sync, Who, parse_request

ROOM = "room-1"


def parse(frame: object, max_data_bytes: int = 16 * 1024):
    body = frame if isinstance(frame, str) else json.dumps(frame)
    return parse_request(body, ROOM, max_data_bytes)


def refused(frame: object, **kwargs) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse(frame, **kwargs)
    return caught.value


def test_send_is_parsed_with_data_serialized_compactly():
    request = parse({"action": "send", "id": "m1", "event": "chat", "data": {"text": "hé", "n": [1, 2]}})
    assert request == Send(id="m1", event="chat", data_json='{"text":"hé","n":[1,2]}')


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        ("not json", "bad_request", "frame is not valid JSON"),
        ("", "bad_request", "empty frame"),
        ("[1,2]", "bad_request", "must be a JSON object, got array"),
        ({"id": "x"}, "bad_request", "missing field 'action'"),
        ({"action": 7}, "bad_request", "'action' must be a string, got number"),
        ({"action": "dance"}, "unknown_action", "unknown action 'dance'"),
        ({"action": "send", "event": "chat", "data": 1}, "bad_request", "missing field 'id'"),
        ({"action": "send", "id": "", "event": "chat", "data": 1}, "bad_request", "1..64 characters"),
        ({"action": "send", "id": "x" * 65, "event": "chat", "data": 1}, "bad_request", "1..64 characters"),
        (
            {"action": "send", "id": "a", "event": 3, "data": 1},
            "bad_request",
            "'event' must be a non-empty string",
        ),
        ({"action": "send", "id": "a", "event": "chat"}, "bad_request", "missing field 'data'"),
        ({"action": "sync", "since": "5"}, "bad_request", "'since' must be an integer, got string"),
        ({"action": "sync", "since": -1}, "bad_request", "'since' must be >= 0"),
        ({"action": "sync", "since": True}, "bad_request", "must be an integer, got boolean"),
        ({"action": "sync", "limit": 5000}, "bad_request", "'limit' must be 1..1000"),
        ({"action": "who", "classroom": "other"}, "forbidden", "equal the classroom of this connection"),
        (
            {"action": "send", "id": "a", "event": "chat", "data": 1, "classroom": "x"},
            "forbidden",
            "classroom",
        ),
    ],
)
def test_malformed_frames_get_precise_errors(frame, code, message):
    error = refused(frame)
    assert error.code == code
    assert message in error.message


def test_error_frame_carries_the_client_id_and_the_action():
    error = refused({"action": "send", "id": "m9", "event": "chat"})
    assert json.loads(error.frame()) == {
        "type": "error",
        "code": "bad_request",
        "message": "missing field 'data' (any JSON value)",
        "id": "m9",
        "action": "send",
    }
    # A client retries a refused sync by its action.
    assert json.loads(refused({"action": "sync", "since": -1}).frame())["action"] == "sync"
    assert "action" not in json.loads(refused({"action": 7}).frame())


def test_data_over_the_limit_is_too_large():
    error = refused({"action": "send", "id": "a", "event": "chat", "data": "x" * 100}, max_data_bytes=64)
    assert error.code == "too_large"
    assert "102 bytes serialized; the limit is 64" in error.message


def test_unicode_counts_in_bytes_and_lone_surrogates_are_refused():
    assert (
        refused({"action": "send", "id": "a", "event": "chat", "data": "é" * 40}, max_data_bytes=64).code
        == "too_large"
    )
    error = refused('{"action":"send","id":"a","event":"chat","data":"\\ud800"}')
    assert (error.code, "unpaired UTF-16 surrogate" in error.message) == ("bad_request", True)


def test_deep_nesting_is_refused_without_recursing():
    deep = "[" * 100_000 + "]" * 100_000
    assert refused(deep).code in ("bad_request", "too_large")
    nested: object = 1
    for _ in range(80):
        nested = [nested]
    error = refused({"action": "send", "id": "a", "event": "chat", "data": nested})
    assert "nests deeper than 64" in error.message


def test_sync_who_ping_defaults():
    assert parse({"action": "sync"}) == Sync(since=0, since_eid="", limit=200)
    assert parse({"action": "sync", "since": 5, "sinceEid": "ab", "limit": 3, "classroom": ROOM}) == Sync(
        5, "ab", 3
    )
    assert parse({"action": "who"}) == Who(after="")
    assert parse({"action": "ping", "seq": 4, "lagMs": 30}) == Ping(seq=4, lag_ms=30)
