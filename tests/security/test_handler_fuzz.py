"""Bad input into the real handlers (hypothesis), against a real Redis and the @connections stub over HTTP.

(a) Frames into the message handler: every frame gets a valid reply or a precise error frame with a known
    code (never `internal`, never a stack trace), a bystander classroom's Redis keys stay byte-identical
    (DUMP), the sender's classroom log grows only by the valid sends, and fan-out reaches only the
    sender's classroom.
(b) Whole API Gateway events, mutated, into every handler: a well-formed response, or for an event API
    Gateway would never send, the one expected error (`MalformedEvent`, `Unauthorized` from the
    authorizer), with the bystander unharmed.

Example counts come from the hypothesis profile (tests/conftest.py): small in `make test`, large under
HYPOTHESIS_PROFILE=prove (three tests of 5,000 examples each). Each test's count is printed.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

import jwt
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from bench.connections_stub import ManagementStub
from bench.events import (
    Caller,
    LambdaContext,
    authorizer_event,
    connect_event,
    disconnect_event,
    message_event,
)
from classwire import runtime
from classwire.classroom import REFUSALS
from classwire.event_types import DEFAULT_EVENT_TYPES
from classwire.handlers import authorizer, connect, disconnect, message
from classwire.handlers.events import MalformedEvent
from classwire.protocol import ERROR_CODES, compact_json
from classwire.routes import MESSAGE_ACTIONS
from tests.core.test_fuzz_frames import frames as structured_frames
from tests.core.test_fuzz_frames import json_values
from tests.core.test_fuzz_frames import raw_bodies as core_bodies
from tests.support.redis_state import stored_state
from tests.support.signing_secret import store_signing_secret

ROOM = "fuzz-room"
EVENTS_ROOM = "fuzz-events"
BYSTANDER = "bystander-room"
SENDER = Caller("fz-sender=", "sam", "student", ROOM, "Sam")
PEER = Caller("fz-peer=", "tina", "teacher", ROOM, "Tina")
BYSTANDERS = (
    Caller("by-1=", "bea", "teacher", BYSTANDER, "Bea"),
    Caller("by-2=", "bo", "student", BYSTANDER, "Bo"),
)
SECRET = "fuzz-suite-signing-key-0123456789abcdef0123456789"
PERSISTENT = {t.name for t in DEFAULT_EVENT_TYPES if t.persistent}
REPLY_TYPES = ("error", "sync", "roster", "pong", "event", "ack")
EXAMPLES: Counter[str] = Counter()
FUZZ = settings(suppress_health_check=list(HealthCheck), deadline=None)


class _Errors(logging.Handler):
    """ERROR records from the handlers' logger (`frame failed` is an unhandled exception in the core)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


class World:
    def __init__(self, redis, stub: ManagementStub, errors: _Errors):
        self.redis = redis
        self.stub = stub
        self.errors = errors
        self.bystander_dump = self.dump(BYSTANDER)

    def dump(self, classroom: str) -> dict[bytes, bytes | None]:
        return stored_state(self.redis, f"cw:{{{classroom}}}:*")

    def seq(self, classroom: str) -> int:
        return int(self.redis.hget(f"cw:{{{classroom}}}:meta", "seq") or 0)

    def last_event(self, classroom: str) -> dict:
        ((_, fields),) = self.redis.xrevrange(f"cw:{{{classroom}}}:log", count=1)
        return json.loads(fields[b"f"])

    def members(self, classroom: str) -> set[str]:
        return {m.decode() for m in self.redis.zrange(f"cw:{{{classroom}}}:members", 0, -1)}

    def check_unharmed(self) -> None:
        assert self.dump(BYSTANDER) == self.bystander_dump, "the bystander classroom's Redis keys changed"
        errors, self.errors.records = self.errors.records, []  # one example's errors fail only that example
        assert not errors, [r.getMessage() for r in errors]
        bystander_ids = {c.connection_id for c in BYSTANDERS}
        posted = {connection_id for connection_id, _ in self.stub.posts}
        assert not posted & bystander_ids, "a fan-out reached the bystander classroom"
        self.stub.reset()


