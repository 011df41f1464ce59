"""Frame sizes: the protocol's shapes (README, "Protocol"), encoded as the server and clients encode them, and
how API Gateway meters them."""

from __future__ import annotations

import math

from classwire.protocol import DEFAULT_SYNC_LIMIT, compact_json
from cost.profile import Ids

# API Gateway meters WebSocket messages in 32 KB increments: a 33 KB message is two.
METERING_UNIT_BYTES = 32 * 1024
# A representative server timestamp, seq and eid, so sizes match real frames.
SAMPLE_TS_MS = 1_764_000_000_000
SAMPLE_SEQ = 123_456
SAMPLE_EID = "9f2c0a1b3d4e5f60"
SAMPLE_LAG_MS = 120


def metered_units(frame_bytes: float) -> int:
    """API Gateway messages a frame of this many bytes is billed as (32 KB increments, rounded up)."""
    return max(1, math.ceil(frame_bytes / METERING_UNIT_BYTES))


def _with_data(frame: dict, data_bytes: int) -> int:
    """Bytes of `frame` whose `data` is a JSON value of `data_bytes` bytes."""
    return len(compact_json({**frame, "data": None}).encode()) - len("null") + data_bytes


def client_send_bytes(event: str, data_bytes: int, ids: Ids) -> int:
    return _with_data(
        {"action": "send", "id": "m" * ids.client_id_chars, "event": event, "data": None}, data_bytes
    )


def event_frame_bytes(
    event: str, data_bytes: int, persistent: bool, ids: Ids, *, client_id: bool = True
) -> int:
    """An event frame (README, "Server -> client"); persistent ones carry seq, eid and prev."""
    frame: dict[str, object] = {"type": "event", "classroom": "c" * ids.classroom_id_chars}
    if persistent:
        frame.update(seq=SAMPLE_SEQ, eid=SAMPLE_EID, prev=SAMPLE_EID)
    frame.update(
        {
            "id": "m" * ids.client_id_chars if client_id else None,
            "from": "u" * ids.user_id_chars,
            "role": "student",
            "name": "n" * ids.name_chars,
            "event": event,
            "data": None,
            "ts": SAMPLE_TS_MS,
        }
    )
    return _with_data(frame, data_bytes)


def ping_bytes() -> int:
    return len(compact_json({"action": "ping", "seq": SAMPLE_SEQ, "lagMs": SAMPLE_LAG_MS}))


def pong_bytes() -> int:
    return len(compact_json({"type": "pong", "ts": SAMPLE_TS_MS}))


def sync_request_bytes() -> int:
    return len(
        compact_json(
            {"action": "sync", "since": SAMPLE_SEQ, "sinceEid": SAMPLE_EID, "limit": DEFAULT_SYNC_LIMIT}
        )
    )


def who_request_bytes() -> int:
    return len(compact_json({"action": "who", "after": ""}))


def roster_reply_bytes(members: float, ids: Ids) -> float:
    entry = len(
        compact_json(
            {
                "userId": "u" * ids.user_id_chars,
                "role": "student",
                "name": "n" * ids.name_chars,
                "connections": 1,
            }
        )
    )
    return len(compact_json({"type": "roster", "members": [], "more": False})) + members * (entry + 1)


def access_log_line_bytes(log_format: dict[str, str], ids: Ids) -> int:
    """One access log line: the stage's format with representative values for each variable."""
    values = {
        "$context.requestId": "Xa1bCd2eFg3hIjk=",
        "$context.requestTimeEpoch": "1764000000000",
        "$context.apiId": "a1b2c3d4e5",
        "$context.stage": "prod",
        "$context.connectionId": "c" * ids.connection_id_chars,
        "$context.connectedAt": "1764000000000",
        "$context.eventType": "MESSAGE",
        "$context.routeKey": "send",
        "$context.messageId": "Xa1bCd2eFg3hIjk=",
        "$context.status": "200",
        "$context.identity.sourceIp": "203.0.113.10",
        "$context.authorizer.principalId": "u" * ids.user_id_chars,
        "$context.integration.status": "200",
        "$context.integration.latency": "14",
    }
    rendered = {key: values.get(variable, "-") for key, variable in log_format.items()}
    return len(compact_json(rendered))
