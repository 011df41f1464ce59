"""Calling the handlers as Lambda does, for tests: API Gateway events in, what @connections got out."""

from __future__ import annotations

import json

from bench.connections_stub import ManagementStub
from bench.events import Caller, LambdaContext, connect_event, message_event
from classwire.handlers import connect, message


def frames_to(stub: ManagementStub, caller: Caller) -> list[dict]:
    return [json.loads(body) for connection_id, body in stub.posts if connection_id == caller.connection_id]


def connect_as(caller: Caller) -> dict:
    return connect.handler(connect_event(caller), LambdaContext())


def join(*callers: Caller) -> None:
    for caller in callers:
        assert connect_as(caller) == {"statusCode": 200}


def send(caller: Caller, frame: dict | str) -> dict:
    return message.handler(message_event(caller, frame), LambdaContext())
