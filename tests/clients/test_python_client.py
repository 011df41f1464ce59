"""Unit tests of the Python client (clients/python/classwire_client/) against a scripted server on fake
time (tests/clients/fake_network.py): the protocol changes of issue 11, one behaviour per test."""

from __future__ import annotations

import asyncio
import json

import pytest

import classwire_client
from classwire_client import ClasswireClient, Refused
from tests.clients.fake_network import FakeConnection, FakeNetwork, run_virtual

E1, E2 = "3fa9c01d22b7e810", "77aa01b2c3d4e5f6"


def event(seq: int, epoch: str = E1, tag: str = "a", **fields) -> dict:
    return {
        "type": "event", "classroom": "c1", "seq": seq, "eid": f"{tag}{seq}",
        "prev": f"{tag}{seq - 1}" if seq > 1 else "", "epoch": epoch, "id": None, "from": "bob",
        "role": "student", "name": "Bob", "event": "stroke", "data": {"n": seq}, "ts": 0, **fields,
    }  # fmt: skip


def page(events: list[dict], *, epoch: str = E1, more: bool = False, reset: bool = False, last=None) -> dict:
    last = last if last is not None else (events[-1]["seq"] if events else 0)
    return {"type": "sync", "events": events, "last": last, "more": more, "reset": reset, "epoch": epoch}


def play(scenario, **options) -> None:
    """Runs `scenario(client, network)` on fake time with a client whose connections are fake."""

    async def main() -> None:
        network = FakeNetwork()
        with network.installed():
            client = ClasswireClient(
                "ws://fake/local", "token", "c1", user_id="alice", telemetry_interval=None, **options
            )
            try:
                await scenario(client, network)
            finally:
                await client.close()

    run_virtual(main())


async def settle(seconds: float = 0.001) -> None:
    await asyncio.sleep(seconds)


async def connected(
    client: ClasswireClient, network: FakeNetwork, history=(), **page_fields
) -> FakeConnection:
    """Starts the client and answers its first sync with `history`."""
    await client.start()
    await settle()
    assert network.current.frames("sync"), "every connection starts with a sync"
    network.current.deliver(page(list(history), **page_fields))
    await settle()
    return network.current


def now() -> float:
    return asyncio.get_running_loop().time()


# -- epoch --------------------------------------------------------------------------------------------


def test_a_restarted_log_at_seq_1_is_not_dropped_as_a_duplicate_of_seq_5000():
    async def scenario(client, network):
        ws = await connected(client, network, [event(4999), event(5000)], reset=True)
        assert client.last_seq == 5000
        ws.deliver(event(1, epoch=E2, tag="b"))  # the log restarted: seq 1, prev ""
        await settle(1.0)
        assert client.stats.duplicates == 0 and len(ws.frames("sync")) == 2
        resync = ws.frames("sync")[-1]
        assert resync == {"action": "sync", "since": 5000, "sinceEid": "a5000", "epoch": E1}
        ws.deliver(page([event(1, epoch=E2, tag="b"), event(2, epoch=E2, tag="b")], epoch=E2, reset=True))
        await settle()
        assert [e["eid"] for e in client.events] == ["b1", "b2"]
        # The first page's reset cost a client that held nothing nothing: not counted.
        assert (client.last_seq, client.epoch, client.stats.resets) == (2, E2, 1)

    play(scenario)


def test_the_epoch_comes_from_sync_pages_and_a_pong_of_another_epoch_resyncs():
    async def scenario(client, network):
        ws = await connected(client, network, [event(1), event(2)])
        assert client.epoch == E1
        ws.deliver({"type": "pong", "ts": 0, "behind": 0, "last": 2, "epoch": E2})
        await settle(1.0)
        assert ws.frames("sync")[-1] == {"action": "sync", "since": 2, "sinceEid": "a2", "epoch": E1}

    play(scenario)


