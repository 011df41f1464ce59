"""A hostile classroom server, for property tests of both clients (tests/clients/test_*_client_hostile.py).

`ClassroomLog` is the true log: events with seq, eid, prev, epoch, id, from, event, data, ts, grown by a
fault schedule that can also restart it (a new epoch from seq 1: keys expired, failover to an empty
replica) or regress it (its last k events lost, then continued with other eids: failover to a lagging
replica; same epoch). Retention keeps its last `retention` events.

`compile_script` turns a schedule (drawn by `schedules()`) into a timed script, plain JSON so the JS driver
plays exactly what the Python one does: the log's versions, the live frames with their faults (dropped,
duplicated, late so overtaken, stale copies of older events so seq regresses), socket cuts, and windows in
which syncs are answered from a divergent log without `reset` (pages that do not link), refused (`internal`,
`rate_limited` with `retryAfterMs`, action "sync") or not answered, and pongs are dropped. Telemetry pongs
carry behind/last/epoch of the log they are answered from. Then the schedule ends and the server turns
honest: a quiet phase with no new event (only telemetry pongs can tell a client what it missed), then one
last event delivered live.

`Responder` is the server's side of the connection (sync pages per README "Sync": reset when `since` is
beyond `last`, before the oldest retained event, or names another eid or epoch; pages of `page_size` with
`more`). js_hostile_driver.mjs holds the same rules in JavaScript; the two must stay the same.

`check_guarantee` asserts the guarantee of README "Delivery guarantee" on what a client handed its
application: (a) between two resets one gapless chain of events really in the log, (b) nothing twice,
(c) once the server is honest, the view equals the log, (d) a bounded number of syncs.
"""

from __future__ import annotations

import itertools
import math

from hypothesis import strategies as st

HONEST = {"mode": "honest"}
OPTIONS = {  # both clients get these (JS names; the Python test converts them)
    "gapMs": 300,
    "syncTimeoutMs": 10_000,
    "backoffBaseMs": 250,
    "backoffCapMs": 10_000,
    "telemetryIntervalMs": 5_000,
    "maxBuffered": 6,
    "rttMs": 20,  # the server answers a frame this long after it was sent
    "connectMs": 30,  # a connection opens this long after it was asked for
    "pageSize": 7,  # events per sync page (the server's 32 KB frame limit, made small)
}
MAX_REGRESS = 6  # a regress leaves the log at most this far below the highest seq it reached (since restart)
QUIET_MS = 30_000  # honest, no new event: back-offs (<= 10 s), a lost sync (10 s), a pong (5 s) play out
FINAL_MS = 30_000  # after the last event

_FAULTS = ["ok", "ok", "ok", "drop", "dup", "late", "stale"]
_KINDS = [  # (event, role): the server's own join/leave included; no `end` (it would stop the client)
    ("stroke", "student"),
    ("stroke", "teacher"),
    ("chat", "student"),
    ("erase", "student"),
    ("join", "student"),
    ("leave", "student"),
    ("join", "teacher"),
]


def schedules() -> st.SearchStrategy[dict]:
    frame = st.tuples(st.sampled_from(_FAULTS), st.integers(0, 1500))
    append = st.tuples(
        st.just("append"),
        st.lists(frame, min_size=1, max_size=10),
        st.one_of(st.integers(0, 40), st.integers(0, 300)),  # ms between appends
    )
    step = st.one_of(
        append,
        st.just(("restart",)),
        st.tuples(st.just("regress"), st.integers(1, 5)),
        st.tuples(
            st.just("syncs"),
            st.sampled_from(["diverge", "internal", "rate_limited", "silent"]),
            st.integers(0, 15_000),
            st.integers(250, 3_000),  # retryAfterMs
            # The socket is cut as the window opens: the reconnect's sync meets it.
            st.sampled_from([True, True, False]),
        ),
        st.tuples(st.just("pongs"), st.integers(0, 20_000)),
        st.just(("cut",)),
        st.tuples(st.just("wait"), st.integers(0, 12_000)),
    )
    return st.fixed_dictionaries(
        {
            "retention": st.integers(3, 40),
            "seed": st.integers(0, 2**24 - 1),
            # A log with events first, so that the faults meet a client with something to lose.
            "steps": st.tuples(append, st.lists(step, max_size=11)).map(
                lambda steps: [list(steps[0]), *(list(s) for s in steps[1])]
            ),
        }
    )


