"""Reading the parts of API Gateway WebSocket events the handlers need."""

from __future__ import annotations

from classwire.classroom_store import Member


class MalformedEvent(ValueError):
    """The event lacks what API Gateway always sends (misconfigured integration or authorizer)."""


def member_of(event: dict) -> Member:
    """The connection and the identity the authorizer bound to it at $connect."""
    context = event.get("requestContext") or {}
    authorizer = context.get("authorizer") or {}
    try:
        return Member(
            connection_id=str(context["connectionId"]),
            classroom_id=str(authorizer["classroomId"]),
            user_id=str(authorizer["userId"]),
            role=str(authorizer["role"]),
            name=str(authorizer.get("name") or ""),
        )
    except KeyError as missing:
        raise MalformedEvent(f"event lacks {missing}") from None


def endpoint_parts(event: dict) -> tuple[str, str]:
    context = event.get("requestContext") or {}
    return str(context.get("domainName", "")), str(context.get("stage", ""))


def log_keys(member: Member) -> dict[str, str]:
    return {"connectionId": member.connection_id, "classroomId": member.classroom_id, "userId": member.user_id}