# -- telemetry pongs ----------------------------------------------------------------------------------


def test_a_behind_pong_syncs_after_the_gap_time_only_if_still_behind():
    async def scenario(client, network):
        ws = await connected(client, network, [event(1)])
        # Behind by one whose frame is in flight: it arrives within the gap time, no sync.
        ws.deliver({"type": "pong", "ts": 0, "behind": 1, "last": 2, "epoch": E1})
        await settle(0.1)
        ws.deliver(event(2))
        await settle(1.0)
        assert len(ws.frames("sync")) == 1
        # Behind by two that never come (their frames were lost): sync once the gap time has passed.
        ws.deliver({"type": "pong", "ts": 0, "behind": 2, "last": 4, "epoch": E1})
        await settle(client.gap_timeout - 0.01)
        assert len(ws.frames("sync")) == 1
        await settle(0.02)
        assert ws.frames("sync")[-1] == {"action": "sync", "since": 2, "sinceEid": "a2", "epoch": E1}
        assert client.behind == 2 and client.stats.behind_syncs == 1

    play(scenario)


def test_a_pong_whose_log_ends_before_this_clients_last_seq_resyncs_and_is_reset():
    async def scenario(client, network):
        ws = await connected(client, network, [event(1), event(2), event(3)])
        # A failover lost seq 3 in a quiet classroom: the pong says the log ends at 2.
        ws.deliver({"type": "pong", "ts": 0, "behind": 0, "last": 2, "epoch": E1})
        await settle(0.01)
        assert ws.frames("sync")[-1] == {"action": "sync", "since": 3, "sinceEid": "a3", "epoch": E1}
        assert client.stats.ahead_syncs == 1

    play(scenario)


# -- divergence back-off -----------------------------------------------------------------------------


def test_resyncs_that_keep_diverging_back_off_exponentially_up_to_the_cap_and_a_linking_page_resets():
    sync_times: list[float] = []
    linking = {"on": False}

    def server(ws: FakeConnection, frame: dict) -> None:
        if frame["action"] != "sync" or len(sync_times) > 40:
            return
        sync_times.append(now())
        since = frame["since"]
        if linking["on"]:  # noqa: SIM108 (the else branch needs its comment)
            reply = page([], last=since)
        else:  # a lagging replica that never says reset: its pages do not link
            reply = page([event(since + 1, tag="x")])
        asyncio.get_running_loop().call_later(0.01, ws.deliver, reply)

    async def scenario(client, network):
        ws = await connected(client, network, [event(1), event(2)])
        network.server = server
        start = now()
        ws.deliver(event(3, tag="x"))  # prev "x2": does not link
        await settle(8.0)
        # From the divergence, then from each answer (10 ms after its sync) to the next sync.
        waits = [
            round(b - a, 2)
            for a, b in zip([start, *(t + 0.01 for t in sync_times)], sync_times, strict=False)
        ]
        assert waits[:7] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0], waits
        linking["on"] = True
        await settle(2.0)
        quiet = len(sync_times)
        await settle(5.0)
        assert len(sync_times) == quiet, "a page that links ends the resyncs"
        ws.deliver(event(3, tag="y"))  # a new divergence starts the back-off from the base again
        before = now()
        await settle(1.0)
        assert round(sync_times[-1] - before, 2) == 0.1

    play(scenario, backoff_base=0.1, backoff_cap=1.0)


# -- lost and refused replies ------------------------------------------------------------------------


def test_a_lost_sync_reply_is_asked_again_after_sync_timeout():
    async def scenario(client, network):
        await client.start()
        await settle(9.9)
        ws = network.current
        assert len(ws.frames("sync")) == 1
        await settle(0.2)
        assert ws.frames("sync") == [{"action": "sync", "since": 0, "sinceEid": ""}] * 2
        ws.deliver(page([event(1)]))
        await settle()
        assert client.last_seq == 1 and client.stats.sync_timeouts == 1

    play(scenario)