class ClassroomLog:
    """The true log. `chains[i]` holds one chain's events by seq (index seq - 1), trimmed ones included;
    a restart starts a new chain (new epoch), a regress a new chain sharing the kept prefix."""

    def __init__(self, retention: int):
        self.retention = retention
        self.chains: list[dict] = []
        self._eids = itertools.count(1)
        self._epochs = itertools.count(1)
        self.restart()

    def restart(self) -> None:
        self.chains.append({"epoch": f"{0xE90C << 48 | next(self._epochs):016x}", "events": []})
        self.first, self.last, self.peak = 1, 0, 0

    def regress(self, k: int) -> None:
        # Keep at least the oldest retained event, and stay within MAX_REGRESS of the peak.
        k = min(k, self.last - self.first, self.last - (self.peak - MAX_REGRESS))
        if k < 1:
            return
        chain = self.chains[-1]
        self.chains.append({"epoch": chain["epoch"], "events": chain["events"][: self.last - k]})
        self.last -= k

    def append(self, ts: int) -> dict:
        chain = self.chains[-1]
        n = next(self._eids)
        kind, role = _KINDS[n % len(_KINDS)]
        member = f"{role[0]}{n % 3}"
        event = {
            "type": "event",
            "classroom": "c1",
            "seq": self.last + 1,
            "eid": f"{n:016x}",
            "prev": chain["events"][self.last - 1]["eid"] if self.last else "",
            "epoch": chain["epoch"],
            "id": None if kind in ("join", "leave") else f"m-{n}",
            "from": member,
            "role": role,
            "name": member.upper(),
            "event": kind,
            "data": {"connections": 1} if kind in ("join", "leave") else {"n": n},
            "ts": ts,
        }
        chain["events"].append(event)
        self.last += 1
        self.peak = max(self.peak, self.last)
        self.first = max(self.first, self.last - self.retention + 1)
        return event

    def version(self) -> dict:
        return {"chain": len(self.chains) - 1, "first": self.first, "last": self.last}


def compile_script(schedule: dict) -> dict:
    log = ClassroomLog(schedule["retention"])
    timeline: list[tuple[int, int, str, object]] = []
    order = itertools.count()

    def at(t: int, kind: str, arg: object = None) -> None:
        timeline.append((t, next(order), kind, arg))

    sync_windows: list[tuple[int, int, dict]] = []
    pong_windows: list[tuple[int, int]] = []
    now = 0
    at(now, "log", log.version())
    for step in schedule["steps"]:
        kind = step[0]
        if kind == "append":
            _, frames, spacing = step
            for fault, delay in frames:
                event = log.append(ts=now)
                at(now, "log", log.version())
                soon = now + delay % 40
                if fault in ("ok", "dup", "stale"):
                    at(soon, "deliver", event)
                if fault in ("dup", "late"):
                    at(now + delay, "deliver", event)
                if fault == "stale":  # an older event again: seq regresses
                    older = log.chains[-1]["events"][max(0, event["seq"] - 2 - delay % 5)]
                    at(now + delay, "deliver", older)
                now += spacing
        elif kind == "restart":
            log.restart()
            at(now, "log", log.version())
        elif kind == "regress":
            log.regress(step[1])
            at(now, "log", log.version())
        elif kind == "syncs":
            _, mode, duration, retry, cut = step
            answer = {"mode": mode, "retryAfterMs": retry} if mode == "rate_limited" else {"mode": mode}
            sync_windows.append((now, now + duration, answer))
            if cut:
                at(now, "cut")
        elif kind == "pongs":
            pong_windows.append((now, now + step[1]))
        elif kind == "cut":
            at(now, "cut")
        elif kind == "wait":
            now += step[1]
    # The schedule ends when its last step and its last window are over.
    honest_at = max([now, *(end for _, end, _ in sync_windows), *(end for _, end in pong_windows)]) + 1
    segments = _piecewise(sync_windows, honest_at)
    for start, end, answer in segments:
        at(start, "syncs", answer)
        at(end, "syncs", HONEST)
    for start, end, _ in _piecewise([(a, b, {"mode": "drop"}) for a, b in pong_windows], honest_at):
        at(start, "pongs", "drop")
        at(end, "pongs", "honest")
    quiet_version = log.version()
    final_at = honest_at + QUIET_MS
    at(final_at, "snapshot")
    event = log.append(ts=final_at)
    at(final_at, "log", log.version())
    at(final_at + 10, "deliver", event)
    timeline.sort(key=lambda entry: (entry[0], entry[1]))
    return {
        "options": OPTIONS,
        "seed": schedule["seed"],
        "chains": log.chains,
        "timeline": [[t, kind, arg] for t, _, kind, arg in timeline],
        "syncWindows": [[start, end, answer] for start, end, answer in segments],
        "honestAt": honest_at,
        "finalAt": final_at,
        "endAt": final_at + FINAL_MS,
        "quietVersion": quiet_version,
        "finalVersion": log.version(),
    }


