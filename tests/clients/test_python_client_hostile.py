"""The Python client against a hostile server over random fault schedules (tests/clients/hostile_server.py),
on fake time: the delivery guarantee, exactly as README "Delivery guarantee" states it."""

from __future__ import annotations

import asyncio
import itertools
from unittest import mock

from hypothesis import HealthCheck, given, settings

import classwire_client
from classwire_client import ClasswireClient
from tests.clients.fake_network import FakeNetwork, run_virtual
from tests.clients.hostile_server import MAX_REGRESS, Responder, check_guarantee, compile_script, schedules

# The client remembers the eids of its last RECENT_EIDS seqs (4096) to spot one seq with two events. The
# schedules' logs are short, so it is cut to 8 (more than a regress loses, MAX_REGRESS): a log restarted at
# seq 1 while the client holds seq 30 is then the seq-5000 case, which only the epoch tells apart.
RECENT_EIDS = MAX_REGRESS + 2


def play(script: dict) -> tuple[dict, ClasswireClient]:
    """Plays a script against the Python client; returns what the driver saw and the client."""
    options = script["options"]
    responder = Responder(script)
    segments: list[list[dict]] = [[]]
    outcome: dict = {"segments": segments, "deliveryTimes": [], "pongTimes": [], "connectionTimes": []}
    client = ClasswireClient(
        "ws://hostile/local",
        "token",
        "c1",
        user_id="me",
        on_event=lambda event: segments[-1].append(event),
        on_reset=lambda: segments.append([]),
        gap_timeout=options["gapMs"] / 1000,
        sync_timeout=options["syncTimeoutMs"] / 1000,
        backoff_base=options["backoffBaseMs"] / 1000,
        backoff_cap=options["backoffCapMs"] / 1000,
        telemetry_interval=options["telemetryIntervalMs"] / 1000,
        max_buffered=options["maxBuffered"],
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def ms() -> int:
            return round(loop.time() * 1000)

        def serve(connection, frame: dict) -> None:
            for reply in responder.answer(frame, ms()):
                if reply["type"] == "pong":
                    outcome["pongTimes"].append(ms())
                loop.call_later(options["rttMs"] / 1000, connection.deliver, reply)

        network = FakeNetwork(serve)
        network.connect_delay = options["connectMs"] / 1000

        def play_entry(kind: str, arg: object) -> None:
            live = network.connections and not network.current.closed
            if kind == "deliver":
                if live:
                    outcome["deliveryTimes"].append(ms())
                    assert isinstance(arg, dict)
                    network.current.deliver(arg)
            elif kind == "cut":
                if live:
                    network.current.cut()
            elif kind == "snapshot":
                outcome["snapshot"] = {"segment": len(segments) - 1, "length": len(segments[-1])}
            else:
                responder.apply(kind, arg)

        def play_moment(entries: list) -> None:
            for _, kind, arg in entries:
                play_entry(kind, arg)

        # One timer per moment: the loop does not keep timers due at the same time in order.
        for _, moment in itertools.groupby(script["timeline"], key=lambda entry: entry[0]):
            entries = list(moment)
            loop.call_at(entries[0][0] / 1000, play_moment, entries)
        with network.installed():
            try:
                await client.start()
                await asyncio.sleep(script["endAt"] / 1000 - loop.time())
            finally:
                await client.close()
        outcome["connectionTimes"] = [round(t * 1000) for t in network.attempts]
        outcome["syncTimes"] = responder.sync_times

    with mock.patch.object(classwire_client, "RECENT_EIDS", RECENT_EIDS):
        run_virtual(main())
    return outcome, client


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(schedules())
def test_the_python_client_keeps_the_guarantee_against_a_hostile_server(schedule):
    script = compile_script(schedule)
    outcome, client = play(script)
    check_guarantee(script, outcome)
    assert client.events == outcome["segments"][-1]