def test_a_refused_sync_is_retried_after_retry_after_ms_or_the_back_off():
    async def scenario(client, network):
        await client.start()
        await settle()
        ws = network.current
        error = {"type": "error", "message": "x", "id": None, "action": "sync"}
        ws.deliver({**error, "code": "rate_limited", "retryAfterMs": 500})
        await settle(0.49)
        assert len(ws.frames("sync")) == 1, "not at once"
        await settle(0.02)
        assert len(ws.frames("sync")) == 2
        ws.deliver({**error, "code": "internal"})  # no retryAfterMs: the back-off (2nd failure: 2 * base)
        await settle(0.19)
        assert len(ws.frames("sync")) == 2
        await settle(0.02)
        assert len(ws.frames("sync")) == 3
        ws.deliver(page([event(1)]))
        await settle()
        assert client.last_seq == 1 and client.stats.sync_errors == 2

    play(scenario, backoff_base=0.1)


def test_who_is_asked_again_up_to_three_times_then_times_out():
    async def scenario(client, network):
        ws = await connected(client, network)
        started = now()
        with pytest.raises(TimeoutError):
            await client.who()
        assert ws.frames("who") == [{"action": "who", "after": ""}] * 4
        assert now() - started == pytest.approx(4 * client.who_timeout)

    play(scenario)


def test_a_refused_who_is_retried_after_retry_after_ms():
    async def scenario(client, network):
        ws = await connected(client, network)
        asking = asyncio.ensure_future(client.who())
        await settle()
        ws.deliver(
            {
                "type": "error",
                "code": "rate_limited",
                "message": "x",
                "id": None,
                "retryAfterMs": 300,
                "action": "who",
            }
        )
        await settle(0.29)
        assert len(ws.frames("who")) == 1
        await settle(0.02)
        assert len(ws.frames("who")) == 2
        ws.deliver({"type": "roster", "members": [{"userId": "alice"}], "more": False})
        assert [m["userId"] for m in await asking] == ["alice"]

    play(scenario)


# -- batched frames ----------------------------------------------------------------------------------


def test_an_events_frame_is_applied_as_if_each_event_came_in_its_own_frame():
    volatile: list[dict] = []

    async def scenario(client, network):
        ws = await connected(client, network, [event(1)])
        assert "batch=1" in ws.url
        cursor = {"type": "event", "classroom": "c1", "id": "k1", "from": "bob", "event": "cursor", "ts": 0}
        ws.deliver({"type": "events", "events": [event(3), event(2), cursor, event(2), "junk", None]})
        await settle()
        assert [e["seq"] for e in client.events] == [1, 2, 3]
        assert client.stats.duplicates == 1
        assert [e["id"] for e in volatile] == ["k1"]
        ws.deliver({"type": "events", "events": "not a list"})  # ignored
        await settle()
        assert client.last_seq == 3

    play(scenario, on_volatile=volatile.append)


def test_a_late_joiners_first_page_keeps_the_live_events_that_came_before_it():
    async def scenario(client, network):
        await client.start()
        await settle()
        ws = network.current
        ws.deliver(event(12))  # live, while the first sync (answered from the last clear) is in flight
        await settle()
        ws.deliver(page([event(10), event(11)], reset=True))
        await settle()
        assert [e["seq"] for e in client.events] == [10, 11, 12]
        assert client.stats.resets == 0  # it held nothing: nothing was lost

    play(scenario)


# -- bounded buffer ----------------------------------------------------------------------------------


def test_a_full_reorder_buffer_keeps_the_lowest_seqs_drops_the_rest_and_syncs():
    async def scenario(client, network):
        ws = await connected(client, network, [event(1)])
        for seq in range(3, 9):  # seq 2 is missing
            ws.deliver(event(seq))
        await settle()
        assert sorted(client._buffer) == [3, 4, 5]
        assert len(ws.frames("sync")) == 2, "synced at once, not after the gap time"
        ws.deliver(page([event(seq) for seq in range(2, 9)]))
        await settle()
        assert [e["seq"] for e in client.events] == list(range(1, 9))

    play(scenario, max_buffered=3)