def _piecewise(windows: list[tuple[int, int, dict]], until: int) -> list[tuple[int, int, dict]]:
    """Non-overlapping stretches of the windows (a later window overrides an earlier one), cut at `until`."""
    points = sorted({p for start, end, _ in windows for p in (start, end) if p < until} | {until})
    stretches: list[tuple[int, int, dict]] = []
    for start, end in itertools.pairwise(points):
        covering = [answer for a, b, answer in windows if a <= start < b]
        if covering:
            if stretches and stretches[-1][1] == start and stretches[-1][2] == covering[-1]:
                stretches[-1] = (stretches[-1][0], end, covering[-1])
            else:
                stretches.append((start, end, covering[-1]))
    return stretches


# -- the server's side of the connection ----------------------------------------------------------


def honest_page(chain: dict, version: dict, request: dict, page_size: int) -> dict:
    """A sync page per README "Sync" and the epoch rules of issue 11."""
    first, last = version["first"], version["last"]
    retained = chain["events"][first - 1 : last]
    epoch = chain["epoch"] if retained else ""
    since, since_eid = request.get("since", 0), request.get("sinceEid", "")
    reset = (
        (bool(request.get("epoch")) and request["epoch"] != epoch)
        or since > last
        or since < first - 1
        or (since == first - 1 and bool(retained) and (since_eid or since == 0) and since_eid != retained[0]["prev"])
        or (since >= first and bool(since_eid) and retained[since - first]["eid"] != since_eid)
    )  # fmt: skip
    start = first if reset else since + 1
    size = min(request.get("limit") or 200, page_size)
    events = retained[start - first : start - first + size]
    return {
        "type": "sync",
        "events": events,
        "last": events[-1]["seq"] if events else last,
        "more": start - first + len(events) < len(retained),
        "reset": reset,
        "epoch": epoch,
    }


def divergent_page(seed: int, epoch: str, since: int) -> dict:
    """Three events after `since` from a log that shares no event with the true one (a replica that lost
    the writes and does not say `reset`): the first one's prev is not the client's eid."""

    def eid(seq: int) -> str:
        return f"d{seed:06x}{seq:09x}"

    events = [
        {
            "type": "event",
            "classroom": "c1",
            "seq": seq,
            "eid": eid(seq),
            "prev": eid(seq - 1),
            "epoch": epoch,
            "id": None,
            "from": "ghost",
            "role": "student",
            "name": "Ghost",
            "event": "stroke",
            "data": {"ghost": seq},
            "ts": 0,
        }
        for seq in range(since + 1, since + 4)
    ]
    return {
        "type": "sync",
        "events": events,
        "last": since + 3,
        "more": False,
        "reset": False,
        "epoch": epoch,
    }


