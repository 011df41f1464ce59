"""One authenticated user against the system (issue 11, "abuse runs"): many sockets, maximum-size events far
past the rate, `sync`/`who` storms; meanwhile a bystander classroom keeps talking and measures what it gets.

The abuser speaks the protocol with raw WebSockets (no client library to slow it down). Asserted: the 6th
connection is refused; no connection of the abuser gets more than its rate; the flooded classroom's log
keeps to its byte budget; the bystanders lose nothing (every event acknowledged and applied once, in order).
Figures: what the abuser sent and got back, the flooded classroom's Redis memory, and the bystanders'
latency before and during the abuse, measured in the same run.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import time
from collections import Counter
from urllib.parse import urlencode

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.load import percentile
from classwire.classroom_store import ClassroomStore
from classwire.classroom_store import Member as ClasswireMember
from classwire.settings import Limits
from tests.prove.harness import Member, ack_key, catch_up_all, key, member, server_log

LIMITS = Limits()  # what the local system runs with
PAD = "x" * (LIMITS.max_data_bytes - 64)  # a maximum-size event
FLOOD_RATE = 100.0  # frames/s per abusing socket: five times the send rate


def sync_cost(client, classroom: str) -> float:
    """What one sync page of a log of maximum-size events costs Redis (the storm's request)."""
    store = ClassroomStore(client, Limits(read_rate_per_second=1e6, read_rate_burst=10**6))
    reader = ClasswireMember("abuse-probe", classroom, "probe", "student")
    times = []
    for _ in range(20):
        started = time.perf_counter()
        store.sync(reader, 0, "", "", 1000, 32 * 1024 - 256)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def test_one_user_cannot_hurt_another_classroom(system, sizes, figures):
    flooded, calm = f"flooded-{secrets.token_hex(2)}", f"calm-{secrets.token_hex(2)}"
    url = system.websocket_url
    token = system.token("mallory", flooded, "student")
    got: Counter[str] = Counter()

    def address() -> str:
        return f"{url}?{urlencode({'token': token, 'classroom': flooded})}"

    async def read_all(ws, admitted: Counter, prefix: str) -> None:
        async for raw in ws:
            frame = json.loads(raw) if raw else {}
            kind = frame.get("type")
            if kind == "event" and str(frame.get("id")).startswith(prefix):  # this socket's own events
                admitted["sends"] += 1
                got["events admitted"] += 1
            elif kind == "error":
                got[f"error {frame.get('code')} ({frame.get('action')})"] += 1
            elif kind in ("sync", "roster", "pong"):
                got[f"{kind} answered"] += 1

    async def abusive_socket(index: int, role: str, stop: asyncio.Event, worst: list[float]) -> None:
        n, prefix = 0, f"s{index}-"
        while not stop.is_set():
            admitted: Counter = Counter()
            try:
                async with connect(address(), max_size=2**22, open_timeout=20, ping_interval=None) as ws:
                    got["connections opened"] += 1
                    opened = time.monotonic()
                    reader = asyncio.create_task(read_all(ws, admitted, prefix))
                    try:
                        while not stop.is_set() and not reader.done():
                            n += 1
                            frame: dict[str, object]
                            if role == "send":
                                frame = {
                                    "action": "send",
                                    "id": f"{prefix}{n}",
                                    "event": "stroke",
                                    "data": {"pad": PAD},
                                }
                            else:
                                frame = {"action": ("sync", "who", "ping")[n % 3], "since": 0, "limit": 1000}
                            await ws.send(json.dumps(frame))
                            got[f"{role} frames sent"] += 1
                            await asyncio.sleep(1 / FLOOD_RATE)
                    except ConnectionClosed:
                        pass
                    finally:
                        reader.cancel()
                    if not stop.is_set():
                        got["connections closed by the server"] += 1
                    lived = time.monotonic() - opened
                    # The rate held: never more than the burst plus the rate over the connection's life.
                    worst.append(admitted["sends"] - (LIMITS.rate_burst + LIMITS.rate_per_second * lived))
            except InvalidStatus as refused:
                got[f"connect refused {refused.response.status_code}"] += 1
                await asyncio.sleep(0.2)
            except (ConnectionClosed, OSError, TimeoutError):
                got["connections lost while opening"] += 1
                await asyncio.sleep(0.2)

    async def sixth_connection_refused() -> int:
        sockets = [await connect(address(), open_timeout=20, ping_interval=None) for _ in range(5)]
        try:
            await connect(address(), open_timeout=20, ping_interval=None)
            return 101
        except InvalidStatus as refused:
            return refused.response.status_code
        finally:
            for ws in sockets:
                await ws.close()
            await asyncio.sleep(1)  # their $disconnect runs

    async def scenario() -> None:
        status = await sixth_connection_refused()
        figures.record("abuse", "the user's 6th connection to one classroom", status, note="must be 429")
        assert status == 429

        bystanders = [
            member(system, f"b{n}", calm, "teacher" if n == 0 else "student")
            for n in range(sizes.abuse_bystanders)
        ]
        latencies: dict[str, list[float]] = {"before": [], "during": []}
        phase = ["before"]

        def measure(held: Member):
            def on_event(event: dict) -> None:
                held.applied(event)
                if event.get("event") == "chat" and held.user != "b0":
                    latencies[phase[0]].append(time.time() * 1000 - event["data"]["t"])

            return on_event

        for held in bystanders:
            held.client.on_event = measure(held)
            await held.client.start(timeout=60)
        acked: list = []

        async def talk(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                acked.append(ack_key(await bystanders[0].client.send("chat", {"t": time.time() * 1000})))
                await asyncio.sleep(0.2)

        try:
            await talk(sizes.abuse_seconds)
            phase[0] = "during"
            stop = asyncio.Event()
            worst: list[float] = []
            abusers = [
                asyncio.create_task(abusive_socket(index, role, stop, worst))
                for index, role in enumerate(("send", "send", "send", "storm", "storm"))
            ]
            await talk(sizes.abuse_seconds)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*abusers), 60)
            await catch_up_all(bystanders)
            redis_client = system.redis_client()
            try:
                log = [key(e) for e in server_log(redis_client, calm)]
                memory = sum(
                    redis_client.memory_usage(k) or 0
                    for k in redis_client.scan_iter(match=f"cw:{{{flooded}}}:*")
                )
                log_bytes = int(redis_client.hget(f"cw:{{{flooded}}}:meta", "bytes") or 0)
                sync_ms = sync_cost(redis_client, flooded)
            finally:
                redis_client.close()
        finally:
            await asyncio.gather(*(m.client.close() for m in bystanders), return_exceptions=True)

        for name, value in sorted(got.items()):
            figures.record("abuse", f"abuser: {name}", value)
        figures.record(
            "abuse",
            "abuser: most sends admitted on one connection beyond burst + rate x its life",
            round(max(worst), 1),
        )
        figures.record(
            "abuse", "flooded classroom: Redis memory of its keys", round(memory / 2**20, 2), "MiB"
        )
        figures.record(
            "abuse",
            "flooded classroom: frame bytes in its log",
            round(log_bytes / 2**20, 2),
            "MiB",
            f"budget {LIMITS.log_max_bytes / 2**20:.0f} MiB",
        )
        figures.record(
            "abuse",
            "flooded classroom: one sync page with limit 1000, median of 20",
            round(sync_ms, 2),
            "ms",
            "the work is bounded by the page's 32 KB, not by `limit`",
        )
        for name in ("before", "during"):
            values = sorted(latencies[name])
            figures.record(
                "abuse",
                f"bystander latency {name} the abuse, p50 / p99",
                f"{percentile(values, 50):.0f} / {percentile(values, 99):.0f}",
                "ms",
                f"{len(values)} deliveries",
            )
        lost = [m.user for m in bystanders if not set(acked) <= set(m.view())]
        figures.record("abuse", "bystander events acknowledged", len(acked))
        figures.record("abuse", "bystanders missing an acknowledged event", len(lost), note="must be 0")
        assert not lost and all(m.view() == log for m in bystanders)
        assert max(worst) <= 1, "a connection got more than its rate"
        assert log_bytes <= LIMITS.log_max_bytes
        assert got["connections closed by the server"] > 0  # the flooders were shown the door

    asyncio.run(asyncio.wait_for(scenario(), 2 * sizes.abuse_seconds + 240))