def test_a_buffered_event_that_syncs_do_not_reach_backs_the_gap_syncs_off_and_is_dropped():
    sync_times: list[float] = []

    def server(ws: FakeConnection, frame: dict) -> None:
        if frame["action"] == "sync":  # the log ends at seq 2: seq 5 was a late frame of a log since lost
            sync_times.append(now())
            asyncio.get_running_loop().call_later(0.01, ws.deliver, page([], last=2))

    async def scenario(client, network):
        ws = await connected(client, network, [event(1), event(2)])
        network.server = server
        start = now()
        ws.deliver(event(5))
        await settle(120)
        waits = [
            round(b - a, 2)
            for a, b in zip([start, *(t + 0.01 for t in sync_times)], sync_times, strict=False)
        ]
        assert waits == [0.3, 0.6, 1.2, 2.4, 4.8, 9.6], "gap time, then doubled after each unfilled sync"
        assert client._buffer == {} and client.stats.stale_dropped == 1
        ws.deliver(event(3))
        await settle()
        assert client.last_seq == 3

    play(scenario)


# -- outbox ------------------------------------------------------------------------------------------


def test_an_ack_frame_resolves_the_pending_send_which_is_never_resent():
    async def scenario(client, network):
        ws = await connected(client, network)
        sending = asyncio.ensure_future(client.send("chat", {"text": "hi"}))
        await settle()
        (sent,) = ws.frames("send")
        ws.deliver({"type": "ack", "id": sent["id"], "seq": 42, "epoch": E1})
        assert await asyncio.wait_for(sending, 1) == {"type": "ack", "id": sent["id"], "seq": 42, "epoch": E1}
        await settle(3 * client.ack_timeout)
        assert len(ws.frames("send")) == 1 and client.pending == 0

    play(scenario)


def test_a_send_first_attempted_longer_ago_than_the_resend_window_fails_as_expired():
    async def scenario(client, network):
        ws = await connected(client, network, [event(1)])
        sending = asyncio.ensure_future(client.send("chat", {"text": "hi"}))
        await settle()
        assert len(ws.frames("send")) == 1
        network.down = True
        ws.cut()
        await settle(client.resend_window + 60)  # away for 11 minutes
        network.down = False
        await settle(30)
        again = network.current
        assert again is not ws
        again.deliver(page([]))
        await settle()
        with pytest.raises(Refused) as refused:
            await asyncio.wait_for(sending, 1)
        assert refused.value.status == "expired" and "look for its id" in refused.value.message
        assert again.frames("send") == [] and client.stats.expired == 1

    play(scenario)


def test_after_a_reconnect_the_outbox_head_is_resent_only_once_the_catch_up_sync_finished():
    async def scenario(client, network):
        ws = await connected(client, network, [event(1)])
        first = asyncio.ensure_future(client.send("chat", {"text": "one"}))
        second = asyncio.ensure_future(client.send("chat", {"text": "two"}))
        await settle()
        one = ws.frames("send")[0]
        ws.cut()
        await settle(5)
        again = network.current
        assert [f["action"] for f in again.sent] == ["sync"], "the outbox waits for the catch-up"
        # The first send was appended before the cut: its copy in the sync page acknowledges it.
        again.deliver(page([event(2, id=one["id"], event="chat", data=one["data"], **{"from": "alice"})]))
        await settle()
        assert (await asyncio.wait_for(first, 1))["seq"] == 2
        (two,) = again.frames("send")
        assert two["data"] == {"text": "two"}
        again.deliver(event(3, id=two["id"], event="chat", **{"from": "alice"}))
        assert (await asyncio.wait_for(second, 1))["seq"] == 3
        assert client.stats.resends == 0

    play(scenario)