class Responder:
    """Answers the client's frames as the script says, at each moment; counts what it was asked."""

    def __init__(self, script: dict):
        self.script = script
        self.version = {"chain": 0, "first": 1, "last": 0}
        self.syncs = HONEST
        self.pongs = "honest"
        self.sync_times: list[list] = []  # [ms, whether it followed a page with `more`]
        self.pongs_sent = 0
        self._more_from: int | None = None

    def apply(self, kind: str, arg: object) -> None:
        if kind == "log":
            assert isinstance(arg, dict)
            self.version = arg
        elif kind == "syncs":
            assert isinstance(arg, dict)
            self.syncs = arg
        elif kind == "pongs":
            assert isinstance(arg, str)
            self.pongs = arg

    def answer(self, frame: dict, now: int) -> list[dict]:
        chain = self.script["chains"][self.version["chain"]]
        action = frame.get("action")
        if action == "sync":
            self.sync_times.append([now, frame.get("since") == self._more_from])
            self._more_from = None
            mode = self.syncs["mode"]
            if mode == "honest":
                page = honest_page(chain, self.version, frame, self.script["options"]["pageSize"])
                self._more_from = page["last"] if page["more"] else None
                return [page]
            if mode == "diverge":
                if not frame.get("sinceEid"):
                    return []  # a page that does not link needs an eid to not link to
                return [divergent_page(self.script["seed"], chain["epoch"], frame.get("since", 0))]
            if mode in ("internal", "rate_limited"):
                error = {"type": "error", "code": mode, "message": "refused", "id": None, "action": "sync"}
                if mode == "rate_limited":
                    error["retryAfterMs"] = self.syncs["retryAfterMs"]
                return [error]
            return []  # silent
        if action == "ping":
            if self.pongs == "drop":
                return []
            self.pongs_sent += 1
            if not isinstance(frame.get("seq"), int):
                return [{"type": "pong", "ts": now}]
            first, last = self.version["first"], self.version["last"]
            epoch = chain["epoch"] if last >= first else ""
            behind = max(0, last - frame["seq"])
            return [{"type": "pong", "ts": now, "behind": behind, "last": last, "epoch": epoch}]
        return []


# -- the guarantee ----------------------------------------------------------------------------------

_FIELDS = ("seq", "eid", "prev", "epoch", "id", "from", "role", "event", "data", "ts")


def _retained(script: dict, version: dict) -> tuple[dict, list[dict]]:
    chain = script["chains"][version["chain"]]
    return chain, chain["events"][version["first"] - 1 : version["last"]]


def _matches(script: dict, version: dict, view: list[dict]) -> bool:
    """The view is the server's log: it ends at the log's last event, covers every retained one, and
    everything in it is that chain's (the events retention trimmed included)."""
    chain, retained = _retained(script, version)
    if not retained:
        return not view
    start = view[0]["seq"] if view else version["last"] + 1
    return start <= version["first"] and [e["eid"] for e in view] == [
        e["eid"] for e in chain["events"][start - 1 : version["last"]]
    ]