@pytest.fixture(scope="module")
def world(redis_server, report):
    with mock_aws(), ManagementStub() as stub, pytest.MonkeyPatch.context() as env:
        store_signing_secret(env, SECRET, name="classwire/fuzz")
        for name in ("CLASSWIRE_JWT_ISSUER", "CLASSWIRE_JWT_AUDIENCE"):
            env.delenv(name, raising=False)
        env.setenv("CLASSWIRE_REDIS_URL", redis_server.url)
        env.setenv("CLASSWIRE_MANAGEMENT_ENDPOINT", stub.endpoint)
        # The fuzzer sends far faster than a person: the rate limits would refuse (and close) nearly all of it.
        for name in ("RATE", "READ_RATE", "CONNECT_RATE"):
            env.setenv(f"CLASSWIRE_{name}_PER_SECOND", "1000000")
        for name in ("RATE_BURST", "READ_RATE_BURST", "CONNECT_BURST"):
            env.setenv(f"CLASSWIRE_{name}", "1000000")
        runtime.reset()
        redis = redis_server.client()
        redis.flushall()
        for caller in (SENDER, PEER, *BYSTANDERS):
            assert connect.handler(connect_event(caller), LambdaContext()) == {"statusCode": 200}
        for n, caller in enumerate(BYSTANDERS):
            frame = {"action": "send", "id": f"b{n}", "event": "chat", "data": {"text": f"bystander {n}"}}
            assert message.handler(message_event(caller, frame), LambdaContext()) == {"statusCode": 200}
        stub.reset()
        errors = _Errors()
        runtime.logger._logger.addHandler(errors)
        try:
            yield World(redis, stub, errors)
        finally:
            runtime.logger._logger.removeHandler(errors)
            redis.close()
            runtime.reset()
    for test, count in sorted(EXAMPLES.items()):
        report(f"handler fuzz: {test}: {count} examples")
    report(f"handler fuzz: {sum(EXAMPLES.values())} examples in total")


# -- (a) frames into the message handler ----------------------------------------------------------------

unicode_edges = st.sampled_from(
    [
        "\ud800",
        "\udfff",
        "\ud83d",
        "\u0000",
        "\u202e",
        "\u200f",
        "\ufeff",
        "\U0001f600",
        "\U0001f468\u200d\U0001f469",
        "\uffff",
        "\x7f",
    ]
)
edgy_text = st.lists(unicode_edges | st.text(max_size=4), max_size=8).map("".join)
literals = st.sampled_from(
    [
        '{"action":"send","id":"n1","event":"chat","data":NaN}',
        '{"action":"send","id":"n2","event":"chat","data":Infinity}',
        '{"action":"send","id":"n3","event":"chat","data":-Infinity}',
        '{"action":"sync","since":NaN}',
        '{"action":"sync","since":1e999}',
        '{"action":"sync","limit":Infinity}',
        '{"action":"ping","seq":1' + "0" * 400 + "}",
        '{"action":"send","id":"n4","event":"chat","data":1' + "0" * 5000 + "}",
        '{"action":"send","id":"n5","event":"chat","data":1e400}',
        '{"action":"send","action":"who"}',
        '{"action":"who","action":"send","id":"dup","event":"chat","data":1}',
        '{"action":"send","id":"d1","id":"d2","event":"stroke","event":"chat","data":{"a":1,"a":2}}',
        '{"action":"send","id":"\\ud800","event":"chat","data":1}',
        '{"action":"send","id":"ok","event":"\\udfff","data":1}',
        '{"action":"who","after":"\\ud83d"}',
        '{"action":"sync","sinceEid":"\\udc00"}',
        '{"action":"send","id":"z","event":"chat","data":"\\u0000"}',
        "\u0000",
        "\ufeff{}",
        "{}" * 1000,
        "",
        " ",
        "null",
        '"send"',
    ]
)
deep = st.integers(min_value=60, max_value=3000).flatmap(
    lambda n: st.sampled_from(
        [
            json.dumps({"action": "send", "id": "deep", "event": "chat", "data": None}).replace(
                "null", "[" * n + "]" * n
            ),
            json.dumps({"action": "send", "id": "deep", "event": "chat", "data": None}).replace(
                "null", '{"a":' * n + "1" + "}" * n
            ),
            '{"action":"sync","since":' + "[" * n + "]" * n + "}",
        ]
    )
)
huge = st.sampled_from([1_000, 16 * 1024 - 20, 16 * 1024 + 1, 40_000, 131_073, 600_000]).map(
    lambda n: json.dumps({"action": "send", "id": f"h{n}", "event": "chat", "data": "x" * n})
)
edgy_frames = st.fixed_dictionaries(
    {"action": st.sampled_from(MESSAGE_ACTIONS) | edgy_text},
    optional={
        "id": edgy_text,
        "event": st.sampled_from(sorted(PERSISTENT | {"cursor", "join", "leave", "end", "clear"}))
        | edgy_text,
        "data": json_values | edgy_text,
        "after": edgy_text,
        "sinceEid": edgy_text,
        "classroom": st.sampled_from([ROOM, BYSTANDER, EVENTS_ROOM]) | edgy_text,
        "since": st.integers(min_value=-3, max_value=2**70) | json_values,
        "limit": st.integers(min_value=-3, max_value=2**40) | json_values,
    },
).map(lambda frame: json.dumps(frame, ensure_ascii=False))
bodies = (
    core_bodies
    | st.builds(json.dumps, structured_frames)
    | edgy_frames
    | literals
    | deep
    | huge
    | edgy_text
    | st.none()
)


