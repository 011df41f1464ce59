"""Python client for the classwire protocol (README.md, "Protocol" and "Delivery guarantee").

Used by the tests, the load and chaos tools and the smoke test. It hands persistent events to the
application strictly in `seq` order, exactly once per log epoch: out-of-order frames wait in a bounded
buffer, a gap that persists (or a telemetry pong saying this client is behind) is filled with `sync`,
duplicates are dropped by `seq`, and a chain that does not link (`prev` != the previous `eid`, one seq with
two eids, another `epoch`) means the server's log diverged or restarted, so it resyncs naming what it holds,
backing off while the answers keep diverging, and honours `reset`. No reply is waited for forever: a lost
sync or roster reply is asked again, a refused one is retried later. Its own persistent events go out one
at a time, each after the previous one's acknowledgement; the unacknowledged ones stay in an outbox and are
resent with the same `id` once a reconnect has caught up, for at most `resend_window` after their first try.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Literal, TypeGuard, overload
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

log = logging.getLogger("classwire.client")
MAX_LAG_MS = 24 * 3600 * 1000  # the server refuses a larger lagMs (a broken clock, not a lag)
RECENT_EIDS = 4096  # eids kept per seq to spot a same-seq, different-event divergence
# An occupancy outside 0..this is not believed (a broken or hostile server).
MAX_USERS = 1_000_000
WHO_RETRIES = 3  # a roster page with no reply (or a refused one) is asked again this many times
RETRYABLE = ("rate_limited", "internal")
EXPIRED = "may or may not have been appended; look for its id in the log"


def token_subject(token: str) -> str:
    """The `sub` claim of a JWT, read without verifying it (the server verifies)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return ""
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) else ""


class Refused(Exception):
    """The server refused the connection (401: token, 403: classroom or ended class, 429: too many
    connections) or a frame (its error frame's code); the client's own refusals are `ended` (the class
    ended) and `expired` (a send first attempted longer ago than `resend_window`)."""

    def __init__(self, status: int | str, message: str = ""):
        super().__init__(f"{status}: {message}" if message else str(status))
        self.status = status
        self.message = message


@dataclass
class Stats:
    sends: int = 0
    acks: int = 0
    resends: int = 0
    expired: int = 0  # sends failed with `expired` instead of being resent
    reconnects: int = 0
    replayed: int = 0  # events applied from sync replies
    live: int = 0  # events applied from live frames
    duplicates: int = 0
    resets: int = 0
    syncs: int = 0
    gap_syncs: int = 0
    behind_syncs: int = 0  # syncs asked because a telemetry pong said this client was behind
    ahead_syncs: int = 0  # syncs asked because a telemetry pong's log ended before this client's last seq
    divergences: int = 0
    sync_timeouts: int = 0
    sync_errors: int = 0  # error frames answering a sync (retried later)
    overflows: int = 0  # times the reorder buffer was full and dropped its highest seqs
    stray_pages: int = 0  # sync pages answering no outstanding request (ignored)
    stale_dropped: int = 0  # buffered events that syncs kept not reaching (not in the log)


