"""Reading the parts of API Gateway WebSocket events the handlers need.

API Gateway always sends these fields with these types; an event without them comes from a misconfigured
integration or authorizer (or a test), and is refused with `MalformedEvent` naming the field, never a value.
"""

from __future__ import annotations

from classwire.classroom_store import Member
from classwire.routes import BATCH_QUERY_PARAMETER, REOPEN_QUERY_PARAMETER


class MalformedEvent(ValueError):
    """The event lacks what API Gateway always sends (misconfigured integration or authorizer)."""


def member_of(event: dict) -> Member:
    """The connection and the identity the authorizer bound to it at $connect."""
    context = _object(event, "requestContext")
    authorizer = _object(context, "authorizer", "requestContext.")
    return Member(
        connection_id=_text(context, "connectionId", "requestContext."),
        classroom_id=_text(authorizer, "classroomId", "requestContext.authorizer."),
        user_id=_text(authorizer, "userId", "requestContext.authorizer."),
        role=_text(authorizer, "role", "requestContext.authorizer."),
        name=_text(authorizer, "name", "requestContext.authorizer.", required=False),
    )


def connected_at_of(event: dict) -> int:
    """`requestContext.connectedAt` (epoch ms); 0 when absent."""
    value = _object(event, "requestContext").get("connectedAt")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedEvent("event field requestContext.connectedAt must be a non-negative integer")
    return value


def reopens(event: dict) -> bool:
    """Whether the $connect asks to reopen an ended class (`reopen=1`; only a teacher's counts)."""
    return _query_flag(event, REOPEN_QUERY_PARAMETER)


def batches(event: dict) -> bool:
    """Whether the $connect asks for `events` frames (`batch=1`)."""
    return _query_flag(event, BATCH_QUERY_PARAMETER)


def _query_flag(event: dict, name: str) -> bool:
    params = event.get("queryStringParameters")
    return isinstance(params, dict) and params.get(name) == "1"


def endpoint_parts(event: dict) -> tuple[str, str]:
    context = _object(event, "requestContext")
    return (
        _text(context, "domainName", "requestContext.", required=False),
        _text(context, "stage", "requestContext.", required=False),
    )


def log_keys(member: Member) -> dict[str, str]:
    return {
        "connectionId": member.connection_id,
        "classroomId": member.classroom_id,
        "userId": member.user_id,
    }


def _object(parent: dict, key: str, path: str = "") -> dict:
    value = parent.get(key)
    if value is None:
        raise MalformedEvent(f"event lacks {path}{key}")
    if not isinstance(value, dict):
        raise MalformedEvent(f"event field {path}{key} must be an object")
    return value


def _text(parent: dict, key: str, path: str, *, required: bool = True) -> str:
    value = parent.get(key)
    if value is None or value == "":
        if required:
            raise MalformedEvent(f"event lacks {path}{key}")
        return ""
    if not isinstance(value, str):
        raise MalformedEvent(f"event field {path}{key} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedEvent(f"event field {path}{key} must be UTF-8 text") from None
    return value