def route_key(body: object) -> str:
    """What API Gateway's route selection picks: `action` when it names a route, else `$default`."""
    try:
        action = json.loads(body).get("action")  # type: ignore[arg-type]  # any fuzzed body; TypeError is caught
    except (ValueError, TypeError, AttributeError, RecursionError):
        return "$default"
    return action if isinstance(action, str) and action in MESSAGE_ACTIONS else "$default"


def check_reply(response: object) -> dict | None:
    """A well-formed message-handler response; returns the reply frame, if any."""
    assert isinstance(response, dict) and response.get("statusCode") == 200, response
    assert set(response) <= {"statusCode", "body"}, response
    if "body" not in response:
        return None
    body = response["body"]
    assert isinstance(body, str) and body
    body.encode("utf-8")  # sendable: no unpaired surrogate reaches a client
    assert "Traceback" not in body and "/classwire/" not in body and 'File "' not in body
    reply = json.loads(body)
    assert reply["type"] in REPLY_TYPES, reply
    if reply["type"] == "error":
        assert reply["code"] in ERROR_CODES and reply["code"] != "internal", reply
        assert isinstance(reply["message"], str) and reply["message"]
    return reply


@FUZZ
@given(bodies)
def test_frames_into_the_message_handler(world, body):
    EXAMPLES["frames into message"] += 1
    before = world.seq(ROOM)
    event = message_event(SENDER, body if body is not None else "", route_key=route_key(body))
    if body is None:
        del event["body"]
    response = message.handler(event, LambdaContext())
    reply = check_reply(response)
    added = world.seq(ROOM) - before
    assert added in (0, 1)
    if added:
        # Only a valid persistent send appends, and the entry is exactly that send.
        frame = json.loads(body)
        entry = world.last_event(ROOM)
        assert reply is None and frame["event"] in PERSISTENT
        assert (entry["id"], entry["from"], entry["event"]) == (frame["id"], SENDER.user_id, frame["event"])
        assert entry["data"] == json.loads(compact_json(frame["data"]))
    elif reply is not None and reply["type"] == "event":
        # An idempotent resend: the sender's own earlier event, nothing new.
        assert reply["from"] == SENDER.user_id and reply["classroom"] == ROOM
    posted = {connection_id for connection_id, _ in world.stub.posts}
    assert posted <= world.members(ROOM), posted
    world.check_unharmed()


# -- (b) whole API Gateway events into every handler ----------------------------------------------------

HANDLERS = {
    "authorizer": authorizer.handler,
    "connect": connect.handler,
    "disconnect": disconnect.handler,
    "message": message.handler,
}
PATHS = (
    ("requestContext",),
    ("requestContext", "connectionId"),
    ("requestContext", "authorizer"),
    ("requestContext", "authorizer", "classroomId"),
    ("requestContext", "authorizer", "userId"),
    ("requestContext", "authorizer", "role"),
    ("requestContext", "authorizer", "name"),
    ("requestContext", "routeKey"),
    ("requestContext", "eventType"),
    ("requestContext", "domainName"),
    ("requestContext", "stage"),
    ("requestContext", "connectedAt"),
    ("body",),
    ("isBase64Encoded",),
    ("queryStringParameters",),
    ("queryStringParameters", "token"),
    ("queryStringParameters", "classroom"),
    ("multiValueQueryStringParameters",),
    ("headers",),
    ("methodArn",),
)
not_bystander = st.text(max_size=300).filter(lambda s: BYSTANDER not in s)
values = (
    json_values.filter(lambda v: BYSTANDER not in json.dumps(v))
    | not_bystander
    | edgy_text
    | st.sampled_from(["", "x" * 70_000, "=" * 129, "../../", "cw:{x}:meta", "}{", "fz-sender="])
    | st.integers(min_value=-(2**70), max_value=2**70)
)
mutations = st.lists(
    st.one_of(
        st.tuples(st.just("drop"), st.sampled_from(PATHS)),
        st.tuples(st.just("set"), st.sampled_from(PATHS), values),
    ),
    min_size=1,
    max_size=4,
)