@dataclass
class _Pending:
    id: str
    event: str
    data: object
    done: asyncio.Future
    first_sent_at: float = 0.0  # loop time of the first attempt
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
    # A teacher's connection to a crowded classroom gets students' joins and leaves here (README, "Presence").
    on_presence: Callable[[dict], None] | None = None
    gap_timeout: float = 0.3
    ack_timeout: float = 10.0
    ping_interval: float = 300.0  # keep-alive: API Gateway closes a connection idle for 10 minutes
    # Pings carry delivery telemetry (last applied seq, smoothed lag) this often, which also keeps the
    # connection alive; each costs a message, an invocation and a Redis round trip. None: bare keep-alives.
    telemetry_interval: float | None = 30.0
    # Reconnects and resyncs that keep diverging or failing wait min(cap, base * 2^(n-1)) after n in a row.
    backoff_base: float = 0.1
    backoff_cap: float = 10.0
    keep_events: bool = True
    reopen: bool = False  # a teacher reopening an ended class (asked on the first connection only)
    sync_timeout: float = 10.0  # no sync reply by then: ask again
    who_timeout: float = 10.0  # no roster page by then: ask again (WHO_RETRIES times, then TimeoutError)
    max_buffered: int = 1000  # out-of-order events held; beyond, the highest seqs are dropped and synced
    resend_window: float = 600.0  # the server dedupes a resend for 15 minutes; never resend after 10
    end_grace: float = 3.0  # after `end` the server closes every socket; close ours if it does not

    stats: Stats = field(default_factory=Stats)
    events: list[dict] = field(default_factory=list)  # applied persistent events since the last reset
    last_seq: int = 0
    last_eid: str = ""
    epoch: str = ""  # the log incarnation of what was applied; "" until known
    lag_ms: float | None = None  # smoothed (receive time - event ts) of live events; None until measured
    behind: int | None = None  # events this client had not applied, per the last telemetry pong
    ended: bool = False
    users: int | None = None  # the classroom's occupancy, as last heard (pong, roster, join, leave, presence)
    # Students' joins and leaves are not in the log (they go to teachers in `presence` frames): a roster
    # built from join and leave events is incomplete, and `who` is the one to read.
    crowded: bool = False

    def __post_init__(self) -> None:
        self.user_id = self.user_id or token_subject(self.token)  # recognises this user's acknowledgements
        self._ws: ClientConnection | None = None
        self._closing = False
        self._buffer: dict[int, dict] = {}
        self._recent_eids: dict[int, str] = {}
        self._outbox: deque[_Pending] = deque()
        self._ids = (f"{os.urandom(4).hex()}-{n}" for n in itertools.count(1))
        self._connected = asyncio.Event()
        self._ever_live = False
        self._attempt = 0  # consecutive connections that did not catch up
        # From (re)connect or reset until that catch-up's last page: sends wait, an `end` is only tracked.
        self._catching_up = False
        self._end_open = False  # the log as applied holds an `end` with no reopening `join` after it
        self._sync_in_flight = False
        self._sync_again = False  # something diverged while a sync was out: ask again after its reply
        self._sync_failures = 0  # consecutive syncs that diverged or were refused
        self._unfilled = 0  # consecutive syncs that left the buffer's gap open: the gap timer backs off
        self._behind_target: tuple[int, str] = (0, "")
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()
        self._runner: asyncio.Task | None = None
        self._roster: asyncio.Future | None = None
        self._who_lock = asyncio.Lock()
        self._first_connect: asyncio.Future | None = None
        self._applied_event = asyncio.Condition()

    # -- public API ------------------------------------------------------------------------------
    async def start(self, timeout: float = 15.0) -> ClasswireClient:
        """Connects (raising Refused on 401/403/429) and keeps the connection up until close()."""
        self._first_connect = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run())
        await asyncio.wait_for(self._first_connect, timeout)
        return self

    @overload
    async def send(
        self, event: str, data: object, *, persistent: Literal[True] = True, id: str | None = None
    ) -> dict: ...
    @overload
    async def send(
        self, event: str, data: object, *, persistent: Literal[False], id: str | None = None
    ) -> None: ...
    @overload
    async def send(
        self, event: str, data: object, *, persistent: bool, id: str | None = None
    ) -> dict | None: ...
    async def send(
        self, event: str, data: object, *, persistent: bool = True, id: str | None = None
    ) -> dict | None:
        """Publishes an event; for persistent ones, returns the acknowledged event (with its seq), or the
        server's `{"type": "ack", "id", "seq", "epoch"}` when the event was appended but is no longer in
        the log. Raises Refused (the error frame's code, `ended` or `expired`)."""
        if self.ended:
            raise Refused("ended", "the class has ended")
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
        """The classroom's members (every roster page). A page with no reply within `who_timeout` is asked
        again up to WHO_RETRIES times, then TimeoutError; a refused one is retried after `retryAfterMs`."""
        async with self._who_lock:  # roster frames name no request: one request at a time
            members: list[dict] = []
            after = ""
            while True:
                page = await self._who_page(after)
                self._heard_presence(page)
                members += page.get("members") or []
                if not page.get("more"):
                    return members
                after = page.get("next") or ""

    async def wait_for_seq(self, seq: int, timeout: float = 10.0) -> None:
        """Waits until every persistent event up to `seq` has been applied."""
        async with self._applied_event:
            await asyncio.wait_for(self._applied_event.wait_for(lambda: self.last_seq >= seq), timeout)

    async def catch_up(self, timeout: float = 10.0) -> None:
        """Syncs now and waits for the reply to be applied (used before comparing views)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await asyncio.wait_for(self._connected.wait(), timeout)
        if self._sync_in_flight:
            self._sync_again = True
        else:
            await self._start_sync()
        while self._sync_in_flight or self._sync_again or "resync" in self._timers or self._buffer:
            if loop.time() > deadline:
                raise TimeoutError("catch_up did not finish")
            await asyncio.sleep(0.02)

    async def drop(self) -> None:
        """Cuts the socket without a close handshake (a network failure); the client reconnects."""
        if self._ws is not None and self._ws.transport is not None:
            self._ws.transport.abort()

    async def close(self) -> None:
        self._closing = True
        self._cancel_timers()
        if self._ws is not None:
            await self._ws.close()
        for task in [self._runner, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for pending in self._outbox:
            if not pending.done.done():
                pending.done.cancel()

    @property
    def pending(self) -> int:
        return len(self._outbox)

    # -- connection ------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._closing and not self.ended:
            # batch=1: the server may send several events in one `events` frame (one message, not many).
            params = {"token": self.token, "classroom": self.classroom, "batch": "1"}
            if self.reopen:
                params["reopen"] = "1"
            query = urlencode(params)
            too_many = False
            try:
                async with connect(
                    f"{self.url}?{query}", open_timeout=10, max_size=2**20, ping_interval=None
                ) as ws:
                    self._ws = ws
                    self._ever_live = True
                    self.reopen = False  # an explicit act, once: this client's reconnects never reopen
                    self._connected.set()
                    pinger = asyncio.create_task(self._ping_loop())
                    try:
                        await self._on_open()
                        async for raw in ws:
                            await self._on_frame(raw)
                    finally:
                        pinger.cancel()
                        self._on_closed()
            except InvalidStatus as refused:
                status = refused.response.status_code
                if not self._ever_live and status in (401, 403, 429):
                    self._fail_first(Refused(status, "connection refused"))
                    return
                if status == 403:  # after having been live: the class ended, students are refused
                    self._end(Refused("ended", "the class has ended (reconnect refused: 403)"))
                    return
                if status == 401:  # the token expired: no point in trying it again
                    self._fail_pending(Refused(401, "reconnect refused: the token is no longer valid"))
                    return
                too_many = status == 429
            except (TimeoutError, OSError, ConnectionClosed) as error:
                log.debug("connection lost: %r", error)
            if self._closing or self.ended:
                return
            self._attempt += 1
            self.stats.reconnects += 1
            ceiling = min(self.backoff_cap, self.backoff_base * 2**self._attempt)
            # Full jitter spreads a classroom's reconnects after a shared outage; a 429 (too many
            # connections) waits at least half the ceiling: a slot frees only when a connection closes.
            share = 0.5 + 0.5 * random.random() if too_many else random.random()
            await asyncio.sleep(ceiling * share)

    async def _on_open(self) -> None:
        if self._first_connect is not None and not self._first_connect.done():
            self._first_connect.set_result(None)
        self._catching_up = True
        await self._start_sync()

    def _on_closed(self) -> None:
        self._connected.clear()
        self._ws = None
        self._catching_up = False
        self._sync_in_flight = self._sync_again = False
        for name in ("sync", "resync", "gap", "behind", "outbox"):
            self._cancel(name)

    def _fail_first(self, error: Exception) -> None:
        if self._first_connect is not None and not self._first_connect.done():
            self._first_connect.set_exception(error)

    async def _ping_loop(self) -> None:
        telemetry = bool(self.telemetry_interval)
        interval = min(self.ping_interval, self.telemetry_interval or self.ping_interval)
        while True:
            await asyncio.sleep(interval)
            if telemetry:
                await self.report_telemetry()
            else:
                await self._send_frame(action="ping")  # a bare ping costs the server no Redis call

    async def report_telemetry(self) -> None:
        """Sends a ping carrying this client's last applied seq and smoothed lag (the server answers with
        how far behind that is, kept in `behind`, and the log's last seq and epoch, acted on)."""
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

    # -- timers ----------------------------------------------------------------------------------
    def _later(self, name: str, delay: float, callback: Callable[..., None], *args: object) -> None:
        self._cancel(name)
        self._timers[name] = asyncio.get_running_loop().call_later(delay, self._fire, name, callback, args)

    def _fire(self, name: str, callback: Callable[..., None], args: tuple) -> None:
        self._timers.pop(name, None)
        callback(*args)

    def _cancel(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _cancel_timers(self) -> None:
        for name in list(self._timers):
            self._cancel(name)

    def _spawn(self, work: Coroutine) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("client task failed", exc_info=task.exception())

    def _backoff(self) -> float:
        return min(self.backoff_cap, self.backoff_base * 2 ** max(0, self._sync_failures - 1))

    # -- outbox ----------------------------------------------------------------------------------
    async def _send_head(self) -> None:
        """(Re)sends the outbox head, unless the connection is down or still catching up (then the end of
        the catch-up sends it, so an event appended before a cut is acknowledged from the sync page)."""
        self._cancel("outbox")
        while self._outbox:
            head = self._outbox[0]
            if head.done.done():  # given up on by its caller
                self._outbox.popleft()
                continue
            if self._ws is None or self._catching_up or self.ended:
                return
            now = asyncio.get_running_loop().time()
            if head.attempts and now - head.first_sent_at > self.resend_window:
                self._outbox.popleft()
                self.stats.expired += 1
                head.done.set_exception(Refused("expired", EXPIRED))
                continue
            if head.attempts:
                self.stats.resends += 1
            else:
                head.first_sent_at = now
            head.attempts += 1
            self._later("outbox", self.ack_timeout, self._ack_overdue, head)
            await self._send_frame(action="send", id=head.id, event=head.event, data=head.data)
            return

    def _ack_overdue(self, pending: _Pending) -> None:
        # No acknowledgement and no error in time (a lost frame, a failed invocation): resend, same id.
        if self._outbox and self._outbox[0] is pending and not pending.done.done():
            self._spawn(self._send_head())

    async def _acknowledge(self, event: dict) -> None:
        if not self._outbox:
            return
        head = self._outbox[0]
        if (event.get("from"), event.get("id"), event.get("event")) != (self.user_id, head.id, head.event):
            return
        self._outbox.popleft()
        if not head.done.done():
            head.done.set_result(event)
        self.stats.acks += 1
        await self._send_head()

    async def _on_ack(self, frame: dict) -> None:
        """An `ack` frame: the send was appended (at `seq`, in `epoch`) but its event is no longer in the
        log, so no copy of it will come; it resolves the send and is never resent."""
        for index, pending in enumerate(self._outbox):
            if pending.id == frame.get("id"):
                del self._outbox[index]
                ack = {"type": "ack", "id": pending.id, "seq": frame.get("seq"), "epoch": frame.get("epoch")}
                if not pending.done.done():
                    pending.done.set_result(ack)
                self.stats.acks += 1
                if index == 0:
                    await self._send_head()
                return

    async def _refuse(self, error: dict) -> None:
        if not self._outbox or error.get("id") != self._outbox[0].id:
            log.info("error frame: %s", error)
            return
        head = self._outbox[0]
        code = str(error.get("code"))
        if code == "ended":  # the class ended while this connection was still open
            self._end(Refused("ended", error.get("message", "")))
            return
        if code in RETRYABLE:
            delay = (error.get("retryAfterMs") or 200) / 1000
            self._later("outbox", delay, lambda: self._spawn(self._send_head()))
            return
        self._outbox.popleft()
        if not head.done.done():
            head.done.set_exception(Refused(code, error.get("message", "")))
        await self._send_head()

    def _fail_pending(self, error: Exception) -> None:
        self._cancel("outbox")
        for pending in self._outbox:
            if not pending.done.done():
                pending.done.set_exception(error)
        self._outbox.clear()
        if self._roster is not None and not self._roster.done():
            self._roster.set_exception(error)

    # -- roster ----------------------------------------------------------------------------------
    async def _who_page(self, after: str) -> dict:
        loop = asyncio.get_running_loop()
        failure: Exception = TimeoutError("who: no roster page")
        for attempt in range(WHO_RETRIES + 1):
            if self.ended:
                raise Refused("ended", "the class has ended")
            self._roster = loop.create_future()
            delay = 0.0
            await self._send_frame(action="who", after=after)
            try:
                reply = await asyncio.wait_for(self._roster, self.who_timeout)
            except TimeoutError:
                failure = TimeoutError(f"who: no roster page within {self.who_timeout} s")
            else:
                if reply.get("type") == "roster":
                    return reply
                failure = Refused(reply.get("code", "error"), reply.get("message", ""))
                if reply.get("code") not in RETRYABLE:
                    raise failure
                retry = reply.get("retryAfterMs")
                delay = retry / 1000 if _is_number(retry) and retry > 0 else self.backoff_base * 2**attempt
            finally:
                self._roster = None
            if attempt < WHO_RETRIES and delay:
                await asyncio.sleep(min(delay, self.backoff_cap))
        raise failure

    # -- incoming --------------------------------------------------------------------------------
    async def _on_event(self, frame: dict) -> None:
        if frame.get("seq") is None:
            if self.on_volatile:
                self.on_volatile(frame)
            return
        if _is_number(frame.get("ts")):
            sample = max(0.0, time.time() * 1000 - frame["ts"])
            self.lag_ms = sample if self.lag_ms is None else 0.8 * self.lag_ms + 0.2 * sample
        await self._acknowledge(frame)
        self._accept(frame, replay=False)

    async def _on_frame(self, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            return  # API Gateway may send an empty route response
        if not isinstance(frame, dict):
            return
        applied = (self.last_seq, self.stats.resets)
        kind = frame.get("type")
        if kind == "event":
            await self._on_event(frame)
        elif kind == "events":  # several events in one frame, each exactly as its own `event` frame
            events = frame.get("events")
            for event in events if isinstance(events, list) else ():
                if isinstance(event, dict) and event.get("type") == "event":
                    await self._on_event(event)
        elif kind == "sync":
            await self._on_sync(frame)
        elif kind == "ack":
            await self._on_ack(frame)
        elif kind == "roster":
            if self._roster is not None and not self._roster.done():
                self._roster.set_result(frame)
        elif kind == "error":
            await self._on_error(frame)
        elif kind == "pong":
            self._on_pong(frame)
        elif kind == "presence":
            changes = frame.get("changes")
            if isinstance(changes, list):
                self._heard_presence(frame)
                if self.on_presence:
                    self.on_presence(frame)
        if (self.last_seq, self.stats.resets) != applied:
            async with self._applied_event:
                self._applied_event.notify_all()

    async def _on_error(self, frame: dict) -> None:
        action = frame.get("action")
        if action == "sync":
            self._sync_refused(frame)
        elif action == "who":
            if self._roster is not None and not self._roster.done():
                self._roster.set_result(frame)
        elif action in (None, "send"):
            await self._refuse(frame)
        else:
            log.info("error frame: %s", frame)

    def _heard_presence(self, frame: dict) -> None:
        """Occupancy and crowding from a pong, roster page, presence frame or a join or leave's data."""
        users, crowded = frame.get("users"), frame.get("crowded")
        if isinstance(users, int) and not isinstance(users, bool) and 0 <= users <= MAX_USERS:
            self.users = users
        if isinstance(crowded, bool):
            self.crowded = crowded

    def _on_pong(self, pong: dict) -> None:
        self._heard_presence({"users": pong.get("users"), "crowded": pong.get("crowded")})
        behind, last, epoch = pong.get("behind"), pong.get("last"), pong.get("epoch") or ""
        if isinstance(behind, int):
            self.behind = behind
        if epoch and self.epoch and epoch != self.epoch:
            self._diverged()  # the log restarted: the resync names our epoch and is answered `reset`
        elif isinstance(behind, int) and behind > 0 and isinstance(last, int):
            # Events may still be in flight: sync only if they have not arrived after the gap time.
            self._behind_target = (max(last, self._behind_target[0]), epoch)
            if "behind" not in self._timers:
                self._later("behind", self.gap_timeout, self._still_behind)
        elif isinstance(last, int) and last < self.last_seq:
            # The log is behind this client (a failover lost what it holds, in a quiet classroom): the sync
            # names the event held, which the server answers with `reset`. (A frame that overtook the pong
            # costs one sync that changes nothing.)
            self.stats.ahead_syncs += 1
            self._request_sync()

    def _still_behind(self) -> None:
        last, epoch = self._behind_target
        self._behind_target = (0, "")
        if (not epoch or not self.epoch or epoch == self.epoch) and self.last_seq < last:
            self.stats.behind_syncs += 1
            self._request_sync()

    def _accept(self, event: dict, replay: bool, paged: bool = False) -> bool:
        """Takes one persistent event; False when the chain broke (a resync is under way)."""
        seq, eid, epoch = event.get("seq"), event.get("eid", ""), event.get("epoch") or ""
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            return True
        if epoch and self.epoch and epoch != self.epoch:
            return self._diverged()  # another incarnation of the log: never a duplicate by seq
        if seq <= self.last_seq:
            known = self._recent_eids.get(seq)
            if known is not None and known != eid:
                return self._diverged()  # same seq, different event: the server's log changed
            self.stats.duplicates += 1
            return True
        if seq > self.last_seq + 1:
            if paged:
                return self._diverged()  # a page continues from `since`: this one does not
            held = self._buffer.get(seq)
            held_epoch = next(iter(self._buffer.values())).get("epoch") or "" if self._buffer else ""
            if (held is not None and held.get("eid", "") != eid) or (epoch and held_epoch not in ("", epoch)):
                return self._diverged()
            self._hold(event)
            return True
        if self.last_eid and event.get("prev") != self.last_eid:
            return self._diverged()
        self._apply(event, replay)
        return self._drain(replay)

    def _hold(self, event: dict) -> None:
        self._buffer[event["seq"]] = event
        if len(self._buffer) > self.max_buffered:
            # Keep the lowest seqs (the next to apply); the rest come back by sync.
            for seq in sorted(self._buffer)[self.max_buffered :]:
                del self._buffer[seq]
            self.stats.overflows += 1
            self._request_sync()
        self._arm_gap()

    def _drain(self, replay: bool) -> bool:
        while (following := self._buffer.pop(self.last_seq + 1, None)) is not None:
            epoch = following.get("epoch") or ""
            if (epoch and self.epoch and epoch != self.epoch) or (
                self.last_eid and following.get("prev") != self.last_eid
            ):
                return self._diverged()
            self._apply(following, replay)
        for seq in [seq for seq in self._buffer if seq <= self.last_seq]:
            held = self._buffer.pop(seq)  # a buffered copy of an event applied from a sync
            known = self._recent_eids.get(seq)
            if known is not None and known != held.get("eid", ""):
                return self._diverged()
        if not self._buffer:
            self._cancel("gap")
            self._unfilled = 0
        return True

    def _apply(self, event: dict, replay: bool) -> None:
        self.last_seq, self.last_eid = event["seq"], event.get("eid", "")
        if not self.epoch:
            self.epoch = event.get("epoch") or ""
        self._recent_eids[self.last_seq] = self.last_eid
        self._recent_eids.pop(self.last_seq - RECENT_EIDS, None)
        if replay:
            self.stats.replayed += 1
        else:
            self.stats.live += 1
        if self.keep_events:
            self.events.append(event)
        kind = event.get("event")
        if kind == "end":
            self._end_open = True
        elif kind == "join" and (event.get("data") or {}).get("reopened") is True:
            self._end_open = False  # only a teacher's explicit reopen lifts an `end`
        if kind in ("join", "leave") and isinstance(event.get("data"), dict):
            self._heard_presence(event["data"])
        if self.on_event:
            self.on_event(event)
        # A live `end` ends at once; one from a sync is judged when it is done (a reopening join may follow).
        if kind == "end" and not replay and not self._catching_up:
            self._end()

    def _end(self, error: Exception | None = None) -> None:
        """The class ended: no reconnect, pending sends fail; the server closes the socket after `end`,
        and if it does not (the end came from history) the client closes it after `end_grace`."""
        if self.ended:
            return
        self.ended = True
        self._cancel_timers()
        self._fail_pending(error or Refused("ended", "the class has ended"))
        ws = self._ws
        if ws is not None:

            def close_if_open() -> None:
                if self._ws is ws:
                    self._spawn(ws.close())

            self._later("end", self.end_grace, close_if_open)

    def _arm_gap(self) -> None:
        if "gap" not in self._timers:
            self._later("gap", self.gap_timeout * 2**self._unfilled, self._gap_due)

    def _gap_due(self) -> None:
        if self._buffer and min(self._buffer) > self.last_seq + 1:
            if not self._sync_in_flight and "resync" not in self._timers:
                self.stats.gap_syncs += 1
            self._request_sync()  # an outstanding sync's reply fills the gap or arms this timer again

    # -- sync ------------------------------------------------------------------------------------
    def _request_sync(self) -> None:
        """Asks for what follows the last applied event, unless a sync is out or waiting out its back-off
        (its reply covers this). Every (re)connect starts with a sync anyway."""
        if self._ws is None or self._sync_in_flight or "resync" in self._timers:
            return
        self._spawn(self._start_sync())

    def _start_sync(self) -> Coroutine:
        self._cancel("resync")
        self._sync_in_flight, self._sync_again = True, False
        self.stats.syncs += 1
        self._later("sync", self.sync_timeout, self._sync_overdue)
        frame: dict[str, object] = {"since": self.last_seq, "sinceEid": self.last_eid}
        if self.epoch:
            frame["epoch"] = self.epoch
        return self._send_frame(action="sync", **frame)

    def _sync_overdue(self) -> None:
        if self._sync_in_flight and self._ws is not None:  # the reply was lost: ask again
            self.stats.sync_timeouts += 1
            self._spawn(self._start_sync())

    def _resync_due(self) -> None:
        if self._ws is not None and not self._sync_in_flight:
            self._spawn(self._start_sync())

    def _diverged(self) -> bool:
        """The server's log is not the one applied (a failover lost events, the log restarted): drop the
        buffer and resync naming the eid and epoch held (answered `reset` if the server does not have
        them), after a back-off that grows while the answers keep diverging. Returns False for _accept."""
        self.stats.divergences += 1
        self._buffer.clear()
        self._cancel("gap")
        self._unfilled = 0
        if self._sync_in_flight:
            self._sync_again = True  # its reply may predate this: ask again once it is in
        elif "resync" not in self._timers:
            self._sync_failures += 1
            self._later("resync", self._backoff(), self._resync_due)
        return False

    def _sync_refused(self, error: dict) -> None:
        if not self._sync_in_flight:
            log.info("error frame: %s", error)
            return
        self._cancel("sync")
        self._sync_in_flight = self._sync_again = False
        self.stats.sync_errors += 1
        self._sync_failures += 1
        retry = error.get("retryAfterMs")
        delay = retry / 1000 if _is_number(retry) and retry > 0 else self._backoff()
        self._later("resync", delay, self._resync_due)

    async def _on_sync(self, page: dict) -> None:
        if not self._sync_in_flight:
            self.stats.stray_pages += 1  # e.g. the reply to a sync asked again after its timeout
            return
        self._cancel("sync")
        self._sync_in_flight = False
        raw_events, raw_epoch = page.get("events"), page.get("epoch")
        events: list = raw_events if isinstance(raw_events, list) else []
        epoch = raw_epoch if isinstance(raw_epoch, str) else ""
        if page.get("reset"):
            self._reset(page, events, epoch)
        elif epoch and self.epoch and epoch != self.epoch:
            self._sync_again = False
            self._diverged()
            return
        for event in events:
            if not isinstance(event, dict):
                continue
            await self._acknowledge(event)
            if not self._accept(event, replay=True, paged=True):
                self._sync_again = False  # _diverged scheduled the resync
                return
        if epoch and not self.epoch:
            self.epoch = epoch
        if not page.get("reset"):
            self._sync_failures = 0  # a page that continued the chain held ends a run of divergences
        if page.get("more") or self._sync_again:
            await self._start_sync()
            return
        if self._end_open:  # caught up on a log whose last `end` nothing reopened
            self._end()
            return
        if self._catching_up:
            self._catching_up = False
            self._attempt = 0
            await self._send_head()
        if self._buffer:
            # Whatever is still buffered is past the log's last event as the server saw it: in flight (it
            # comes in a moment) or not in the log at all (a late frame of a log that restarted or lost
            # it): ask again later and later, and once the wait would pass the cap, drop it (if it was in
            # the log after all, the next event's gap or telemetry pong brings it).
            self._unfilled += 1
            self._cancel("gap")
            if self.gap_timeout * 2**self._unfilled > max(self.gap_timeout, self.backoff_cap):
                self.stats.stale_dropped += len(self._buffer)
                self._buffer.clear()
                self._unfilled = 0
            else:
                self._arm_gap()

    def _reset(self, page: dict, events: list, epoch: str) -> None:
        """The log no longer continues from what was applied: drop it all and rebuild from the page. Not
        counted for a client that held nothing (a first sync starting at the last `clear`, or past a trim):
        it lost nothing; `on_reset` is still called, as the application builds from this page."""
        # Live events that came before this page and follow it are kept (a late joiner's first page).
        last = page.get("last")
        kept = (
            {
                seq: event
                for seq, event in self._buffer.items()
                if isinstance(last, int) and seq > last and (event.get("epoch") or "") in ("", epoch)
            }
            if self.last_seq == 0
            else {}
        )
        if self.last_seq > 0:
            self.stats.resets += 1
        self._buffer.clear()
        self._buffer.update(kept)
        self._recent_eids.clear()
        self.events.clear()
        self._cancel("gap")
        self._unfilled = 0
        self._end_open = False
        self._catching_up = True
        first = events[0] if events and isinstance(events[0], dict) else None
        if first is not None and isinstance(first.get("seq"), int):
            self.last_seq, self.last_eid = first["seq"] - 1, first.get("prev", "")
            self.epoch = epoch or first.get("epoch") or ""
        else:
            self.last_seq, self.last_eid = int(page.get("last") or 0), ""
            self.epoch = epoch
        if self.on_reset:
            self.on_reset()


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _frame(**fields: object) -> str:
    return json.dumps(fields, separators=(",", ":"))
