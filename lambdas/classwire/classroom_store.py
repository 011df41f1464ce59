"""The classroom registry and log in Redis: every operation is one round trip (one Lua script).

The data model and its invariants are described at the top of classroom_log.lua.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import redis

from classwire.settings import (
    CONNECTING_GRACE_SECONDS,
    CONNECTION_TTL_SECONDS,
    IDEMPOTENCY_WINDOW_SECONDS,
    TELEMETRY_FRESH_SECONDS,
    Limits,
)


@dataclass(frozen=True)
class Member:
    """A connection of a classroom as bound at $connect (from the authorizer's context)."""

    connection_id: str
    classroom_id: str
    user_id: str
    role: str
    name: str = ""

    def info_json(self, connected_at_ms: int) -> str:
        return _compact(
            {"userId": self.user_id, "role": self.role, "name": self.name, "connectedAt": connected_at_ms}
        )

    def head_json(self) -> str:
        """The `from`, `role`, `name` members of this member's event frames."""
        return f'"from":{_compact(self.user_id)},"role":{_compact(self.role)},"name":{_compact(self.name)}'


@dataclass(frozen=True)
class Published:
    """Frames appended (or to relay) and the connections they go to."""

    frames: list[str]
    connection_ids: list[str]


@dataclass(frozen=True)
class PublishResult:
    # "ok", "duplicate", "rate_limited" or "not_member"
    status: str
    seq: int = 0
    published: Published | None = None
    original_frame: str = ""
    retry_after_ms: int = 0
    server_ms: int = 0


@dataclass(frozen=True)
class SyncPage:
    frames: list[str]
    last: int
    more: bool
    reset: bool


@dataclass(frozen=True)
class Report:
    """A recorded telemetry report: the classroom's last seq then, and how far behind it the member was."""

    last: int
    behind: int


class ClassroomStore:
    def __init__(self, client: redis.Redis, limits: Limits):
        self._redis = client
        self._limits = limits
        self._scripts = {name: client.register_script(source) for name, source in _SCRIPTS.items()}

    def join(self, member: Member, connected_at_ms: int) -> Published:
        frames, conns = self._run(
            "join",
            member.classroom_id,
            member.connection_id,
            member.info_json(connected_at_ms),
            member.user_id,
            CONNECTION_TTL_SECONDS * 1000,
            _nonce(),
            *self._retention(),
        )
        return Published(_texts(frames), _texts(conns))

    def leave(self, classroom_id: str, connection_ids: list[str]) -> Published:
        """Removes connections (closed or gone); each one still present yields a leave event."""
        return self._leave(classroom_id, connection_ids, grace_ms=0)

    def prune_gone(self, classroom_id: str, connection_ids: list[str]) -> Published:
        """`leave` for connections a fan-out found gone (410), except those that joined within the grace:
        their $connect may still be running, and until it returns API Gateway answers 410 for them too."""
        return self._leave(classroom_id, connection_ids, grace_ms=CONNECTING_GRACE_SECONDS * 1000)

    def _leave(self, classroom_id: str, connection_ids: list[str], grace_ms: int) -> Published:
        frames, conns = self._run(
            "leave",
            classroom_id,
            _nonce(),
            *self._retention(),
            CONNECTION_TTL_SECONDS * 1000,
            grace_ms,
            *connection_ids,
        )
        return Published(_texts(frames), _texts(conns))

    def publish(
        self, sender: Member, client_id: str, event: str, data_json: str, persistent: bool
    ) -> PublishResult:
        reply = self._run(
            "publish",
            sender.classroom_id,
            sender.connection_id,
            sender.user_id,
            client_id,
            _compact(client_id),
            event,
            data_json,
            1 if persistent else 0,
            self._limits.rate_per_second,
            self._limits.rate_burst,
            IDEMPOTENCY_WINDOW_SECONDS,
            sender.head_json(),
            _nonce(),
            *self._retention(),
        )
        status = _text(reply[0])
        if status == "ok":
            _, seq, frames, conns, server_ms = reply
            return PublishResult(
                "ok", int(seq), Published(_texts(frames), _texts(conns)), server_ms=int(server_ms)
            )
        if status == "duplicate":
            return PublishResult("duplicate", int(reply[1]), original_frame=_text(reply[2]))
        if status == "rate_limited":
            return PublishResult("rate_limited", retry_after_ms=int(reply[1]))
        return PublishResult(status)

    def sync(self, classroom_id: str, since: int, since_eid: str, limit: int, budget_bytes: int) -> SyncPage:
        reset, last, more, frames = self._run("sync", classroom_id, since, since_eid, limit, budget_bytes)
        return SyncPage(_texts(frames), int(last), bool(more), bool(reset))

    def report(self, member: Member, seq: int, lag_ms: int | None) -> Report | None:
        """Records a member's telemetry (last applied seq, measured lag); None if no longer a member."""
        recorded, last = self._run(
            "report",
            member.classroom_id,
            member.connection_id,
            seq,
            "" if lag_ms is None else lag_ms,
            CONNECTION_TTL_SECONDS * 1000,
        )
        if not recorded:
            return None
        return Report(int(last), max(0, int(last) - seq))

    def roster(self, classroom_id: str) -> list[dict]:
        """Live connections' {userId, role, name, connectedAt, lagMs, behind}, one entry per connection;
        lagMs and behind are None unless the connection reported telemetry recently."""
        now_ms, infos, reports = self._run("roster", classroom_id)
        fresh_after = int(now_ms) - TELEMETRY_FRESH_SECONDS * 1000
        connections = []
        for info, report in zip(infos, reports):
            if not info:
                continue
            entry = json.loads(info)
            entry["lagMs"] = entry["behind"] = None
            if report:
                _, lag, at, behind = _text(report).split(":")
                if int(at) >= fresh_after:
                    entry["lagMs"] = int(lag) if lag else None
                    entry["behind"] = int(behind)
            connections.append(entry)
        return connections

    def _retention(self) -> tuple[int, int]:
        return self._limits.log_max_events, self._limits.log_max_age_seconds * 1000

    def _run(self, script: str, classroom_id: str, *args: object):
        # The one declared key routes the call to the classroom's slot; the script derives the rest.
        return self._scripts[script](keys=[f"cw:{{{classroom_id}}}:meta"], args=[classroom_id, *args])


def _load_scripts() -> dict[str, str]:
    source = (Path(__file__).parent / "classroom_log.lua").read_text(encoding="utf-8")
    common, *entries = source.split("\n--@script ")
    scripts = {}
    for entry in entries:
        name, _, body = entry.partition("\n")
        scripts[name.strip()] = f"{common}\n{body}"
    return scripts


_SCRIPTS = _load_scripts()


def _nonce() -> str:
    return os.urandom(8).hex()


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _texts(values: list) -> list[str]:
    return [_text(v) for v in values]
