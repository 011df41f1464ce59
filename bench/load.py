"""Load on the local system: many clients over many classrooms, each classroom sending persistent events at
a steady rate; delivery latency and loss (used by `tests/prove/test_load.py` and `make bench`).

The clients run in `processes` separate processes (`bench/load_clients.py`): one Python process cannot
drive 1,000 WebSockets beside the gateway on two cores. Each process gets whole classrooms; latency is
measured from the send time carried in the event to its delivery at each member, on one machine clock.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from classwire_infra.paths import ROOT

if TYPE_CHECKING:
    from bench.load_clients import LoadPlan

SENDERS_PER_CLASSROOM = 5
TOTALS = (
    "sent",
    "acked",
    "delivered",
    "lost",
    "duplicates",
    "expected_deliveries",
    "reconnects",
    "resends",
    "replayed",
    "gap_syncs",
    "resets",
)


def run_load(
    url: str,
    token: Callable[[str, str], str],
    *,
    connections: int,
    classrooms: int,
    events_per_second: float,
    seconds: float,
    processes: int,
    progress: Callable[[str], None] = print,
) -> dict:
    """Runs the load; returns the totals (TOTALS), `latencies` and `connect_ms` (sorted, ms) and `setup_s`.

    `token(user, classroom)` issues a student token granting that classroom."""
    rooms = [f"load-{n}" for n in range(classrooms)]
    per_room = connections // classrooms
    plans: list[LoadPlan] = [
        {
            "url": url,
            "seconds": seconds,
            "members": [],
            "senders": [],
            "rate_per_sender": events_per_second / SENDERS_PER_CLASSROOM,
        }
        for _ in range(processes)
    ]
    for r, room in enumerate(rooms):
        plan = plans[r % len(plans)]
        for m in range(per_room):
            if m < SENDERS_PER_CLASSROOM:
                plan["senders"].append(len(plan["members"]))
            user = f"{room}-u{m}"
            plan["members"].append({"classroom": room, "user": user, "token": token(user, room)})

    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.load_clients"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        for _ in plans
    ]
    ready: dict[int, dict] = {}
    latest: dict[int, dict] = {}
    results: dict[int, dict] = {}

    def read(index: int, worker: subprocess.Popen[str]) -> None:
        assert worker.stdout is not None  # stdout=PIPE
        for line in worker.stdout:
            kind, _, payload = line.partition(" ")
            if kind == "READY":
                ready[index] = json.loads(payload)
            elif kind == "PROGRESS":
                latest[index] = json.loads(payload)
            elif kind == "RESULT":
                results[index] = json.loads(payload)
            else:
                progress(f"  [load w{index}] {line.rstrip()}")

    readers = [threading.Thread(target=read, args=(i, w), daemon=True) for i, w in enumerate(workers)]
    try:
        setup_started = time.monotonic()
        for worker, plan, reader in zip(workers, plans, readers, strict=False):
            reader.start()
            assert worker.stdin is not None  # stdin=PIPE
            worker.stdin.write(json.dumps(plan) + "\n")
        _wait_until(lambda: len(ready) == len(workers) or any(w.poll() is not None for w in workers), 600)
        if len(ready) != len(workers):
            raise RuntimeError("a load process failed while connecting")
        setup_s = time.monotonic() - setup_started
        progress(f"  [load] {connections} connections open after {setup_s:.1f} s")
        go = time.time() + 1
        for worker in workers:
            assert worker.stdin is not None  # stdin=PIPE
            worker.stdin.write(f"GO {go}\n")
        run_started, reported = time.monotonic(), 0.0
        while len(results) < len(workers):
            if any(w.poll() is not None and i not in results for i, w in enumerate(workers)):
                time.sleep(0.5)  # the reader may still be taking the last line
                if len(results) != len(workers):
                    raise RuntimeError("a load process died")
            time.sleep(0.25)
            elapsed = time.monotonic() - run_started
            if elapsed > seconds + 600:
                raise TimeoutError("load run did not finish")
            if elapsed - reported >= 5 and latest and len(results) < len(workers):
                reported = elapsed
                total = {k: sum(p[k] for p in latest.values()) for k in ("sent", "acked", "delivered")}
                p95 = max((p["p95_recent"] or 0) for p in latest.values())
                progress(
                    f"  [load] t={elapsed:5.1f}s sent={total['sent']} acked={total['acked']} "
                    f"delivered={total['delivered']} p95(recent)={p95:.0f} ms"
                )
    finally:
        for worker in workers:
            if worker.poll() is None:
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    worker.kill()

    return {
        **{k: sum(r[k] for r in results.values()) for k in TOTALS},
        "latencies": sorted(x for r in results.values() for x in r["latencies"]),
        "connect_ms": sorted(x for r in results.values() for x in r["connect_ms"]),
        "setup_s": setup_s,
    }


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN for none)."""
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def _wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.1)
