"""The classroom protocol's core: joins, leaves, publishes, syncs and fans events out.

It speaks in members and frames; the handlers translate API Gateway events into calls here, and the
@connections client and the metrics sink are injected, so nothing here knows an AWS event shape.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from classwire.classroom_store import (
    ClassroomStore,
    JoinRefused,
    Member,
    NotMember,
    Published,
    PublishResult,
    RateLimited,
    Round,
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
from classwire.settings import FanoutSettings, Limits

log = logging.getLogger("classwire.classroom")

# Room left in a reply frame for its envelope (`{"type":"sync","events":[...],...}`).
REPLY_ENVELOPE_BYTES = 256
EVENTS_PREFIX = b'{"type":"events","events":['
EVENTS_SUFFIX = b"]}"
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

    def post_each(self, posts: Sequence[tuple[str, bytes]]) -> FanoutReport: ...

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
    fanout: FanoutSettings = field(default_factory=FanoutSettings)
    metric: MetricSink = _ignore_metric
    clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    sleep: Callable[[float], object] = time.sleep

    # -- lifecycle -------------------------------------------------------------------------------
    def connect(
        self, member: Member, connected_at_ms: int, reopen: bool = False, batch: bool = False
    ) -> tuple[int, str] | None:
        """Joins the classroom (`reopen`: a teacher reopening an ended class; `batch`: the connection takes
        `events` frames); returns (status, reason) when the connection is refused."""
        try:
            published = self.store.join(member, connected_at_ms, reopen, batch)
        except JoinRefused as refusal:
            self.metric(refusal_metric(refusal.reason), "Count", 1)
            log.info("connection refused", extra={"reason": refusal.reason})
            self.flush(member.classroom_id, refusal.pruned.round)
            return REFUSALS[refusal.reason]
        # The joining connection is not open until $connect returns: posting to it now would fail
        # as gone and prune a healthy member. It reads its own join through `sync`.
        if self.flush(member.classroom_id, published.round, exclude=member.connection_id):
            # The round closed the class while this connection was joining: it would stay open alone.
            log.info("class ended while joining")
            self.disconnect(member)
            return REFUSALS["ended"]
        return None

    def disconnect(self, member: Member) -> None:
        self.flush(member.classroom_id, self.store.leave(member.classroom_id, [member.connection_id]).round)

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
            _, round_ = self.store.admit(member)
        except RateLimited as limited:
            return self._rate_limited(member, error.action, error.client_id, limited)
        self.flush(member.classroom_id, round_)
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
            starts_board=event_type.starts_board,
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
        if event_type.persistent:
            self.metric(EVENTS_PUBLISHED, "Count", 1)
        # Posted by this invocation's round, or by the next round of the one posting the classroom now; a
        # volatile event goes to every connection but its sender's (it acknowledges nothing).
        self.flush(member.classroom_id, published.round)
        return None

    def _resent(
        self, member: Member, request: Send, result: PublishResult, published: Published
    ) -> str | None:
        """An idempotent resend. The first attempt may have died (or lost its Redis reply) before its
        fan-out, so the original goes to every member again; their clients drop the copies by seq."""
        self.metric(RESENDS, "Count", 1)
        if not published.frames:
            # Appended, but no longer in the log (retention, or a log that restarted): say so, by seq.
            self.flush(member.classroom_id, published.round)
            return compact_json({"type": "ack", "id": request.id, "seq": result.seq, "epoch": result.epoch})
        # Posted at once unless this call's own round carries it (not yet posted by any round).
        ours = published.round is not None and published.frames[0] in published.round.frames
        gone = (
            set()
            if ours
            else self._post(member.classroom_id, published.connection_ids, frozenset(), published.frames, [])
        )
        pruned = self._prune(member.classroom_id, gone, claim=published.round is None) if gone else None
        self.flush(member.classroom_id, published.round or (pruned.round if pruned else None))
        original = self.registry.get(json.loads(published.frames[0]).get("event", ""))
        # An `end` closes the class again only while it is the end in force (not after a reopen), and only
        # once a round has posted it and what came before it: a round still to post it closes after it.
        if original is not None and original.closes_class and result.still_ended and result.posted:
            self.close_connections(member.classroom_id, published.connection_ids)
        return None

    def _sync(self, member: Member, request: Sync) -> str:
        page = self.store.sync(
            member,
            request.since,
            request.since_eid,
            request.epoch,
            request.limit,
            FRAME_LIMIT_BYTES - REPLY_ENVELOPE_BYTES,
        )
        if page.reset and (request.since > 0 or request.epoch):
            # (A first sync that starts at the board is not a reset: the member held nothing.)
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
        roster = self.store.roster(member)
        for info in roster.connections:
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
        reply: dict[str, object] = {
            "type": "roster",
            "members": members,
            "more": more,
            "users": roster.users,
            "crowded": roster.crowded,
        }
        if more:
            reply["next"] = members[-1]["userId"]
        return compact_json(reply)

    def _pong(self, member: Member, request: Ping) -> str:
        if request.seq is None:
            is_member, round_ = self.store.admit(member)  # a bare keep-alive: the rate check
            if not is_member:
                raise NotMember()
            self.flush(member.classroom_id, round_)  # events nobody was posting (rarely any)
            return compact_json({"type": "pong", "ts": self.clock_ms()})
        report = self.store.report(member, request.seq, request.lag_ms)
        # Events waited with nobody posting them (a flusher died, or stopped with some left): this ping took
        # the lease, so it posts them; its pong waits for that.
        self.flush(member.classroom_id, report.round)
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
                "users": report.users,
                "crowded": report.crowded,
            }
        )

    # -- fan-out ---------------------------------------------------------------------------------
    def flush(self, classroom_id: str, round_: Round | None, exclude: str | None = None) -> bool:
        """Posts the classroom's events in rounds while this invocation holds its lease: each round the
        events appended since the last (all of them: a busy classroom's rounds carry many), to every
        connection but `exclude` (one not open yet), until nothing is left or the budget is spent. Returns
        whether a round closed the class (it carried the `end` in force)."""
        if round_ is None:
            return False
        deadline = time.monotonic() + self.fanout.budget_ms / 1000
        if self.fanout.linger_ms:
            self.sleep(self.fanout.linger_ms / 1000)
            taken = round_
            # Nothing posted yet (upto 0): the round taken again holds the events appended meanwhile too.
            again = self.store.settle(classroom_id, replace(taken, upto=0))
            # The first take's volatile events left the queue with it: they go in this round whatever else.
            round_ = (
                replace(
                    again,
                    relayed=taken.relayed + again.relayed,
                    presence=taken.presence + again.presence,
                    teachers=taken.teachers | again.teachers,
                )
                if again is not None
                else replace(taken, upto=0, frames=[], closes=False)
            )
        closed = False
        while round_ is not None:
            targets = [c for c in round_.connection_ids if c != exclude]
            gone = self._post(
                classroom_id,
                targets,
                round_.batched,
                round_.frames,
                round_.relayed,
                [(c, frame) for c in targets if c in round_.teachers for frame in round_.presence],
            )
            if gone:
                self._prune(classroom_id, gone)  # their leaves go out in the next round
            if round_.closes:
                self.close_connections(classroom_id, [c for c in targets if c not in gone])
                closed = True
            round_ = self.store.settle(classroom_id, round_, stop=time.monotonic() >= deadline)
        return closed

    def _prune(self, classroom_id: str, gone: Iterable[str], claim: bool = False) -> Published:
        """Prunes connections found gone; `claim` when this invocation holds no lease (so that the leaves go
        out even if nobody else is posting the classroom)."""
        ids = sorted(gone)
        self.metric(GONE_PRUNED, "Count", len(ids))
        return self.store.prune_gone(classroom_id, ids, claim)

    def _post(
        self,
        classroom_id: str,
        targets: Sequence[str],
        batched: frozenset[str],
        frames: Sequence[str],
        relayed: Sequence[tuple[str, str]],
        direct: Sequence[tuple[str, str]] = (),
    ) -> set[str]:
        """Posts persistent `frames`, then `relayed` volatile ones, to every target: in `events` frames to
        the batched ones, one per frame to the others, all at once (clients put frames that overtake each
        other back in seq order, as they do for concurrent invocations); and each (connection, frame) of
        `direct` (the teachers' `presence` frames). Returns the connections gone."""
        shared = [frame.encode("utf-8") for frame in frames]
        volatile = [(sender, frame.encode("utf-8")) for sender, frame in relayed]
        senders = {sender for sender, _ in volatile}
        everyone = shared + [frame for _, frame in volatile]
        payloads: dict[tuple[str, bool], list[bytes]] = {}  # (sender or "", batched) -> what to post

        def payloads_of(connection_id: str) -> list[bytes]:
            own = connection_id if connection_id in senders else ""
            batch = connection_id in batched
            cached = payloads.get((own, batch))
            if cached is None:
                events = everyone if not own else shared + [f for s, f in volatile if s != own]
                cached = payloads[(own, batch)] = pack_events(events) if batch else events
            return cached

        posts = [(c, payload) for c in targets for payload in payloads_of(c)]
        posts += [(c, frame.encode("utf-8")) for c, frame in direct]
        if not posts:
            return set()
        started = time.perf_counter()
        report = self.connections.post_each(posts)
        self.metric(FANOUT_MS, "Milliseconds", (time.perf_counter() - started) * 1000)
        self.metric(DELIVERIES, "Count", len(report.delivered))
        if report.failed:
            self.metric(DELIVERY_FAILURES, "Count", len(report.failed))
            log.warning(
                "deliveries failed", extra={"classroomId": classroom_id, "failed": len(report.failed)}
            )
        return set(report.gone)

    def close_connections(self, classroom_id: str, connection_ids: Sequence[str]) -> None:
        # Concurrently; a connection already gone counts as closed, and a failure is not retried here.
        self.connections.delete_many(connection_ids)
        self.metric(CONNECTIONS_CLOSED, "Count", len(connection_ids))
        log.info(
            "closed classroom connections", extra={"classroomId": classroom_id, "count": len(connection_ids)}
        )


def pack_events(events: Sequence[bytes]) -> list[bytes]:
    """Events in as few frames as fit API Gateway's frame limit: one alone stays an `event` frame, more go
    in `events` frames, in order."""
    frames: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    room = FRAME_LIMIT_BYTES - len(EVENTS_PREFIX) - len(EVENTS_SUFFIX)
    for event in events:
        if chunk and size + len(event) + 1 > room:
            frames.append(_events_frame(chunk))
            chunk, size = [], 0
        chunk.append(event)
        size += len(event) + 1
    if chunk:
        frames.append(_events_frame(chunk))
    return frames


def _events_frame(events: list[bytes]) -> bytes:
    return events[0] if len(events) == 1 else EVENTS_PREFIX + b",".join(events) + EVENTS_SUFFIX


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _client_id(request: object) -> str | None:
    return request.id if isinstance(request, Send) else None
