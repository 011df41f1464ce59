"""Batching benchmark: API Gateway messages per delivered event, and the latency batching adds.

    python -m bench.batching [--latency-ms 20] [--quick]

The real core (ClassroomService, its Lua scripts on a real redis-server, the lean @connections client)
posts to the local @connections stub with API Gateway's latency injected. Every send is its own
"invocation" on a pool of workers, each with its own Redis client and @connections client, as Lambda
runs them: an invocation that finds the classroom's lease taken returns at once. Senders send their next
event when the previous one is acknowledged (their own copy arrived), as the client libraries do.

Each scenario runs twice in the same process: connections that joined with `batch=1`, and without (one
frame per event, the path before batching). A message is one POST the stub received; a delivery is one
event reaching one connection. Latency is from the send to the last member's copy.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bench.connections_stub import TEST_REGION, ManagementStub
from bench.fanout import CREDENTIALS
from classwire.classroom import ClassroomService
from classwire.classroom_store import ClassroomStore, Member
from classwire.management_api import FanoutReport, ManagementApi
from classwire.settings import Limits
from localcloud.cache import RedisServer

LIMITS = Limits(rate_per_second=1e6, rate_burst=10**6, read_rate_per_second=1e6, read_rate_burst=10**6)
ACK_TIMEOUT_S = 10.0
TARGET_MESSAGES_PER_DELIVERY = 0.5


class Delivered:
    """@connections that delivers every post at once (the Redis count is what is measured)."""

    def post_each(self, posts):
        return FanoutReport(tuple(c for c, _ in posts), (), ())

    def post_many(self, connection_ids, data):
        return self.post_each([(c, data) for c in connection_ids])

    def delete(self, connection_id):
        return None

    def delete_many(self, connection_ids):
        return None


@dataclass(frozen=True)
class Scenario:
    name: str
    members: int
    senders: int  # members sending persistent strokes back to back (ack-paced)
    events_per_sender: int
    cursor_hz: float = 0.0  # the first sender also moves its cursor (volatile, not ack-paced)
    chat_hz: float = 0.0  # three listeners chat at this rate each


BUSY_ROOM = Scenario(
    "busy room (10 members, 5 sending back to back)", members=10, senders=5, events_per_sender=60
)
LECTURE = Scenario(
    "lecture (300 members, the teacher drawing, 3 chatting)",
    members=300,
    senders=1,
    events_per_sender=60,
    cursor_hz=30.0,
    chat_hz=2.0,
)


@dataclass
class Tally:
    """What the stub saw: every POST, and when each event reached each connection."""

    recipients: dict[str, int] = field(default_factory=dict)  # event id -> connections it goes to
    sent_at: dict[str, float] = field(default_factory=dict)
    done_at: dict[str, float] = field(default_factory=dict)
    arrivals: dict[str, int] = field(default_factory=dict)
    acked: dict[str, threading.Event] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)  # event id -> its sender's connection
    messages: int = 0
    deliveries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    counting: bool = False

    def on_post(self, connection_id: str, body: bytes) -> None:
        frame = json.loads(body)
        events = frame["events"] if frame.get("type") == "events" else [frame]
        now = time.perf_counter()
        with self.lock:
            if not self.counting:
                return
            self.messages += 1
            for event in events:
                event_id = event.get("id")
                if event_id is None or event_id not in self.recipients:
                    continue
                self.deliveries += 1
                self.arrivals[event_id] = self.arrivals.get(event_id, 0) + 1
                if self.arrivals[event_id] == self.recipients[event_id]:
                    self.done_at[event_id] = now
                if connection_id == self.owner.get(event_id):
                    self.acked[event_id].set()

    def expect(self, event_id: str, sender: str, recipients: int) -> threading.Event:
        with self.lock:
            self.recipients[event_id] = recipients
            self.owner[event_id] = sender
            self.sent_at[event_id] = time.perf_counter()
            ack = self.acked[event_id] = threading.Event()
        return ack


def _connect(core: ClassroomService, member: Member, batch: bool) -> None:
    core.connect(member, 0, batch=batch)


def _handle(core: ClassroomService, member: Member, body: str) -> None:
    core.handle(member, body)


def _members(n: int, room: str) -> list[Member]:
    return [Member(f"L0SM9cOF{i:07d}=", room, f"u{i}", "teacher" if i == 0 else "student") for i in range(n)]


def run_scenario(scenario: Scenario, batch: bool, redis_url: str, stub: ManagementStub, tally: Tally) -> dict:
    import redis

    room = f"{'batched' if batch else 'plain'}-{scenario.members}-{time.monotonic_ns()}"
    members = _members(scenario.members, room)
    local = threading.local()

    def core() -> ClassroomService:
        if not hasattr(local, "core"):
            client = redis.Redis.from_url(redis_url)
            api = ManagementApi(stub.endpoint, TEST_REGION, lambda: CREDENTIALS)
            local.core = ClassroomService(ClassroomStore(client, LIMITS), api, LIMITS)
        return local.core

    def invoke(call: Callable[[ClassroomService], object]) -> None:
        call(core())

    with ThreadPoolExecutor(max_workers=24, thread_name_prefix="invocation") as pool:
        for m in members:
            pool.submit(invoke, functools.partial(_connect, member=m, batch=batch)).result()
        tally.counting = True
        stop = threading.Event()
        lost: list[str] = []

        def strokes(sender: Member, n: int) -> None:
            for k in range(scenario.events_per_sender):
                event_id = f"s{n}-{k}"
                ack = tally.expect(event_id, sender.connection_id, scenario.members)
                body = json.dumps(
                    {"action": "send", "id": event_id, "event": "stroke", "data": {"p": [k, k]}}
                )
                pool.submit(invoke, functools.partial(_handle, member=sender, body=body))
                if not ack.wait(ACK_TIMEOUT_S):
                    lost.append(event_id)

        def every(hz: float, sender: Member, event: str, prefix: str, recipients: int) -> None:
            k = 0
            while not stop.wait(1 / hz):
                k += 1
                event_id = f"{prefix}-{k}"
                tally.expect(event_id, sender.connection_id, recipients)
                body = json.dumps({"action": "send", "id": event_id, "event": event, "data": {"x": k}})
                pool.submit(invoke, functools.partial(_handle, member=sender, body=body))

        threads = [threading.Thread(target=strokes, args=(members[n], n)) for n in range(scenario.senders)]
        if scenario.cursor_hz:
            threads.append(
                threading.Thread(
                    target=every,
                    args=(scenario.cursor_hz, members[0], "cursor", "k", scenario.members - 1),
                    daemon=True,
                )
            )
        if scenario.chat_hz:
            for n in (1, 2, 3):
                threads.append(
                    threading.Thread(
                        target=every,
                        args=(scenario.chat_hz, members[-n], "chat", f"c{n}", scenario.members),
                        daemon=True,
                    )
                )
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads[: scenario.senders]:
            thread.join()
        stop.set()
        for thread in threads:
            thread.join(5)
        elapsed = time.perf_counter() - started
        time.sleep(0.5)  # the last rounds land
        tally.counting = False
    with tally.lock:
        strokes_done = [
            (tally.done_at[i] - tally.sent_at[i]) * 1000 for i in tally.done_at if i.startswith("s")
        ]
        undelivered = [i for i in tally.recipients if i not in tally.done_at and not i.startswith("k")]
        result = {
            "events": len(tally.recipients),
            "messages": tally.messages,
            "deliveries": tally.deliveries,
            "messages_per_delivered_event": round(tally.messages / max(tally.deliveries, 1), 3),
            "stroke_latency_ms_p50": round(statistics.median(strokes_done), 1) if strokes_done else None,
            "stroke_latency_ms_p99": round(_percentile(strokes_done, 0.99), 1) if strokes_done else None,
            "events_per_second": round(len(tally.recipients) / elapsed, 1),
            "unacknowledged": len(lost),
            "undelivered": len(undelivered),
        }
        tally.__init__()  # type: ignore[misc]
    return result


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def run(latency_ms: float = 20.0, quick: bool = False) -> dict:
    scenarios = [BUSY_ROOM, LECTURE]
    if quick:
        scenarios = [Scenario(s.name, s.members, s.senders, 15, s.cursor_hz, s.chat_hz) for s in scenarios]
    results: dict = {"latency_ms": latency_ms, "scenarios": {}}
    tally = Tally()
    with (
        RedisServer() as server,
        ManagementStub(latency_ms=latency_ms, record=False, on_post=tally.on_post) as stub,
    ):
        for scenario in scenarios:
            plain = run_scenario(scenario, False, server.url, stub, tally)
            batched = run_scenario(scenario, True, server.url, stub, tally)
            results["scenarios"][scenario.name] = {
                "one_frame_per_event": plain,
                "batched": batched,
                "messages_ratio": round(
                    batched["messages_per_delivered_event"] / plain["messages_per_delivered_event"], 3
                ),
                "added_latency_ms_p50": _difference(batched, plain, "stroke_latency_ms_p50"),
                "added_latency_ms_p99": _difference(batched, plain, "stroke_latency_ms_p99"),
            }
    return results


def _difference(a: dict, b: dict, key: str) -> float | None:
    if a[key] is None or b[key] is None:
        return None
    return round(a[key] - b[key], 1)


def table(results: dict) -> str:
    lines = [
        f"API Gateway latency {results['latency_ms']:g} ms. Messages per delivered event (target ≤ "
        f"{TARGET_MESSAGES_PER_DELIVERY} in the busy room); stroke latency, send to the last member's copy.",
        "",
        "| scenario | path | events | messages | deliveries | messages/delivery | p50 ms | p99 ms | unacked | undelivered |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["scenarios"].items():
        for path in ("one_frame_per_event", "batched"):
            x = r[path]
            lines.append(
                f"| {name} | {path.replace('_', ' ')} | {x['events']} | {x['messages']} | {x['deliveries']} | "
                f"{x['messages_per_delivered_event']} | {x['stroke_latency_ms_p50']} | "
                f"{x['stroke_latency_ms_p99']} | {x['unacknowledged']} | {x['undelivered']} |"
            )
        lines.append(
            f"| {name} | batched ÷ one frame | | | | {r['messages_ratio']} | "
            f"{r['added_latency_ms_p50']:+} | {r['added_latency_ms_p99']:+} | | |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(table(run(args.latency_ms, args.quick)))


if __name__ == "__main__":
    main()
