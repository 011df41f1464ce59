"""Faults on the hops the chaos run never cuts (issue 11): Redis replies dropped, delayed past the client's
timeout and cut mid-command between the functions and Redis; `@connections` answering 429, 500 or not at
all; the message function's execution environments killed between an append and its fan-out, and a flusher
killed mid-flush: after its round's posts, before the settle that records them (README, "Batching").

A system of its own, with every fault on at once. Asserted after the run, without forcing any client to
catch up: within a telemetry interval every client has applied every event of its classroom's log on its own
(a member whose post failed learns of it from the next event's gap or from its telemetry pong); every view
equals the log, by (seq, eid, id): nothing lost, nothing twice, nothing out of order; every send was
acknowledged; each send whose invocation was killed is in the log exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import time
from collections import Counter, defaultdict

import pytest

from classwire.classroom_store import _SCRIPTS
from classwire.routes import MESSAGE
from localcloud.gateway import PostFaults
from localcloud.redis_faults import LinkChaos
from localcloud.system import LocalSystem
from tests.prove.harness import Member, ack_key, chain_breaks, key, last_seq, member, server_log, settle

SEED = 11
# What redis-py sends for the settle script (EVALSHA <sha1 of its source>): the fault proxy matches on it.
SETTLE_SHA = hashlib.sha1(_SCRIPTS["settle"].encode()).hexdigest().encode()
TELEMETRY_SECONDS = 1.0  # telemetry pings this often in this run (30 s by default)
REDIS_CHAOS = LinkChaos(
    drop_reply=0.01, reset_mid_request=0.01, delay_reply=0.005, delay_seconds=2.5, seed=SEED
)
POST_CHAOS = PostFaults(throttled=0.02, failed=0.02, hung=0.002, hang_seconds=4.0, seed=SEED)


@pytest.fixture(scope="module")
def faulty(sizes, figures):
    with LocalSystem(
        key=secrets.token_urlsafe(48),
        gateway="process",
        max_concurrency=sizes.max_concurrency,
        redis_faults=REDIS_CHAOS,
        post_faults=POST_CHAOS,
    ) as local:
        yield local


def test_every_hop_failing_at_once(faulty, sizes, figures):
    rng = random.Random(SEED)
    classrooms = [f"faults-{n}" for n in range(sizes.faults_classrooms)]
    acked: dict[str, set] = defaultdict(set)
    killed_ids: list[tuple[str, str]] = []
    counts: Counter[str] = Counter()
    message_function = faulty.manifest.route("send").function
    assert message_function.endswith(MESSAGE.name)

    async def send_loop(held: Member, stop: asyncio.Event, pace: random.Random) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            ack = await held.client.send("stroke", {"n": n, "by": held.user})
            acked[held.classroom].add(ack_key(ack))
            await asyncio.sleep(pace.expovariate(2.0))

    async def kill_after_append(held: Member, n: int) -> None:
        """The reply of this send's script is held back; while its invocation waits for it (the event is
        appended), every message worker is killed. The client resends after its ack timeout."""
        client_id = f"killed-{n}-{secrets.token_hex(2)}"
        faulty.redis_proxy.delay_reply(client_id.encode(), 1.5)
        sending = asyncio.create_task(held.client.send("chat", {"killed": n}, id=client_id))
        await asyncio.sleep(0.5)
        counts["workers killed"] += await asyncio.to_thread(faulty.kill_workers, message_function)
        ack = await asyncio.wait_for(sending, 60)
        acked[held.classroom].add(ack_key(ack))
        killed_ids.append((held.classroom, client_id))

    async def kill_mid_flush() -> None:
        """The next settle (whichever classroom's flusher posts a round next) is held back while every
        message worker is killed: a flusher dead after its posts and before recording them, its lease held
        until it runs out. The round is posted again by the next flusher; its events queued meanwhile too."""
        faulty.redis_proxy.delay_reply(SETTLE_SHA, 1.5)
        for _ in range(200):  # a busy classroom settles every few ms (once its workers are back)
            await asyncio.sleep(0.05)
            if not faulty.redis_proxy.armed(SETTLE_SHA):
                counts["flushers killed mid-flush"] += 1  # its settle is held back now: kill it
                break
        counts["workers killed"] += await asyncio.to_thread(faulty.kill_workers, message_function)

    async def scenario() -> None:
        members = [
            member(
                faulty,
                f"f{n}",
                classrooms[n % len(classrooms)],
                ack_timeout=3.0,
                backoff_cap=2.0,
                telemetry_interval=TELEMETRY_SECONDS,
            )
            for n in range(sizes.faults_clients)
        ]
        try:
            for held in members:
                await held.client.start(timeout=60)
            stop = asyncio.Event()
            senders = [asyncio.create_task(send_loop(m, stop, random.Random(rng.random()))) for m in members]
            started = time.monotonic()
            for n in range(sizes.faults_kills):
                await asyncio.sleep(sizes.faults_seconds / (sizes.faults_kills + 1))
                await kill_after_append(rng.choice(members), n)
                await kill_mid_flush()
            await asyncio.sleep(max(0.0, sizes.faults_seconds - (time.monotonic() - started)))
            stop.set()
            await asyncio.wait_for(asyncio.gather(*senders), 120)
            await settle(faulty, members, classrooms)
            caught_up_in = await wait_until_caught_up(members)
            check(members, caught_up_in)
        finally:
            await asyncio.gather(*(m.client.close() for m in members), return_exceptions=True)

    async def wait_until_caught_up(members: list[Member]) -> float:
        """No client is asked to catch up: a member that missed events must find out by itself."""
        redis_client = faulty.redis_client()
        try:
            started = time.monotonic()
            while True:
                last = {c: last_seq(redis_client, c) for c in classrooms}
                behind = [m for m in members if m.client.last_seq < last[m.classroom]]
                if not behind:
                    return time.monotonic() - started
                assert time.monotonic() - started < 3 * TELEMETRY_SECONDS + 10, (
                    f"{len(behind)} clients still behind: {[(m.user, m.client.last_seq) for m in behind][:5]}"
                )
                await asyncio.sleep(0.1)
        finally:
            redis_client.close()

    def check(members: list[Member], caught_up_in: float) -> None:
        redis_client = faulty.redis_client()
        try:
            logs = {c: server_log(redis_client, c) for c in classrooms}
        finally:
            redis_client.close()
        log_keys = {c: [key(e) for e in logs[c]] for c in classrooms}
        totals: Counter[str] = Counter()
        for held in members:
            for name, value in vars(held.client.stats).items():
                totals[name] += value
        fired = Counter(faulty.redis_proxy.fired)
        mismatched = [m.user for m in members if m.view() != log_keys[m.classroom]]
        repeated = [m.user for m in members if len({s for s, _, _ in m.view()}) != len(m.view())]
        breaks = sum(chain_breaks(epoch) for m in members for epoch in m.epochs)
        lost = sum(len(acked[c] - set(log_keys[c])) for c in classrooms)
        killed_in_log = [sum(1 for e in logs[c] if e["id"] == i) for c, i in killed_ids]
        figures.record("faults", "clients / classrooms", f"{len(members)} / {len(classrooms)}")
        figures.record("faults", "run", sizes.faults_seconds, "s")
        figures.record(
            "faults",
            "Redis faults fired",
            ", ".join(f"{k} {v}" for k, v in sorted(fired.items())),
            note="per request: drop 1 %, reset 1 %, delay 0.5 % (2.5 s, past the 2 s timeout)",
        )
        figures.record(
            "faults",
            "@connections POST faults",
            "429 2 %, 500 2 %, no answer 0.2 %",
            note="per post, seeded; the client retries 429/500 once",
        )
        figures.record("faults", "invocations killed after their append", len(killed_ids))
        figures.record(
            "faults",
            "flushers killed mid-flush",
            counts["flushers killed mid-flush"],
            note="after their round's posts, before its settle; their lease held until it ran out",
        )
        figures.record("faults", "message workers killed", counts["workers killed"])
        figures.record("faults", "sends / acks", f"{totals['sends']} / {totals['acks']}")
        figures.record(
            "faults", "events in the logs", sum(len(v) for v in logs.values()), note="incl. join/leave"
        )
        for name in (
            "live",
            "replayed",
            "resends",
            "reconnects",
            "gap_syncs",
            "syncs",
            "resets",
            "duplicates",
        ):
            figures.record("faults", name, totals[name])
        figures.record(
            "faults", "all clients caught up on their own", round(caught_up_in, 1), "s after settling"
        )
        figures.record("faults", "acknowledged events lost", lost, note="must be 0")
        figures.record("faults", "views different from the log", len(mismatched), note="must be 0")
        figures.record("faults", "views with a repeated seq", len(repeated), note="must be 0")
        figures.record("faults", "chain breaks within an epoch", breaks, note="must be 0")
        figures.record(
            "faults", "killed sends in the log once", f"{killed_in_log.count(1)} / {len(killed_ids)}"
        )
        assert totals["sends"] == totals["acks"]
        assert lost == 0 and not mismatched and not repeated and breaks == 0
        assert killed_in_log == [1] * len(killed_ids) and counts["workers killed"] >= len(killed_ids)
        assert counts["flushers killed mid-flush"] == len(killed_ids)
        assert sum(fired.values()) > 0

    asyncio.run(asyncio.wait_for(scenario(), sizes.faults_seconds + 300))