# -- $connect refusals ---------------------------------------------------------------------------------


def test_a_429_before_being_live_is_refused_from_start():
    async def scenario(client, network):
        network.refusals = [429]
        with pytest.raises(Refused) as refused:
            await client.start()
        assert refused.value.status == 429

    play(scenario)


def test_a_403_after_being_live_ends_the_client_and_fails_its_pending_sends():
    async def scenario(client, network):
        ws = await connected(client, network, [event(1)])
        sending = asyncio.ensure_future(client.send("chat", {"text": "hi"}))
        await settle()
        network.refusals = [403]
        ws.cut()
        with pytest.raises(Refused) as refused:
            await asyncio.wait_for(sending, 30)
        assert refused.value.status == "ended" and client.ended
        attempts = len(network.attempts)
        await settle(120)
        assert len(network.attempts) == attempts, "no reconnect after the class ended"

    play(scenario)


def test_a_429_after_being_live_backs_off_and_reconnects(monkeypatch):
    monkeypatch.setattr(classwire_client.random, "random", lambda: 0.0)
    monkeypatch.setattr(classwire_client.random, "uniform", lambda low, high: low)

    async def scenario(client, network):
        ws = await connected(client, network, [event(1)])
        network.refusals = [429, 429]
        ws.cut()
        await settle(30)
        attempts = network.attempts[1:]
        assert len(attempts) == 3 and not client.ended
        # After each 429: at least half the backoff ceiling, min(cap, base * 2^attempt).
        assert attempts[1] - attempts[0] >= 0.5 * 0.1 * 2**2 - 1e-9
        assert attempts[2] - attempts[1] >= 0.5 * 0.1 * 2**3 - 1e-9
        assert network.current.frames("sync")

    play(scenario)


# -- ended -------------------------------------------------------------------------------------------


def member_event(seq: int, kind: str, role: str, reopened: bool = False, **fields) -> dict:
    data = {"connections": 1, **({"reopened": True} if reopened else {})} if kind == "join" else {}
    return event(seq, event=kind, role=role, data=data, **fields)


@pytest.mark.parametrize(
    ("history", "ended"),
    [
        ([member_event(1, "end", "teacher")], True),
        ([member_event(1, "end", "teacher"), member_event(2, "join", "student")], True),
        # A teacher's own reconnect after its `end` does not reopen the class.
        ([member_event(1, "end", "teacher"), member_event(2, "join", "teacher")], True),
        # The classroom was reopened (a teacher connected with reopen): not ended.
        ([member_event(1, "end", "teacher"), member_event(2, "join", "teacher", reopened=True)], False),
        (
            [
                member_event(1, "end", "teacher"),
                member_event(2, "join", "teacher", reopened=True),
                member_event(3, "end", "teacher"),
            ],
            True,
        ),
    ],
    ids=["end", "end-then-student-join", "end-then-teacher-join", "end-then-reopen", "reopened-then-ended"],
)
def test_a_replayed_history_ends_the_client_once_caught_up_unless_the_class_was_reopened_after_the_end(
    history, ended
):
    async def scenario(client, network):
        await client.start()
        await settle()
        ws = network.current
        sending = asyncio.ensure_future(client.send("chat", {"text": "hi"}))  # waits for the catch-up
        await settle()
        assert ws.frames("send") == []
        ws.deliver(page(history))
        await settle()
        assert client.ended is ended
        if ended:
            with pytest.raises(Refused) as refused:
                await asyncio.wait_for(sending, 1)
            assert refused.value.status == "ended"
            await settle(client.end_grace + 1)
            assert ws.closed, "the client closes a socket the server did not"
            await settle(60)
            assert len(network.attempts) == 1
        else:
            (sent,) = ws.frames("send")
            ws.deliver(event(len(history) + 1, tag="a", id=sent["id"], event="chat", **{"from": "alice"}))
            assert (await asyncio.wait_for(sending, 1))["seq"] == len(history) + 1

    play(scenario)


