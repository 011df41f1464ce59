"""The classroom protocol's client frames and error frames (documented in README.md, "Protocol").

Parsing is strict and explains itself: every rejected frame gets an error whose message says exactly
which field is wrong. Nothing here knows about AWS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

from classwire.routes import MESSAGE_ACTIONS
from classwire.settings import FRAME_LIMIT_BYTES

ERROR_CODES = ("bad_request", "unknown_action", "forbidden", "too_large", "rate_limited", "ended", "internal")
MAX_CLIENT_ID_CHARS = 64
MAX_SYNC_LIMIT = 1000
DEFAULT_SYNC_LIMIT = 200
# Client JSON may not nest deeper than this (Python's json would otherwise recurse ~1000 levels).
MAX_NESTING = 64
# Telemetry bounds: seq stays a safe JSON integer; a lag over a day is a broken client clock, not a lag.
MAX_SEQ = 2**53 - 1
MAX_LAG_MS = 24 * 3600 * 1000


class ProtocolError(Exception):
    """A request the server refuses; becomes one error frame to the sender."""

    def __init__(
        self,
        code: str,
        message: str,
        client_id: str | None = None,
        retry_after_ms: int | None = None,
        action: str | None = None,
    ):
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.client_id = client_id
        self.retry_after_ms = retry_after_ms
        self.action = action

    def frame(self) -> str:
        return error_frame(self.code, self.message, self.client_id, self.retry_after_ms, self.action)


def error_frame(
    code: str,
    message: str,
    client_id: str | None = None,
    retry_after_ms: int | None = None,
    action: str | None = None,
) -> str:
    """An error frame; `action` names the refused frame's action when it is known (a client retries a
    refused sync or who by it)."""
    if client_id is not None and not _encodable(client_id):
        client_id = None  # an id with an unpaired surrogate cannot be sent back; the message says why
    frame: dict[str, object] = {"type": "error", "code": code, "message": message, "id": client_id}
    if retry_after_ms is not None:
        frame["retryAfterMs"] = retry_after_ms
    if action is not None:
        frame["action"] = action
    return compact_json(frame)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class Send:
    action: ClassVar[str] = "send"
    id: str
    event: str
    data_json: str


@dataclass(frozen=True)
class Sync:
    action: ClassVar[str] = "sync"
    since: int
    since_eid: str
    limit: int
    epoch: str = ""


@dataclass(frozen=True)
class Who:
    action: ClassVar[str] = "who"
    after: str


@dataclass(frozen=True)
class Ping:
    action: ClassVar[str] = "ping"
    # Delivery telemetry a client piggybacks on pings: its last in-order seq and measured lag.
    seq: int | None
    lag_ms: int | None


Request = Send | Sync | Who | Ping


def parse_request(body: str | None, bound_classroom: str, max_data_bytes: int) -> Request:
    """Parses one client frame; raises ProtocolError with the precise reason."""
    frame = _parse_object(body)
    client_id = (
        frame.get("id")
        if isinstance(frame.get("id"), str) and len(frame["id"]) <= MAX_CLIENT_ID_CHARS
        else None
    )
    if "action" not in frame:
        raise ProtocolError("bad_request", "missing field 'action'", client_id)
    action = frame["action"]
    if not isinstance(action, str):
        raise ProtocolError("bad_request", f"field 'action' must be a string, got {_type(action)}", client_id)
    if action not in MESSAGE_ACTIONS:
        raise ProtocolError(
            "unknown_action",
            f"unknown action {action[:64]!r}; expected one of {', '.join(MESSAGE_ACTIONS)}",
            client_id,
        )
    # The classroom is the one bound at $connect; a payload may repeat it but never name another.
    if "classroom" in frame and frame["classroom"] != bound_classroom:
        raise ProtocolError(
            "forbidden",
            "field 'classroom' must be omitted or equal the classroom of this connection",
            client_id,
        )
    try:
        return _parse_action(action, frame, max_data_bytes)
    except ProtocolError as error:
        error.action = action
        raise


def _parse_action(action: str, frame: dict, max_data_bytes: int) -> Request:
    if action == "send":
        return _parse_send(frame, max_data_bytes)
    if action == "sync":
        return Sync(
            since=_int_field(frame, "since", default=0, minimum=0),
            since_eid=_str_field(frame, "sinceEid", default="", max_chars=64),
            limit=_int_field(frame, "limit", default=DEFAULT_SYNC_LIMIT, minimum=1, maximum=MAX_SYNC_LIMIT),
            epoch=_str_field(frame, "epoch", default="", max_chars=64),
        )
    if action == "who":
        return Who(after=_str_field(frame, "after", default="", max_chars=256))
    return Ping(
        seq=_int_field(frame, "seq", default=None, minimum=0, maximum=MAX_SEQ),
        lag_ms=_int_field(frame, "lagMs", default=None, minimum=0, maximum=MAX_LAG_MS),
    )


def _parse_object(body: str | None) -> dict:
    if body is None or body == "":
        raise ProtocolError("bad_request", "empty frame; expected a JSON object")
    if not isinstance(body, str):  # API Gateway passes text; anything else is a malformed event
        raise ProtocolError("bad_request", f"frame must be text, got {_type(body)}")
    if (
        len(body) > FRAME_LIMIT_BYTES * 4
        or len(body.encode("utf-8", "surrogatepass")) > FRAME_LIMIT_BYTES * 4
    ):
        raise ProtocolError("too_large", f"frame exceeds {FRAME_LIMIT_BYTES * 4} bytes")
    try:
        frame = json.loads(body)
    except RecursionError:
        raise ProtocolError("bad_request", f"frame nests deeper than {MAX_NESTING} levels") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            "bad_request", f"frame is not valid JSON: {exc.msg} at position {exc.pos}"
        ) from None
    except ValueError:  # Python refuses integers of more than 4,300 digits (CVE-2020-10735)
        raise ProtocolError("bad_request", "frame holds a number with too many digits") from None
    if not isinstance(frame, dict):
        raise ProtocolError("bad_request", f"frame must be a JSON object, got {_type(frame)}")
    return frame


def _parse_send(frame: dict, max_data_bytes: int) -> Send:
    raw_id = frame.get("id")
    if raw_id is None:
        raise ProtocolError("bad_request", "missing field 'id' (a client id of 1..64 characters)")
    if not isinstance(raw_id, str) or not 1 <= len(raw_id) <= MAX_CLIENT_ID_CHARS:
        raise ProtocolError("bad_request", "field 'id' must be a string of 1..64 characters")
    event = frame.get("event")
    if not isinstance(event, str) or not event:
        raise ProtocolError("bad_request", "field 'event' must be a non-empty string", raw_id)
    if "data" not in frame:
        raise ProtocolError("bad_request", "missing field 'data' (any JSON value)", raw_id)
    if _depth(frame["data"]) > MAX_NESTING:
        raise ProtocolError("bad_request", f"field 'data' nests deeper than {MAX_NESTING} levels", raw_id)
    try:
        data_json = compact_json(frame["data"])
    except ValueError:  # e.g. NaN/Infinity, which json.loads accepts but JSON forbids
        raise ProtocolError(
            "bad_request", "field 'data' holds a value JSON cannot represent", raw_id
        ) from None
    _require_utf8(raw_id, "id", raw_id)
    _require_utf8(event, "event", raw_id)
    size = len(_require_utf8(data_json, "data", raw_id))
    if size > max_data_bytes:
        raise ProtocolError(
            "too_large", f"field 'data' is {size} bytes serialized; the limit is {max_data_bytes}", raw_id
        )
    return Send(id=raw_id, event=event, data_json=data_json)


def _require_utf8(text: str, field: str, client_id: str | None) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(
            "bad_request", f"field {field!r} contains an unpaired UTF-16 surrogate", client_id
        ) from None


def _int_field(frame: dict, name: str, default, minimum: int, maximum: int | None = None):
    if name not in frame or frame[name] is None:
        return default
    value = frame[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError("bad_request", f"field {name!r} must be an integer, got {_type(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise ProtocolError("bad_request", f"field {name!r} must be {bound}, got {value}")
    return value


def _str_field(frame: dict, name: str, default: str, max_chars: int) -> str:
    if name not in frame or frame[name] is None:
        return default
    value = frame[name]
    if not isinstance(value, str) or len(value) > max_chars:
        raise ProtocolError(
            "bad_request", f"field {name!r} must be a string of at most {max_chars} characters"
        )
    _require_utf8(value, name, None)
    return value


def _depth(value: object) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        if depth > MAX_NESTING:
            return depth
        level = [
            child
            for item in level
            if isinstance(item, (dict, list))
            for child in (item.values() if isinstance(item, dict) else item)
        ]
    return depth


def _type(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )
