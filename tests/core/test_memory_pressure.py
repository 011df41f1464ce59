"""A full cache never stops every classroom at once: with the configured eviction policy the least recently
used keys go (idle classrooms' logs first) and a live classroom keeps writing; a classroom whose log went
is reset (new epoch), never silently continued. With `noeviction` the same flood stops everyone."""

from __future__ import annotations

import itertools
import json

import pytest
import redis

from classwire.classroom_store import ClassroomStore, Member
from classwire.settings import Limits
from classwire_infra.config import DEFAULT_EVICTION_POLICY
from localcloud.cache import RedisServer

PAD = json.dumps({"pad": "x" * 15_000})
LIMITS = Limits(rate_per_second=1e6, rate_burst=10**6, read_rate_per_second=1e6, read_rate_burst=10**6)
ATTEMPTS = 3  # a write refused for memory is answered `internal`; the client resends it (same id)


REFUSED = []  # every attempt Redis refused for memory, by classroom


def retried(call, classroom: str = ""):
    """A call as a client sees it over a few resends (Redis can refuse one while eviction catches up);
    None if every attempt was refused."""
    for _ in range(ATTEMPTS):
        try:
            return call()
        except redis.exceptions.OutOfMemoryError:
            REFUSED.append(classroom)
    return None


def publish(store: ClassroomStore, sender: Member, client_id: str, data: str):
    return retried(lambda: store.publish(sender, client_id, "chat", data, True), sender.classroom_id)


@pytest.mark.parametrize("policy", [DEFAULT_EVICTION_POLICY, "noeviction"])
def test_memory_pressure_evicts_instead_of_stopping_every_classroom(policy):
    REFUSED.clear()
    with RedisServer(extra=["maxmemory 24mb", f"maxmemory-policy {policy}"]) as server:
        client = server.client()
        store = ClassroomStore(client, LIMITS)
        live = Member("live-1", "live", "amy", "teacher")  # a classroom in session: it pings, it talks
        store.join(live, 0)
        first = store.publish(live, "q0", "chat", '"hello"', True).published
        assert first is not None
        held = [json.loads(first.frames[-1])]
        ended = Member("ended-1", "ended", "ed", "teacher")  # a class that finished an hour ago
        store.join(ended, 0)
        store.publish(ended, "e0", "chat", PAD, True)
        live_writes = []
        for c in range(6):  # ~36 MB of maximum-size frames into a 24 MB cache
            mallory = Member(f"flood-{c}", f"flood-{c}", "mallory", "student")
            retried(lambda mallory=mallory: store.join(mallory, 0))
            for n in range(400):
                publish(store, mallory, f"m{n}", PAD)
                if n % 50 == 0:
                    retried(lambda: store.admit(live))  # its members' keep-alives
            live_writes.append(publish(store, live, f"q{c + 1}", f'"still here {c}"'))
        # Whatever the flood left free, fill it: the cache is full now.
        for n in range(64):
            try:
                client.set(f"filler:{n}", "x" * 2**20)
            except redis.exceptions.OutOfMemoryError:
                break
        if policy == "noeviction":
            # A full cache refuses every classroom's writes, the live one's too.
            assert REFUSED and publish(store, live, "after-fill", '"anyone?"') is None
            return
        live_writes.append(publish(store, live, "after-fill", '"still here"'))
        stats = client.info("stats")
        assert isinstance(stats, dict) and stats["evicted_keys"] > 0
        # Never refused for memory: appended, or (its registry entry evicted) told it is no longer a member,
        # whereupon the server closes it and its client joins again.
        assert all(result is not None for result in live_writes)
        assert all(result.status in ("ok", "not_member") for result in live_writes)
        live_writes = [result for result in live_writes if result.status == "ok"]
        # The finished class went first.
        assert not client.exists("cw:{ended}:log")
        # What the live classroom's members applied is one chain, or a new epoch they are told to reset to.
        held += [json.loads(result.published.frames[-1]) for result in live_writes]
        for before, after in itertools.pairwise(held):
            if after["epoch"] == before["epoch"]:
                assert after["seq"] == before["seq"] + 1 and after["prev"] == before["eid"]
            else:
                assert after["seq"] == 1
                page = store.sync(live, before["seq"], before["eid"], before["epoch"], 100, 30_000)
                assert page.reset and page.epoch == held[-1]["epoch"]
        client.close()