def sync_allowance(script: dict, outcome: dict, start: int = 0, end: int | None = None) -> int:
    """How many syncs a client may send in [start, end): one per connection, per event frame and per pong
    (each can reveal a gap or a divergence), the `more` follow-ups, and per window of bad answers what its
    back-off (or `retryAfterMs`, or the sync timeout) allows. A client that syncs per round trip while
    pages keep diverging sends one every `rttMs`: hundreds per window."""
    end = script["endAt"] if end is None else end
    options = script["options"]

    def within(times: list[int]) -> int:
        return sum(1 for t in times if start <= t < end)

    allowance = 3
    allowance += 3 * within(outcome["connectionTimes"])
    allowance += 2 * within(outcome["deliveryTimes"]) + 2 * within(outcome["pongTimes"])
    allowance += sum(1 for t, follow_up in outcome["syncTimes"] if follow_up and start <= t < end)
    for a, b, answer in script["syncWindows"]:
        span = max(0, min(b, end) - max(a, start))
        if not span:
            continue
        mode = answer["mode"]
        if mode in ("diverge", "internal"):
            base, cap = options["backoffBaseMs"], options["backoffCapMs"]
            allowance += 2 + math.ceil(math.log2(span / base + 1)) + math.ceil(span / cap)
        elif mode == "rate_limited":
            allowance += 2 + math.ceil(span / answer["retryAfterMs"])
        else:
            allowance += 2 + math.ceil(span / options["syncTimeoutMs"])
    return allowance


def check_guarantee(script: dict, outcome: dict) -> None:
    """`outcome`: what a driver saw. `segments`: the events the client handed its application, split at
    each reset; `snapshot`: where it was at the end of the quiet phase; the times of connections,
    deliveries, pongs and syncs (with whether each followed a page with `more`)."""
    ever = {(e["epoch"], e["seq"], e["eid"]): e for chain in script["chains"] for e in chain["events"]}
    segments = outcome["segments"]
    for n, segment in enumerate(segments):
        for event in segment:
            true = ever.get((event.get("epoch"), event.get("seq"), event.get("eid")))
            assert true is not None and all(event.get(f) == true[f] for f in _FIELDS), (
                f"(a) segment {n}: handed an event that was never in the log: {event}"
            )
        for before, after in itertools.pairwise(segment):
            assert (after["seq"], after["prev"], after["epoch"]) == (
                before["seq"] + 1,
                before["eid"],
                before["epoch"],
            ), f"(a) segment {n}: the chain breaks between {before} and {after}"
        assert len({e["eid"] for e in segment}) == len(segment), f"(b) segment {n}: an event handed twice"
    if segments[0]:
        assert (segments[0][0]["seq"], segments[0][0]["prev"]) == (1, ""), "(a) before any reset, from seq 1"

    snapshot = outcome["snapshot"]
    quiet_view = segments[snapshot["segment"]][: snapshot["length"]]
    version = script["quietVersion"]
    chain, retained = _retained(script, version)
    # Without a new event nothing can tell a client ahead of a regressed log (same epoch) that it is, nor
    # one of an emptied log: only those may still differ. Every client behind is told by a pong.
    undetectable = not retained or (
        bool(quiet_view)
        and quiet_view[-1]["epoch"] == chain["epoch"]
        and quiet_view[-1]["seq"] >= version["last"]
    )
    assert undetectable or _matches(script, version, quiet_view), (
        f"(c) after the quiet honest phase the view ({_ends(quiet_view)}) is not the log "
        f"({_ends(retained)}, last {version['last']})"
    )
    _final_chain, final_retained = _retained(script, script["finalVersion"])
    assert _matches(script, script["finalVersion"], segments[-1]), (
        f"(c) at the end the view ({_ends(segments[-1])}) is not the log ({_ends(final_retained)})"
    )

    syncs = [t for t, _ in outcome["syncTimes"]]
    assert len(syncs) <= sync_allowance(script, outcome), (
        f"(d) {len(syncs)} syncs, more than the {sync_allowance(script, outcome)} allowed"
    )
    for a, b, answer in script["syncWindows"]:
        if answer["mode"] in ("diverge", "internal"):
            sent = sum(1 for t in syncs if a <= t < b)
            allowed = sync_allowance(script, outcome, a, b)
            assert sent <= allowed, (
                f"(d) {sent} syncs in {b - a} ms of {answer['mode']} answers, allowed {allowed}"
            )


def _ends(view: list[dict]) -> str:
    if not view:
        return "empty"
    return f"seq {view[0]['seq']}..{view[-1]['seq']}, epoch {view[-1]['epoch']}, last eid {view[-1]['eid']}"
