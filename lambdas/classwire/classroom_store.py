"""The classroom registry and log in Redis: every operation is one round trip (one Lua script).

The data model and its invariants are described at the top of classroom_log.lua.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import redis
import redis.cluster

from classwire.settings import (
    CONNECTING_GRACE_SECONDS,
    CONNECTION_TTL_SECONDS,
    ENDED_TTL_SECONDS,
    FRAME_LIMIT_BYTES,
    IDEMPOTENCY_WINDOW_SECONDS,
    TELEMETRY_FRESH_SECONDS,
    FanoutSettings,
    Limits,
)

# A round posts at most this many persistent events and frame bytes (the first event always): a few
# `events` frames per connection, so one round of a flusher that fell behind stays short.
ROUND_MAX_EVENTS = 200
ROUND_MAX_BYTES = 4 * FRAME_LIMIT_BYTES


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
class Round:
    """One round of a classroom's fan-out, for the invocation holding its lease (`lease`) to post: the
    persistent events after the last round (up to seq `upto` of `epoch`), then the volatile ones waiting."""

    lease: str
    epoch: str
    upto: int
    frames: list[str]
    relayed: list[tuple[str, str]]  # (sender's connection id, frame): every connection but the sender's
    closes: bool  # it posts the `end` in force: the class's connections are closed after it
    connection_ids: list[str]
    batched: frozenset[str]  # the connections that take `events` frames
    # Students' joins and leaves of a crowded classroom, for the teachers' connections only (best effort).
    presence: list[str] = field(default_factory=list)
    teachers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Published:
    """What a call appended, the classroom's connections then, and the round it took, if any (None: another
    invocation is posting the classroom's events, and these go out in its next round)."""

    frames: list[str]
    connection_ids: list[str]
    round: Round | None = None


class JoinRefused(Exception):
    """$connect refused: `ended` (a student, after `end`, until a teacher reopens the class), `user_limit`
    (the user's connections to the classroom), `classroom_full` or `too_fast` (the user's connect rate)."""

    def __init__(self, reason: str, pruned: Published):
        super().__init__(reason)
        self.reason = reason
        self.pruned = pruned  # leaves of expired connections the join pruned first, still to fan out


class NotMember(Exception):
    """The connection is not (any longer) in the classroom's registry: pruned, or its entry evicted."""


class RateLimited(Exception):
    """Over the user's rate: retry after `retry_after_ms`; `flooding` when it kept sending far past the
    limit (the connection is to be closed)."""

    def __init__(self, retry_after_ms: int):
        self.flooding = retry_after_ms < 0
        self.retry_after_ms = max(retry_after_ms, 0)
        super().__init__("flooding" if self.flooding else f"retry after {self.retry_after_ms} ms")


@dataclass(frozen=True)
class PublishResult:
    # "ok", "duplicate" (an idempotent resend), "not_member" or "ended"
    status: str
    seq: int = 0
    published: Published | None = None
    # For a duplicate: the epoch it was appended in; `published.frames` is empty when it is no longer logged;
    # `still_ended` when it is the `end` that keeps the class ended (its closing may be redone).
    epoch: str = ""
    still_ended: bool = False
    # For a duplicate: a round has posted it (its own invocation's, or another flusher's).
    posted: bool = False
    server_ms: int = 0


@dataclass(frozen=True)
class SyncPage:
    frames: list[str]
    last: int
    more: bool
    reset: bool
    epoch: str


@dataclass(frozen=True)
class Roster:
    """The live connections (one entry each), whether the classroom is crowded, and its occupancy."""

    connections: list[dict]
    crowded: bool
    users: int


@dataclass(frozen=True)
class Report:
    """A recorded telemetry report: the classroom's last seq and epoch, and how far behind that the member
    was; `round` when events waited with nobody posting them (this call took the lease)."""

    last: int
    behind: int
    epoch: str
    round: Round | None = None
    users: int = 0  # the classroom's occupancy
    crowded: bool = False