def base_event(handler: str, n: int) -> dict:
    caller = Caller(f"ev-{n % 7}=", f"user{n % 3}", ("student", "teacher")[n % 2], EVENTS_ROOM, "Fuzz")
    if handler == "authorizer":
        token = jwt.encode(
            {
                "sub": caller.user_id,
                "role": caller.role,
                "classrooms": [EVENTS_ROOM],
                "exp": int(time.time()) + 600,
            },
            SECRET,
            algorithm="HS256",
        )
        return authorizer_event(token, EVENTS_ROOM)
    if handler == "connect":
        return connect_event(caller)
    if handler == "disconnect":
        return disconnect_event(caller)
    return message_event(caller, {"action": "send", "id": f"e{n}", "event": "chat", "data": {"n": n}})


def mutate(event: dict, operations: list[tuple]) -> dict:
    for operation in operations:
        kind, path = operation[0], operation[1]
        parent: object = event
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if kind == "drop":
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = operation[2]
    return event


def check_authorizer(response, raised, event) -> None:
    if raised is not None:
        assert type(raised) is Exception and str(raised) == "Unauthorized", repr(raised)
        return
    assert isinstance(response, dict) and isinstance(response["principalId"], str)
    (statement,) = response["policyDocument"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke" and statement["Effect"] in ("Allow", "Deny")
    if statement["Effect"] == "Allow":
        context = response["context"]
        assert context["classroomId"] == event["queryStringParameters"]["classroom"] == EVENTS_ROOM
        assert all(isinstance(v, (str, int, float, bool)) for v in context.values())


def housekeeping(world: World) -> None:
    """Keeps the fuzzed classroom small, so a fan-out stays cheap however many examples run."""
    if len(world.members(EVENTS_ROOM)) > 20:
        world.redis.delete(*(f"cw:{{{EVENTS_ROOM}}}:{suffix}" for suffix in ("members", "info", "users")))


@FUZZ
@given(st.sampled_from(["connect", "disconnect", "message"]), st.integers(0, 10**6), mutations)
def test_mutated_events_into_the_connection_handlers(world, handler, n, operations):
    EXAMPLES["events into connect/disconnect/message"] += 1
    housekeeping(world)
    event = mutate(base_event(handler, n), operations)
    authorizer_context = (
        (event.get("requestContext") or {}) if isinstance(event.get("requestContext"), dict) else {}
    )
    assume(BYSTANDER not in json.dumps(authorizer_context, default=str))
    response, raised = None, None
    try:
        response = HANDLERS[handler](event, LambdaContext())
    except MalformedEvent as error:
        raised = error
    if raised is not None:
        # Only for an event API Gateway never sends; the message names what is missing, not a value.
        assert str(raised).startswith("event lacks") or "must be" in str(raised), str(raised)
    elif handler == "message":
        check_reply(response)
    elif handler == "connect" and response != {"statusCode": 200}:
        assert response is not None
        # Refused for a stated reason only (the fuzz reconnects one user past their connection limit).
        assert (response["statusCode"], response["body"]) in REFUSALS.values(), response
    else:
        assert response == {"statusCode": 200}
    world.check_unharmed()


@FUZZ
@given(st.integers(0, 10**6), mutations)
def test_mutated_events_into_the_authorizer(world, n, operations):
    EXAMPLES["events into authorizer"] += 1
    event = mutate(base_event("authorizer", n), operations)
    response, raised = None, None
    try:
        response = authorizer.handler(event, LambdaContext())
    except Exception as error:  # noqa: BLE001 - only `Unauthorized` may come out
        raised = error
    check_authorizer(response, raised, event)
    world.check_unharmed()
