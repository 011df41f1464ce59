"""The classroom protocol's core: joins, leaves, publishes, syncs and fans events out.

It speaks in members and frames; the handlers translate API Gateway events into calls here, and the
@connections client and the metrics sink are injected, so nothing here knows an AWS event shape.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from classwire.classroom_store import (
    ClassroomStore,
    JoinRefused,
    Member,
    NotMember,
    Published,
    PublishResult,
    RateLimited,
)
from classwire.event_types import EventRegistry
from classwire.metrics import (
    CONNECTIONS_CLOSED,
    CONNECTIONS_CLOSED_FOR_FLOODING,
    DELIVERIES,
    DELIVERY_FAILURES,
    EVENTS_PUBLISHED,
    FANOUT_MS,
    GONE_PRUNED,
    MEMBER_LAG_MS,
    MEMBERS_BEHIND,
    REPLAYS,
    RESENDS,
    STRANGERS_CLOSED,
    SYNC_EVENTS,
    SYNC_RESETS,
    error_metric,
    refusal_metric,
)
from classwire.protocol import (
    FRAME_LIMIT_BYTES,
    Ping,
    ProtocolError,
    Send,
    Sync,
    Who,
    compact_json,
    error_frame,
    parse_request,
)
from classwire.settings import Limits

log = logging.getLogger("classwire.classroom")

# Room left in a reply frame for its envelope (`{"type":"sync","events":[...],...}`).
REPLY_ENVELOPE_BYTES = 256
# Gone connections are pruned, which appends leave events that are fanned out in turn; a bound keeps
# a burst of stale connections from cascading through one invocation.
MAX_PRUNE_ROUNDS = 3
# $connect refusals (JoinRefused reasons): the HTTP status API Gateway answers the upgrade with.
REFUSALS = {
    "ended": (403, "the class has ended; a teacher may reopen it"),
    "user_limit": (429, "this user has too many connections to the classroom"),
    "classroom_full": (429, "the classroom is full"),
    "too_fast": (429, "this user connects to the classroom too often; retry later"),
}


class FanoutReport(Protocol):
    @property
    def delivered(self) -> Sequence[str]: ...
    @property
    def gone(self) -> Sequence[str]: ...
    @property
    def failed(self) -> Sequence[object]: ...


class ConnectionsApi(Protocol):
    """What the core needs of the @connections management API."""

    def post_many(self, connection_ids: Sequence[str], data: bytes) -> FanoutReport: ...

    def delete(self, connection_id: str) -> object: ...

    def delete_many(self, connection_ids: Sequence[str]) -> object: ...


MetricSink = Callable[[str, str, float], None]  # (name, unit, value)


def _ignore_metric(name: str, unit: str, value: float) -> None:
    pass


@dataclass
class ClassroomService:
    store: ClassroomStore
    connections: ConnectionsApi
    limits: Limits
    registry: EventRegistry = field(default_factory=EventRegistry)
    metric: MetricSink = _ignore_metric
    clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)

    # -- lifecycle -------------------------------------------------------------------------------
    def connect(self, member: Member, connected_at_ms: int, reopen: bool = False) -> tuple[int, str] | None:
        """Joins the classroom (`reopen`: a teacher reopening an ended class); returns (status, reason)
        when the connection is refused."""
        try:
            published = self.store.join(member, connected_at_ms, reopen)
        except JoinRefused as refusal:
            self.metric(refusal_metric(refusal.reason), "Count", 1)
            log.info("connection refused", extra={"reason": refusal.reason})
            self.deliver(member.classroom_id, refusal.pruned)
            return REFUSALS[refusal.reason]
        # The joining connection is not open until $connect returns: posting to it now would fail
        # as gone and prune a healthy member. It reads its own join through `sync`.
        self.deliver(member.classroom_id, published, exclude=member.connection_id)
        return None

    def disconnect(self, member: Member) -> None:
        self.deliver(member.classroom_id, self.store.leave(member.classroom_id, [member.connection_id]))

    # -- frames ----------------------------------------------------------------------------------
    def handle(self, member: Member, body: str | None) -> str | None:
        """Handles one client frame; returns the reply frame for the sender, if any."""
        request = None
        try:
            request = parse_request(body, member.classroom_id, self.limits.max_data_bytes)
            if isinstance(request, Send):
                return self._send(member, request)
            if isinstance(request, Sync):
                return self._sync(member, request)
            if isinstance(request, Who):
                return self._who(member, request)
            return self._pong(member, request)
        except RateLimited as limited:
            assert request is not None  # only a parsed request is metered
            return self._rate_limited(member, request.action, _client_id(request), limited)
        except NotMember:
            assert request is not None  # membership is checked after parsing
            self._stranger(member, _client_id(request), request.action)
            return None
        except ProtocolError as error:
            if request is not None:
                error.action = request.action
            return self._refused(member, error)

    def _refused(self, member: Member, error: ProtocolError) -> str | None:
        self.metric(error_metric(error.code), "Count", 1)
        log.info("refused frame", extra={"code": error.code, "reason": error.message})
        # A refused frame is charged too: a flood of bad frames spends the stage's throttle as well. (A
        # refused send was charged to its own bucket already.)
        if error.action == "send" and error.code == "ended":
            return error.frame()
        try:
            self.store.admit(member)
        except RateLimited as limited:
            return self._rate_limited(member, error.action, error.client_id, limited)
        return error.frame()

    def _rate_limited(
        self, member: Member, action: str | None, client_id: str | None, limited: RateLimited
    ) -> str | None:
        """`action` is None for a frame refused before its action was understood."""
        limits = self.limits
        frames = f"{action} frames" if action else "refused frames"
        rate, burst = (
            (limits.rate_per_second, limits.rate_burst)
            if action == "send"
            else (limits.read_rate_per_second, limits.read_rate_burst)
        )
        self.metric(error_metric("rate_limited"), "Count", 1)
        if not limited.flooding:
            return error_frame(
                "rate_limited",
                f"more than {rate:g} {frames}/s (burst {burst}); retry after {limited.retry_after_ms} ms",
                client_id,
                retry_after_ms=limited.retry_after_ms,
                action=action,
            )
        # It kept sending far past its limit: every frame it sends spends the stage's throttle, so it goes.
        self.metric(CONNECTIONS_CLOSED_FOR_FLOODING, "Count", 1)
        log.warning("closing a flooding connection", extra={"action": action})
        self._close_with(
            member,
            error_frame(
                "rate_limited",
                f"far more than {rate:g} {frames}/s: the connection is closed",
                client_id,
                action=action,
            ),
        )
        return None

    def _stranger(self, member: Member, client_id: str | None, action: str) -> None:
        """A connection the registry no longer holds (pruned, or its record evicted under memory pressure)
        would hear nothing more: it is told so and closed, and its client reconnects and joins again."""
        self.metric(STRANGERS_CLOSED, "Count", 1)
        self._close_with(
            member,
            error_frame(
                "forbidden",
                "this connection is no longer a member of the classroom; reconnect",
                client_id,
                action=action,
            ),
        )

    def _close_with(self, member: Member, frame: str) -> None:
        """Tells the connection why, then closes it (the reply of a closed connection would go nowhere)."""
        self.connections.post_many([member.connection_id], frame.encode("utf-8"))
        self.connections.delete(member.connection_id)

    def _send(self, member: Member, request: Send) -> str | None:
        event_type = self.registry.get(request.event)
        if event_type is None:
            raise ProtocolError(
                "bad_request",
                f"unknown event {request.event[:64]!r}; expected one of {', '.join(self.registry.names)}",
                request.id,
            )
        if member.role not in event_type.senders:
            raise ProtocolError(
                "forbidden",
                f"a {member.role} may not send {event_type.name!r} events",
                request.id,
            )
        result = self.store.publish(
            member,
            request.id,
            request.event,
            request.data_json,
            event_type.persistent,
            closes_class=event_type.closes_class,
        )
        if result.status == "not_member":
            self._stranger(member, request.id, "send")
            return None
        if result.status == "ended":
            raise ProtocolError("ended", "the class has ended; a teacher may reopen it", request.id)
        assert result.published is not None
        published = result.published
        if result.status == "duplicate":
            return self._resent(member, request, result, published)
        if not event_type.persistent:
            # Not back to its sender: a volatile event acknowledges nothing (one delivery fewer per event).
            frame = self._volatile_frame(member, request, result.server_ms)
            self.deliver(member.classroom_id, published, relayed=(frame, member.connection_id))
            return None
        self.metric(EVENTS_PUBLISHED, "Count", 1)
        self.deliver(member.classroom_id, published)
        if event_type.closes_class:
            self.close_connections(member.classroom_id, published.connection_ids)
        return None

    def _resent(
        self, member: Member, request: Send, result: PublishResult, published: Published
    ) -> str | None:
        """An idempotent resend. The first attempt may have died (or lost its Redis reply) before its
        fan-out, so the original goes to every member again; their clients drop the copies by seq."""
        self.metric(RESENDS, "Count", 1)
        if not published.frames:
            # Appended, but no longer in the log (retention, or a log that restarted): say so, by seq.
            return compact_json({"type": "ack", "id": request.id, "seq": result.seq, "epoch": result.epoch})
        self.deliver(member.classroom_id, published)
        original = self.registry.get(json.loads(published.frames[0]).get("event", ""))
        # An `end` closes the class again only while it is the end in force (not after a reopen).
        if original is not None and original.closes_class and result.still_ended:
            self.close_connections(member.classroom_id, published.connection_ids)
        return None

    def _volatile_frame(self, member: Member, request: Send, ts: int) -> str:
        return (
            f'{{"type":"event","classroom":{compact_json(member.classroom_id)},"id":{compact_json(request.id)},'
            f'{member.head_json()},"event":{compact_json(request.event)},"data":{request.data_json},"ts":{ts}}}'
        )

    def _sync(self, member: Member, request: Sync) -> str:
        page = self.store.sync(
            member,
            request.since,
            request.since_eid,
            request.epoch,
            request.limit,
            FRAME_LIMIT_BYTES - REPLY_ENVELOPE_BYTES,
        )
        if page.reset:
            self.metric(SYNC_RESETS, "Count", 1)
        self.metric(SYNC_EVENTS, "Count", len(page.frames))
        if request.since > 0:
            # A client that already held events is catching up (gap, reconnect, divergence).
            self.metric(REPLAYS, "Count", len(page.frames))
        return (
            f'{{"type":"sync","events":[{",".join(page.frames)}],"last":{page.last},'
            f'"more":{_bool(page.more)},"reset":{_bool(page.reset)},"epoch":{compact_json(page.epoch)}}}'
        )

    def _who(self, member: Member, request: Who) -> str:
        users: dict[str, dict] = {}
        for info in self.store.roster(member):
            entry = users.setdefault(
                info["userId"],
                {
                    "userId": info["userId"],
                    "role": info["role"],
                    "name": info.get("name", ""),
                    "connections": 0,
                    "lagMs": None,
                    "behind": None,
                },
            )
            entry["connections"] += 1
            # A user's lag is that of its worst connection with fresh telemetry.
            for name in ("lagMs", "behind"):
                if info.get(name) is not None:
                    entry[name] = max(info[name], entry[name] or 0)
        # Paged by userId so a 1,000-member lecture's roster still fits API Gateway's frame limit.
        members: list[dict] = []
        size, more = 0, False
        for user_id in sorted(u for u in users if u > request.after):
            encoded = compact_json(users[user_id])
            if members and size + len(encoded.encode()) + 1 > FRAME_LIMIT_BYTES - REPLY_ENVELOPE_BYTES:
                more = True
                break
            members.append(users[user_id])
            size += len(encoded.encode()) + 1
        reply: dict[str, object] = {"type": "roster", "members": members, "more": more}
        if more:
            reply["next"] = members[-1]["userId"]
        return compact_json(reply)

    def _pong(self, member: Member, request: Ping) -> str:
        if request.seq is None:
            if not self.store.admit(member):  # a bare keep-alive: nothing but the rate check
                raise NotMember()
            return compact_json({"type": "pong", "ts": self.clock_ms()})
        report = self.store.report(member, request.seq, request.lag_ms)
        if request.lag_ms is not None:
            self.metric(MEMBER_LAG_MS, "Milliseconds", request.lag_ms)
        # 0 or 1 per report: Sum counts the members behind, Average is the fraction behind.
        self.metric(MEMBERS_BEHIND, "Count", 1 if report.behind > 0 else 0)
        return compact_json(
            {
                "type": "pong",
                "ts": self.clock_ms(),
                "behind": report.behind,
                "last": report.last,
                "epoch": report.epoch,
            }
        )

    # -- fan-out ---------------------------------------------------------------------------------
    def deliver(
        self,
        classroom_id: str,
        published: Published,
        exclude: str | None = None,
        relayed: tuple[str, str] | None = None,
    ) -> None:
        """Posts each frame, in order, to every connection but `exclude` (one not open yet), then `relayed`
        (a volatile frame, its sender's connection) to every other one; prunes the ones that are gone, whose
        leaves go to every connection, the relay's sender's included."""
        frames: list[tuple[str, str | None]] = [(frame, None) for frame in published.frames]
        if relayed is not None:
            frames.append(relayed)
        for _ in range(MAX_PRUNE_ROUNDS):
            targets = [c for c in published.connection_ids if c != exclude]
            gone: set[str] = set()
            for frame, sender in frames:
                recipients = [c for c in targets if c != sender]
                if not recipients:
                    continue
                started = time.perf_counter()
                report = self.connections.post_many(recipients, frame.encode("utf-8"))
                self.metric(FANOUT_MS, "Milliseconds", (time.perf_counter() - started) * 1000)
                self.metric(DELIVERIES, "Count", len(report.delivered))
                if report.failed:
                    self.metric(DELIVERY_FAILURES, "Count", len(report.failed))
                    log.warning(
                        "deliveries failed", extra={"classroomId": classroom_id, "failed": len(report.failed)}
                    )
                gone.update(report.gone)
                targets = [c for c in targets if c not in gone]
            if not gone:
                return
            self.metric(GONE_PRUNED, "Count", len(gone))
            published = self.store.prune_gone(classroom_id, sorted(gone))
            frames = [(frame, None) for frame in published.frames]

    def close_connections(self, classroom_id: str, connection_ids: Sequence[str]) -> None:
        # Concurrently; a connection already gone counts as closed, and a failure is not retried here.
        self.connections.delete_many(connection_ids)
        self.metric(CONNECTIONS_CLOSED, "Count", len(connection_ids))
        log.info(
            "closed classroom connections", extra={"classroomId": classroom_id, "count": len(connection_ids)}
        )


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _client_id(request: object) -> str | None:
    return request.id if isinstance(request, Send) else None
