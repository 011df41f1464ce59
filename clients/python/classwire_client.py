"""Python client for the classwire protocol (README.md, "Protocol" and "Delivery guarantee").

Used by the tests, the load and chaos tools and the smoke test. It hands persistent events to the
application strictly in `seq` order, exactly once: out-of-order frames wait in a buffer, a gap that
persists is filled with `sync`, duplicates are dropped by `seq`, and a chain that does not link
(`prev` != the previous `eid`) means the server's log diverged, so it resyncs and honours `reset`.
Its own persistent events go out one at a time, each after the previous one's acknowledgement; the
unacknowledged ones stay in an outbox and are resent with the same `id` after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

log = logging.getLogger("classwire.client")
MAX_LAG_MS = 24 * 3600 * 1000  # the server refuses a larger lagMs (a broken clock, not a lag)


class Refused(Exception):
    """The server refused the connection (401: token, 403: classroom) or a frame (error frame)."""

    def __init__(self, status: int | str, message: str = ""):
        super().__init__(f"{status}: {message}" if message else str(status))
        self.status = status
        self.message = message


@dataclass
class Stats:
    sends: int = 0
    acks: int = 0
    resends: int = 0
    reconnects: int = 0
    replayed: int = 0  # events applied from sync replies
    live: int = 0  # events applied from live frames
    duplicates: int = 0
    resets: int = 0
    syncs: int = 0
    gap_syncs: int = 0
    divergences: int = 0


@dataclass
class _Pending:
    id: str
    event: str
    data: object
    done: asyncio.Future
    sent_at: float = 0.0
    attempts: int = 0


@dataclass
class ClasswireClient:
    url: str
    token: str
    classroom: str
    user_id: str = ""
    on_event: Callable[[dict], None] | None = None
    on_volatile: Callable[[dict], None] | None = None
    on_reset: Callable[[], None] | None = None
    gap_timeout: float = 0.3
    ack_timeout: float = 10.0
    ping_interval: float = 300.0  # keep-alive: API Gateway closes a connection idle for 10 minutes
    # Pings carry delivery telemetry (last applied seq, smoothed lag) this often, which also keeps the
    # connection alive; each costs a message, an invocation and a Redis round trip. None: bare keep-alives.
    telemetry_interval: float | None = 30.0
    backoff_base: float = 0.1
    backoff_cap: float = 10.0
    keep_events: bool = True

    stats: Stats = field(default_factory=Stats)
    events: list[dict] = field(default_factory=list)  # applied persistent events, in seq order
    last_seq: int = 0
    last_eid: str = ""
    lag_ms: float | None = None  # smoothed (receive time - event ts) of live events; None until measured
    behind: int | None = None  # events this client had not applied, per the last telemetry pong
    ended: bool = False

    def __post_init__(self) -> None:
        self._ws: ClientConnection | None = None
        self._closing = False
        self._buffer: dict[int, dict] = {}
        self._recent_eids: dict[int, str] = {}
        self._outbox: deque[_Pending] = deque()
        self._ids = (f"{os.urandom(4).hex()}-{n}" for n in itertools.count(1))
        self._connected = asyncio.Event()
        self._sync_in_flight = False
        self._gap_task: asyncio.Task | None = None
        self._runner: asyncio.Task | None = None
        self._roster: asyncio.Future | None = None
        self._first_connect: asyncio.Future | None = None
        self._applied_event = asyncio.Condition()

    # -- public API ------------------------------------------------------------------------------
    async def start(self, timeout: float = 15.0) -> ClasswireClient:
        """Connects (raising Refused on 401/403) and keeps the connection up until close()."""
        self._first_connect = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run())
        await asyncio.wait_for(self._first_connect, timeout)
        return self

    async def send(
        self, event: str, data: object, *, persistent: bool = True, id: str | None = None
    ) -> dict | None:
        """Publishes an event; for persistent ones, returns the acknowledged event (with its seq)."""
        client_id = id or next(self._ids)
        if not persistent:
            if self._ws is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.send(_frame(action="send", id=client_id, event=event, data=data))
            return None
        pending = _Pending(client_id, event, data, asyncio.get_running_loop().create_future())
        self._outbox.append(pending)
        self.stats.sends += 1
        if len(self._outbox) == 1:
            await self._send_head()
        return await pending.done

    async def who(self) -> list[dict]:
        members: list[dict] = []
        after = ""
        while True:
            self._roster = asyncio.get_running_loop().create_future()
            await self._send_frame(action="who", after=after)
            page = await asyncio.wait_for(self._roster, 10)
            members += page["members"]
            if not page.get("more"):
                return members
            after = page["next"]

    async def wait_for_seq(self, seq: int, timeout: float = 10.0) -> None:
        """Waits until every persistent event up to `seq` has been applied."""
        async with self._applied_event:
            await asyncio.wait_for(self._applied_event.wait_for(lambda: self.last_seq >= seq), timeout)

    async def catch_up(self, timeout: float = 10.0) -> None:
        """Syncs now and waits for the reply to be applied (used before comparing views)."""
        await self._connected.wait()
        await self._sync(force=True)
        deadline = time.monotonic() + timeout
        while self._sync_in_flight or self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("catch_up did not finish")
            await asyncio.sleep(0.02)

    async def drop(self) -> None:
        """Cuts the socket without a close handshake (a network failure); the client reconnects."""
        if self._ws is not None and self._ws.transport is not None:
            self._ws.transport.abort()

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        for pending in self._outbox:
            if not pending.done.done():
                pending.done.cancel()

    @property
    def pending(self) -> int:
        return len(self._outbox)

    # -- connection ------------------------------------------------------------------------------
    async def _run(self) -> None:
        attempt = 0
        while not self._closing and not self.ended:
            query = urlencode({"token": self.token, "classroom": self.classroom})
            try:
                async with connect(
                    f"{self.url}?{query}", open_timeout=10, max_size=2**20, ping_interval=None
                ) as ws:
                    self._ws = ws
                    attempt = 0
                    self._connected.set()
                    pinger = asyncio.create_task(self._ping_loop())
                    try:
                        await self._on_open()
                        async for raw in ws:
                            await self._on_frame(raw)
                    finally:
                        pinger.cancel()
                        self._connected.clear()
                        self._ws = None
                        self._sync_in_flight = False
            except InvalidStatus as refused:
                status = refused.response.status_code
                if status in (401, 403):
                    self._fail_first(Refused(status, "connection refused"))
                    return
            except (OSError, ConnectionClosed, asyncio.TimeoutError) as error:
                log.debug("connection lost: %r", error)
            if self._closing or self.ended:
                return
            attempt += 1
            self.stats.reconnects += 1
            # Full jitter: spreads a classroom's reconnects after a shared outage.
            await asyncio.sleep(random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt)))

    async def _on_open(self) -> None:
        if self._first_connect is not None and not self._first_connect.done():
            self._first_connect.set_result(None)
        await self._sync(force=True)
        if self._outbox:
            self.stats.resends += 1
            await self._send_head()

    def _fail_first(self, error: Exception) -> None:
        if self._first_connect is not None and not self._first_connect.done():
            self._first_connect.set_exception(error)

    async def _ping_loop(self) -> None:
        telemetry = bool(self.telemetry_interval)
        interval = min(self.ping_interval, self.telemetry_interval) if telemetry else self.ping_interval
        while True:
            await asyncio.sleep(interval)
            if telemetry:
                await self.report_telemetry()
            else:
                await self._send_frame(action="ping")  # a bare ping costs the server no Redis call

    async def report_telemetry(self) -> None:
        """Sends a ping carrying this client's last applied seq and smoothed lag (the server answers with
        how far behind that is, kept in `behind`)."""
        frame: dict[str, object] = {"seq": self.last_seq}
        if self.lag_ms is not None:
            frame["lagMs"] = min(MAX_LAG_MS, round(self.lag_ms))
        await self._send_frame(action="ping", **frame)

    async def _send_frame(self, **frame: object) -> None:
        ws = self._ws
        if ws is None:
            return
        with contextlib.suppress(ConnectionClosed):
            await ws.send(_frame(**frame))

    # -- outbox ----------------------------------------------------------------------------------
    async def _send_head(self) -> None:
        if not self._outbox:
            return
        head = self._outbox[0]
        head.sent_at = time.monotonic()
        head.attempts += 1
        await self._send_frame(action="send", id=head.id, event=head.event, data=head.data)
        asyncio.get_running_loop().call_later(self.ack_timeout, self._check_ack, head)

    def _check_ack(self, pending: _Pending) -> None:
        # No acknowledgement and no error in time (a lost frame, a failed invocation): resend, same id.
        if self._outbox and self._outbox[0] is pending and not pending.done.done() and self._ws is not None:
            if time.monotonic() - pending.sent_at >= self.ack_timeout * 0.99:
                self.stats.resends += 1
                asyncio.ensure_future(self._send_head())

    async def _acknowledge(self, event: dict) -> None:
        if not self._outbox or event.get("from") != self.user_id or event.get("id") != self._outbox[0].id:
            return
        head = self._outbox.popleft()
        if not head.done.done():
            head.done.set_result(event)
        self.stats.acks += 1
        await self._send_head()

    async def _refuse(self, error: dict) -> None:
        if not self._outbox or error.get("id") != self._outbox[0].id:
            log.info("error frame: %s", error)
            return
        head = self._outbox[0]
        code = error.get("code")
        if code in ("rate_limited", "internal"):
            delay = (error.get("retryAfterMs") or 200) / 1000
            self.stats.resends += 1
            asyncio.get_running_loop().call_later(delay, lambda: asyncio.ensure_future(self._send_head()))
            return
        self._outbox.popleft()
        if not head.done.done():
            head.done.set_exception(Refused(code, error.get("message", "")))
        await self._send_head()

    # -- incoming --------------------------------------------------------------------------------
    async def _on_frame(self, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            return  # API Gateway may send an empty route response
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind == "event":
            if "seq" not in frame:
                if self.on_volatile:
                    self.on_volatile(frame)
                return
            sample = max(0.0, time.time() * 1000 - frame.get("ts", 0))
            self.lag_ms = sample if self.lag_ms is None else 0.8 * self.lag_ms + 0.2 * sample
            await self._acknowledge(frame)
            await self._accept(frame, replay=False)
        elif kind == "sync":
            await self._on_sync(frame)
        elif kind == "roster":
            if self._roster is not None and not self._roster.done():
                self._roster.set_result(frame)
        elif kind == "error":
            await self._refuse(frame)
        elif kind == "pong" and isinstance(frame.get("behind"), int):
            self.behind = frame["behind"]

    async def _accept(self, event: dict, replay: bool) -> None:
        seq, eid = event["seq"], event.get("eid", "")
        if seq <= self.last_seq:
            known = self._recent_eids.get(seq)
            if known is not None and known != eid:
                await self._diverged()  # same seq, different event: the server's log changed
            else:
                self.stats.duplicates += 1
            return
        if seq > self.last_seq + 1:
            self._buffer[seq] = event
            self._arm_gap_timer()
            return
        if self.last_seq and self.last_eid and event.get("prev") != self.last_eid:
            await self._diverged()
            return
        self._apply(event, replay)
        while self.last_seq + 1 in self._buffer:
            following = self._buffer.pop(self.last_seq + 1)
            if following.get("prev") != self.last_eid:
                self._buffer.clear()
                await self._diverged()
                return
            self._apply(following, replay)
        async with self._applied_event:
            self._applied_event.notify_all()

    def _apply(self, event: dict, replay: bool) -> None:
        self.last_seq, self.last_eid = event["seq"], event.get("eid", "")
        self._buffer.pop(self.last_seq, None)  # a buffered copy of an event applied from a sync
        self._recent_eids[self.last_seq] = self.last_eid
        self._recent_eids.pop(self.last_seq - 4096, None)
        if replay:
            self.stats.replayed += 1
        else:
            self.stats.live += 1
        if self.keep_events:
            self.events.append(event)
        if event.get("event") == "end":
            self.ended = True
        if self.on_event:
            self.on_event(event)

    def _arm_gap_timer(self) -> None:
        if self._gap_task is None or self._gap_task.done():
            self._gap_task = asyncio.ensure_future(self._gap_timer())

    async def _gap_timer(self) -> None:
        await asyncio.sleep(self.gap_timeout)
        for stale in [seq for seq in self._buffer if seq <= self.last_seq]:
            del self._buffer[stale]
        if self._buffer and min(self._buffer) > self.last_seq + 1:
            self.stats.gap_syncs += 1
            await self._sync(force=False)

    async def _diverged(self) -> None:
        self.stats.divergences += 1
        await self._sync(force=True)

    async def _sync(self, force: bool) -> None:
        if self._sync_in_flight and not force:
            return
        self._sync_in_flight = True
        self.stats.syncs += 1
        await self._send_frame(action="sync", since=self.last_seq, sinceEid=self.last_eid)

    async def _on_sync(self, page: dict) -> None:
        events = page.get("events", [])
        if page.get("reset"):
            self.stats.resets += 1
            self._buffer.clear()
            self._recent_eids.clear()
            self.events.clear()
            if self.on_reset:
                self.on_reset()
            first = events[0] if events else None
            self.last_seq = first["seq"] - 1 if first else page.get("last", 0)
            self.last_eid = first.get("prev", "") if first else ""
        for event in events:
            await self._acknowledge(event)
            await self._accept(event, replay=True)
        if page.get("more"):
            await self._send_frame(action="sync", since=self.last_seq, sinceEid=self.last_eid)
            return
        self._sync_in_flight = False
        if self._buffer:
            self._arm_gap_timer()
        async with self._applied_event:
            self._applied_event.notify_all()


def _frame(**fields: object) -> str:
    return json.dumps(fields, separators=(",", ":"))
