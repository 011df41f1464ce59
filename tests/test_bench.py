"""`make bench` itself: a quick run of its cheap sections works and checks its targets (the full run's
figures are in reports/bench.json and the README)."""

from __future__ import annotations

import json
import subprocess
import sys

from classwire_infra.paths import ROOT


def test_quick_bench_measures_redis_round_trips_and_handler_cpu(tmp_path):
    result_file = tmp_path / "bench.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "redis,handler,late,presence",
            "--json",
            str(result_file),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(result_file.read_text())
    # Two Lua scripts per persistent send (the append, the settle of its round), one per sync page, whatever
    # the room size.
    assert {size: r["send"] for size, r in results["redis"].items()} == {"30": 2, "300": 2, "1000": 2}
    assert all(r["sync_page"] == 1 for r in results["redis"].values())
    assert results["handler"]["cpu_us_per_delivery"] > 0
    # A late joiner starting at the last clear syncs fewer events than one starting at the oldest retained.
    late = results["late"]
    assert 0 < late["from_last_clear"]["events"] < late["from_oldest_retained"]["events"]
    # Presence: a crowded lecture's start costs a fraction of before, and a reconnect wave within the grace
    # nothing at all.
    presence = results["presence"]
    assert presence["ratios"]["class start"] < 0.2 and presence["ratios"]["class end"] < 0.2
    assert presence["after"]["2-hour reconnect wave"]["messages"] == 0
    assert (
        presence["before"]["2-hour reconnect wave"]["messages"]
        > presence["before"]["class start"]["messages"]
    )
    assert set(results["targets"]) == {"redis_calls_per_send", "handler_cpu_us_per_delivery"}
    assert "## Targets" in run.stdout
