"""Load: many concurrent connections over many classrooms, each classroom sending persistent events at a
steady rate; delivery latency percentiles and the loss count (must be 0) (issue 5, "Load").

The load itself is `bench/load.py` (also run by `make bench`); this test records its figures.
"""

from __future__ import annotations

from bench.load import percentile, run_load


def test_load(system, sizes, figures):
    result = run_load(
        system.websocket_url,
        lambda user, room: system.token(user, room, "student"),
        connections=sizes.load_connections,
        classrooms=sizes.load_classrooms,
        events_per_second=sizes.load_events_per_second,
        seconds=sizes.load_seconds,
        processes=sizes.load_processes,
        progress=lambda line: print(line, flush=True),
    )
    latencies, connects = result["latencies"], result["connect_ms"]
    figures.record(
        "load",
        "connections / classrooms / processes",
        f"{sizes.load_connections} / {sizes.load_classrooms} / {sizes.load_processes}",
    )
    figures.record(
        "load", "rate", sizes.load_events_per_second, "events/s per classroom", f"for {sizes.load_seconds} s"
    )
    figures.record("load", "connection setup (all open)", round(result["setup_s"], 1), "s")
    figures.record(
        "load",
        "connect p50 / p95",
        f"{percentile(connects, 50):.0f} / {percentile(connects, 95):.0f}",
        "ms",
        "per client, 25 at once per process",
    )
    figures.record("load", "events sent / acknowledged", f"{result['sent']} / {result['acked']}")
    figures.record(
        "load", "deliveries measured", len(latencies), note=f"expected {result['expected_deliveries']}"
    )
    for p in (50, 95, 99):
        figures.record("load", f"delivery latency p{p}", round(percentile(latencies, p), 1), "ms")
    figures.record("load", "delivery latency max", round(latencies[-1], 1) if latencies else None, "ms")
    figures.record(
        "load", "replayed by sync (not live)", result["replayed"], note="incl. joins read at connect"
    )
    figures.record(
        "load",
        "reconnects / resends / resets",
        f"{result['reconnects']} / {result['resends']} / {result['resets']}",
    )
    figures.record("load", "lost", result["lost"], note="must be 0")
    figures.record("load", "duplicates applied", result["duplicates"], note="must be 0")
    assert result["sent"] == result["acked"]
    assert result["lost"] == 0 and result["duplicates"] == 0
    assert len(latencies) >= result["expected_deliveries"]