class ClassroomStore:
    def __init__(
        self,
        client: redis.Redis | redis.cluster.RedisCluster,
        limits: Limits,
        fanout: FanoutSettings | None = None,
    ):
        self._redis = client
        self._limits = limits
        self._fanout = fanout or FanoutSettings()
        # A cluster client runs a script on the shard of the key it declares (redis-py types the method for the
        # single-node client only; tests/core/test_cluster.py runs every script on a real cluster).
        self._scripts = {
            name: client.register_script(source)  # type: ignore[misc]
            for name, source in _SCRIPTS.items()
        }

    def join(
        self, member: Member, connected_at_ms: int, reopen: bool = False, batch: bool = False
    ) -> Published:
        """Registers the connection and appends its join (`reopen`: a teacher reopening an ended class;
        `batch`: it takes `events` frames); raises JoinRefused."""
        reply = self._run(
            "join",
            member.classroom_id,
            member.connection_id,
            member.info_json(connected_at_ms),
            member.user_id,
            member.role,
            1 if reopen else 0,
            CONNECTION_TTL_SECONDS * 1000,
            _nonce(),
            self._limits.max_connections_per_user,
            self._limits.max_connections_per_classroom,
            self._limits.connect_rate_per_second,
            self._limits.connect_burst,
            *self._retention(),
            1 if batch else 0,
            *self._lease(),
        )
        if _text(reply[0]) == "refused":
            raise JoinRefused(_text(reply[1]), _published(reply[2], reply[3], reply[4]))
        return _published(reply[1], reply[2], reply[3])

    def leave(self, classroom_id: str, connection_ids: list[str]) -> Published:
        """Removes connections (closed or gone); each one still present yields a leave event."""
        return self._leave(classroom_id, connection_ids, 0, self._lease())

    def prune_gone(self, classroom_id: str, connection_ids: list[str], claim: bool = False) -> Published:
        """`leave` for connections a post found gone (410), except those that joined within the grace:
        their $connect may still be running, and until it returns API Gateway answers 410 for them too.
        Takes a round only with `claim`: a flusher that found them posts the leaves in its next one."""
        lease = self._lease()
        return self._leave(
            classroom_id,
            connection_ids,
            CONNECTING_GRACE_SECONDS * 1000,
            lease if claim else ("", *lease[1:]),
        )

    def _leave(self, classroom_id: str, connection_ids: list[str], grace_ms: int, lease: tuple) -> Published:
        frames, conns, round_ = self._run(
            "leave",
            classroom_id,
            _nonce(),
            *self._retention(),
            CONNECTION_TTL_SECONDS * 1000,
            grace_ms,
            *lease,
            *connection_ids,
        )
        return _published(frames, conns, round_)

    def settle(self, classroom_id: str, posted: Round, stop: bool = False) -> Round | None:
        """`posted` went out: records it and returns the next round of events appended meanwhile, holding
        on to the lease; None once nothing is left (the lease is handed back) or the lease was lost. `stop`
        hands the lease back whatever is left (the next invocation that finds it free posts that)."""
        conns, round_ = self._run(
            "settle",
            classroom_id,
            posted.epoch,
            posted.upto,
            1 if stop else 0,
            posted.lease,
            *self._lease()[1:],
        )
        return _round(round_, conns)

    def publish(
        self,
        sender: Member,
        client_id: str,
        event: str,
        data_json: str,
        persistent: bool,
        closes_class: bool = False,
        starts_board: bool = False,
    ) -> PublishResult:
        """Appends (persistent) or relays one event; raises RateLimited. A resend of an (user, id) already
        appended is a `duplicate`: its original frame, if still logged, and the members to send it to."""
        reply = self._run(
            "publish",
            sender.classroom_id,
            sender.connection_id,
            sender.user_id,
            sender.role,
            client_id,
            _compact(client_id),
            event,
            data_json,
            1 if persistent else 0,
            1 if closes_class else 0,
            self._limits.rate_per_second,
            self._limits.rate_burst,
            sender.head_json(),
            _nonce(),
            ENDED_TTL_SECONDS * 1000,
            *self._retention(),
            *self._lease(),
            1 if starts_board else 0,
        )
        status = _text(reply[0])
        if status == "ok":
            _, seq, frames, conns, server_ms, round_ = reply
            return PublishResult("ok", int(seq), _published(frames, conns, round_), server_ms=int(server_ms))
        if status == "duplicate":
            _, seq, epoch, frame, conns, still_ended, posted, round_ = reply
            return PublishResult(
                "duplicate",
                int(seq),
                _published([frame] if frame else [], conns, round_),
                epoch=_text(epoch),
                still_ended=bool(still_ended),
                posted=bool(posted),
            )
        if status == "rate_limited":
            raise RateLimited(int(reply[1]))
        return PublishResult(status)

    def sync(
        self, member: Member, since: int, since_eid: str, epoch: str, limit: int, budget_bytes: int
    ) -> SyncPage:
        """The events after `since` (or from the oldest retained one, on reset); raises RateLimited."""
        reply = self._run(
            "sync",
            member.classroom_id,
            member.connection_id,
            member.user_id,
            since,
            since_eid,
            epoch,
            limit,
            budget_bytes,
            *self._read_rate(),
        )
        _raise_if_refused(reply)
        reset, last, more, frames, log_epoch = reply
        return SyncPage(_texts(frames), int(last), bool(more), bool(reset), _text(log_epoch))

    def report(self, member: Member, seq: int, lag_ms: int | None) -> Report:
        """Records a member's telemetry (last applied seq, measured lag); raises RateLimited and NotMember."""
        reply = self._run(
            "report",
            member.classroom_id,
            member.connection_id,
            member.user_id,
            seq,
            "" if lag_ms is None else lag_ms,
            CONNECTION_TTL_SECONDS * 1000,
            *self._read_rate(),
            *self._lease(),
            _nonce(),
            *self._retention(),
        )
        _raise_if_refused(reply)
        last, epoch, conns, round_, users, crowded = reply
        return Report(
            int(last), max(0, int(last) - seq), _text(epoch), _round(round_, conns), int(users), bool(crowded)
        )

    def admit(self, member: Member) -> tuple[bool, Round | None]:
        """The rate check of a frame that needs nothing else from Redis (a bare ping, a refused frame);
        raises RateLimited. Returns whether the connection is a member, and a round when events waited with
        nobody posting them (this call took the lease)."""
        reply = self._run(
            "admit",
            member.classroom_id,
            member.connection_id,
            member.user_id,
            *self._read_rate(),
            *self._lease(),
            _nonce(),
            *self._retention(),
        )
        _raise_if_refused(reply)
        is_member, conns, round_ = reply
        return bool(is_member), _round(round_, conns)

    def roster(self, member: Member) -> Roster:
        """Live connections' {userId, role, name, connectedAt, lagMs, behind}, one entry per connection;
        lagMs and behind are None unless the connection reported telemetry recently. Raises RateLimited."""
        reply = self._run(
            "roster", member.classroom_id, member.connection_id, member.user_id, *self._read_rate()
        )
        _raise_if_refused(reply)
        now_ms, infos, reports, crowded, users = reply
        fresh_after = int(now_ms) - TELEMETRY_FRESH_SECONDS * 1000
        connections = []
        for info, report in zip(infos, reports, strict=False):
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
        return Roster(connections, bool(crowded), int(users))

    def _retention(self) -> tuple[int, int, int, int]:
        """What every appending script gets: the log's bounds and the idempotency window (ms)."""
        limits = self._limits
        return (
            limits.log_max_events,
            limits.log_max_age_seconds * 1000,
            limits.log_max_bytes,
            IDEMPOTENCY_WINDOW_SECONDS * 1000,
        )

    def _lease(self) -> tuple[str, int, int, int, int, int]:
        """What every script that may take a round gets (its fan-out arguments): a new lease token, the
        lease's life, a round's bounds, and presence's (the grace before a user's leave is announced, the
        most users of a classroom not crowded)."""
        return (
            _nonce(),
            self._fanout.lease_ms,
            ROUND_MAX_EVENTS,
            ROUND_MAX_BYTES,
            self._limits.presence_grace_seconds * 1000,
            self._limits.presence_live_max_users,
        )

    def _read_rate(self) -> tuple[float, int]:
        return self._limits.read_rate_per_second, self._limits.read_rate_burst

    def _run(self, script: str, classroom_id: str, *args: str | int | float):
        # The one declared key routes the call to the classroom's slot; the script derives the rest.
        return self._scripts[script](keys=[f"cw:{{{classroom_id}}}:meta"], args=[classroom_id, *args])


def _raise_if_refused(reply: list) -> None:
    status = _text(reply[0]) if reply and isinstance(reply[0], bytes | str) else ""
    if status == "rate_limited":
        raise RateLimited(int(reply[1]))
    if status == "not_member":
        raise NotMember()


def _published(frames: list, conns: list, round_: list) -> Published:
    connection_ids = _texts(conns)
    return Published(_texts(frames), connection_ids, _round(round_, connection_ids))


def _round(reply: list, conns: list) -> Round | None:
    """A script's round (`{''}` when it took none) going to `conns`."""
    if _text(reply[0]) == "":
        return None
    lease, epoch, upto, frames, relayed, closes, presence, flags, teachers = reply
    connection_ids = _texts(conns)
    return Round(
        lease=_text(lease),
        epoch=_text(epoch),
        upto=int(upto),
        frames=_texts(frames),
        relayed=[tuple(_text(entry).split(" ", 1)) for entry in relayed],  # type: ignore[misc]
        closes=bool(closes),
        connection_ids=connection_ids,
        batched=frozenset(c for c, flag in zip(connection_ids, flags, strict=True) if flag),
        presence=[_text(presence)] if presence else [],
        teachers=frozenset(_texts(teachers)),
    )


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
