"""API Gateway WebSocket events and a Lambda context, to call a handler directly as Lambda would (the
handler tests and the handler benchmark), built from the real AWS event shapes in bench/aws_events/."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

EVENTS = Path(__file__).resolve().parent / "aws_events"


@cache
def _fixture(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text())


@dataclass(frozen=True)
class Caller:
    """Who a test connection is: what the authorizer put in its context."""

    connection_id: str
    user_id: str
    role: str = "student"
    classroom_id: str = "room-1"
    name: str = ""


def _bind(event: dict, caller: Caller, domain: str | None, stage: str | None) -> dict:
    context = event["requestContext"]
    context["connectionId"] = caller.connection_id
    if "authorizer" in context:
        context["authorizer"].update(
            userId=caller.user_id,
            role=caller.role,
            classroomId=caller.classroom_id,
            name=caller.name,
            principalId=caller.user_id,
        )
    if domain is not None:
        context["domainName"] = domain
    if stage is not None:
        context["stage"] = stage
    return event


def authorizer_event(token: str | None, classroom: str | None) -> dict:
    event = copy.deepcopy(_fixture("authorizer_request"))
    params = {k: v for k, v in (("token", token), ("classroom", classroom)) if v is not None}
    event["queryStringParameters"] = params
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in params.items()}
    return event


def connect_event(caller: Caller, domain: str | None = None, stage: str | None = None) -> dict:
    return _bind(copy.deepcopy(_fixture("connect")), caller, domain, stage)


def disconnect_event(caller: Caller, domain: str | None = None, stage: str | None = None) -> dict:
    return _bind(copy.deepcopy(_fixture("disconnect")), caller, domain, stage)


def message_event(caller: Caller, body: str | dict, route_key: str | None = None, **where) -> dict:
    event = _bind(copy.deepcopy(_fixture("message")), caller, where.get("domain"), where.get("stage"))
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    if route_key is None:
        try:
            route_key = json.loads(event["body"]).get("action", "$default")
        except (ValueError, AttributeError):
            route_key = "$default"
    event["requestContext"]["routeKey"] = route_key
    return event


class LambdaContext:
    """The few attributes of the Lambda context object that handlers and Powertools read."""

    function_name = "classwire-test"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:classwire-test"
    memory_limit_in_mb = 256
    aws_request_id = "5b5a1b5e-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/classwire-test"
    log_stream_name = "2026/11/25/[$LATEST]0000"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000