def test_a_live_end_ends_the_client_at_once():
    async def scenario(client, network):
        ws = await connected(client, network, [event(1)])
        ending = asyncio.ensure_future(client.send("end", {}))
        after = asyncio.ensure_future(client.send("chat", {"text": "too late"}))
        await settle()
        (sent,) = ws.frames("send")
        ws.deliver(member_event(2, "end", "teacher", id=sent["id"]) | {"from": "alice"})
        await settle()
        assert client.ended
        assert (await asyncio.wait_for(ending, 1))["seq"] == 2
        with pytest.raises(Refused) as refused:
            await asyncio.wait_for(after, 1)
        assert refused.value.status == "ended"
        ws.close_from_server()
        await settle(60)
        assert len(network.attempts) == 1
        with pytest.raises(Refused):
            await client.send("chat", {})

    play(scenario)


def test_a_teacher_asks_to_reopen_on_its_first_connection_only_and_a_send_refused_ended_ends_it():
    async def scenario(client, network):
        client.reopen = True
        ws = await connected(client, network, [event(1)])
        assert "reopen=1" in ws.url
        ws.cut()
        await settle(5)
        again = network.current
        assert "reopen" not in again.url
        again.deliver(page([]))
        await settle()
        sending = asyncio.ensure_future(client.send("chat", {"text": "late"}))
        await settle()
        sent = again.frames("send")[-1]
        again.deliver(
            {"type": "error", "code": "ended", "message": "ended", "id": sent["id"], "action": "send"}
        )
        await settle()
        assert client.ended
        with pytest.raises(Refused):
            await asyncio.wait_for(sending, 1)

    play(scenario)


def test_the_user_comes_from_the_token_and_an_ack_must_match_the_event_too():
    import base64

    claims = base64.urlsafe_b64encode(json.dumps({"sub": "zoe"}).encode()).rstrip(b"=").decode()
    client = ClasswireClient(url="ws://x", token=f"h.{claims}.s", classroom="c1")
    assert client.user_id == "zoe"


# -- presence ----------------------------------------------------------------------------------------


def test_occupancy_and_crowding_come_from_joins_pongs_rosters_and_presence_frames():
    heard: list[dict] = []

    async def scenario(client, network):
        joined = event(1, event="join", data={"connections": 1, "users": 3, "crowded": False})
        ws = await connected(client, network, [joined])
        assert (client.users, client.crowded) == (3, False)
        ws.deliver(event(2, event="join", data={"connections": 1, "users": 5, "crowded": True}))
        await settle()
        assert client.crowded
        changes = [{"userId": "s6", "role": "student", "name": "S6", "present": True}]
        ws.deliver({"type": "presence", "classroom": "c1", "users": 6, "crowded": True, "changes": changes})
        ws.deliver({"type": "presence", "classroom": "c1", "users": 9, "changes": "not a list"})  # ignored
        ws.deliver({"type": "pong", "ts": 0, "behind": 0, "last": 2, "epoch": E1, "users": True})  # no count
        await settle()
        assert [p["changes"] for p in heard] == [changes] and client.users == 6
        ws.deliver({"type": "pong", "ts": 0, "behind": 0, "last": 2, "epoch": E1, "users": -3})  # no count
        ws.deliver(
            {"type": "pong", "ts": 0, "behind": 0, "last": 2, "epoch": E1, "users": 7, "crowded": False}
        )
        await settle()
        assert (client.users, client.crowded) == (7, False)
        asking = asyncio.ensure_future(client.who())
        await settle()
        ws.deliver({"type": "roster", "members": [], "more": False, "users": 4, "crowded": False})
        await asking
        assert (client.users, client.crowded) == (4, False)

    play(scenario, on_presence=heard.append)
