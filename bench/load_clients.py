"""One load-generating process: `python -m bench.load_clients` with a JSON plan on stdin's first line.

It connects its clients, prints `READY {...}`, waits for `GO <epoch>` on stdin, sends each classroom's
persistent events on a fixed schedule for the run, prints `PROGRESS {...}` every 2 s, then waits for the
last acknowledgements, catches every client up and prints `RESULT {...}` (latencies in ms, loss,
duplicates). Each event's data carries its send time; every member measures its delivery on the same
machine clock.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import NotRequired, TypedDict, cast

from classwire_client import ClasswireClient


class Member(TypedDict):
    classroom: str
    user: str
    token: str


class LoadPlan(TypedDict):
    """The plan `bench.load.run_load` writes on this process's stdin's first line."""

    url: str
    seconds: float
    members: list[Member]
    senders: list[int]  # indexes into members
    rate_per_sender: float
    connect_parallel: NotRequired[int]


async def main(plan: LoadPlan) -> dict:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    received: dict[int, set] = {}  # client index -> ids of load events applied
    seqs: dict[int, list] = {}
    acked: dict[str, set] = {}
    counters = {"sent": 0, "acked": 0, "delivered": 0}
    clients: list[ClasswireClient] = []
    rooms: list[str] = []

    def on_event(index: int):
        def handle(event: dict) -> None:
            seqs[index].append(event["seq"])
            data = event.get("data")
            if isinstance(data, dict) and "sentAt" in data:
                latencies.append((time.time() - data["sentAt"]) * 1000)
                received[index].add(event["id"])
                counters["delivered"] += 1

        return handle

    for entry in plan["members"]:
        index = len(clients)
        received[index], seqs[index] = set(), []
        client = ClasswireClient(
            url=plan["url"],
            token=entry["token"],
            classroom=entry["classroom"],
            user_id=entry["user"],
            keep_events=False,
            ack_timeout=10.0,
            on_event=on_event(index),
        )
        clients.append(client)
        rooms.append(entry["classroom"])
        acked.setdefault(entry["classroom"], set())
    gate = asyncio.Semaphore(plan.get("connect_parallel", 25))
    connect_ms: list[float] = []

    async def start(client: ClasswireClient) -> None:
        async with gate:
            started = time.monotonic()
            await client.start(timeout=300)
            connect_ms.append((time.monotonic() - started) * 1000)

    setup_started = time.monotonic()
    await asyncio.gather(*(start(c) for c in clients))
    setup_s = time.monotonic() - setup_started
    print("READY " + json.dumps({"clients": len(clients), "setup_s": setup_s}), flush=True)
    go = float((await loop.run_in_executor(None, sys.stdin.readline)).split()[1])
    await asyncio.sleep(max(0.0, go - time.time()))

    seconds, rate = plan["seconds"], plan["rate_per_sender"]

    async def sender(index: int) -> None:
        client, n = clients[index], 0
        begin = time.monotonic() + (index % 10) / 10 / rate  # spread the senders over the interval
        while (due := begin + n / rate) < begin + seconds:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            n += 1
            counters["sent"] += 1
            ack = await client.send("stroke", {"sentAt": time.time(), "n": n})
            assert ack is not None  # a persistent send returns its acknowledgement
            acked[rooms[index]].add(ack["id"])
            counters["acked"] += 1

    async def progress() -> None:
        while True:
            await asyncio.sleep(2)
            recent = sorted(latencies[-2000:])
            print(
                "PROGRESS "
                + json.dumps(
                    {**counters, "p95_recent": recent[int(0.95 * (len(recent) - 1))] if recent else None}
                ),
                flush=True,
            )

    reporter = asyncio.create_task(progress())
    await asyncio.gather(*(sender(i) for i in plan["senders"]))
    sending_done = time.monotonic()
    # Deliveries still in flight arrive, then every client syncs what it may have missed.
    await asyncio.sleep(1.0)
    catch_gate = asyncio.Semaphore(50)

    async def catch_up(client: ClasswireClient) -> None:
        async with catch_gate:
            await client.catch_up(60)

    await asyncio.gather(*(catch_up(c) for c in clients))
    reporter.cancel()
    lost = sum(len(acked[rooms[i]] - received[i]) for i in range(len(clients)))
    duplicates = sum(len(s) - len(set(s)) for s in seqs.values())  # applied twice (the client drops repeats)
    stats = {
        name: sum(getattr(c.stats, name) for c in clients)
        for name in ("reconnects", "resends", "replayed", "live", "gap_syncs", "resets")
    }
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return {
        "clients": len(clients),
        "setup_s": setup_s,
        "connect_ms": connect_ms,
        "latencies": [round(x, 2) for x in latencies],
        "lost": lost,
        "duplicates": duplicates,
        "expected_deliveries": sum(len(acked[rooms[i]]) for i in range(len(clients))),
        "drain_s": time.monotonic() - sending_done,
        **counters,
        **stats,
    }


if __name__ == "__main__":
    result = asyncio.run(main(cast(LoadPlan, json.loads(sys.stdin.readline()))))
    print("RESULT " + json.dumps(result), flush=True)
