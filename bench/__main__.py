"""`make bench`: every performance figure the project promises, measured in one run on this machine.

    python -m bench [--quick] [--only fanout,batching,late,presence,redis,handler,cold,zips,synth,e2e] [--json reports/bench.json]

Prints one table per section and writes them all to a JSON file. Each comparison (lean client against
boto3, fan-out against its floor) is measured in the same run, since this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from bench import batching as bench_batching
from bench import fanout as bench_fanout
from bench import late_joiner as bench_late_joiner
from bench import presence as bench_presence
from classwire_infra.paths import ROOT

HANDLERS = ("authorizer", "connect", "disconnect", "message")
ROOM_SIZES = (30, 300, 1000)
TARGETS = {
    "fanout_30_x_floor": 1.5,
    "fanout_1000_x_floor": 10.0,
    "redis_calls_per_send": 2,
    "handler_cpu_us_per_delivery": 100.0,
    "cold_init_ms": 300.0,
    "busy_room_messages_per_delivered_event": bench_batching.TARGET_MESSAGES_PER_DELIVERY,
}


# --- Redis round trips ----------------------------------------------------------------------------


class CountingRedis:
    """Counts the client's round trips (each command or pipeline is one) on a real redis-py client."""

    def __init__(self, client):
        self.client, self.calls = client, 0
        original = client.execute_command

        def counted(*args, **options):
            self.calls += 1
            return original(*args, **options)

        client.execute_command = counted


def redis_round_trips(sizes=ROOM_SIZES) -> dict:
    from bench.batching import LIMITS, Delivered
    from classwire.classroom import ClassroomService
    from classwire.classroom_store import ClassroomStore, Member
    from localcloud.cache import RedisServer

    results = {}
    with RedisServer() as server:
        client = server.client()
        counter = CountingRedis(client)
        store = ClassroomStore(client, LIMITS)
        for size in sizes:
            room = f"bench-{size}"
            members = [Member(f"c{i:05d}=", room, f"u{i}", "student") for i in range(size)]
            # The whole send as an invocation makes it: the append (which takes the round) and the settle
            # that hands the lease back.
            core = ClassroomService(store, Delivered(), LIMITS)
            for member in members:
                core.connect(member, 0)
            sender = members[0]
            core.handle(sender, json.dumps({"action": "send", "id": "warm", "event": "chat", "data": 0}))
            before_server = _evalsha_calls(client)
            before_calls = counter.calls
            core.handle(
                sender, json.dumps({"action": "send", "id": "m1", "event": "stroke", "data": [[1, 2]]})
            )
            send_calls = counter.calls - before_calls
            send_server = _evalsha_calls(client) - before_server - 1  # minus the INFO's own count
            store.sync(
                sender, since=0, since_eid="", epoch="", limit=1, budget_bytes=30_000
            )  # loads the script once
            before_calls = counter.calls
            store.sync(sender, since=0, since_eid="", epoch="", limit=200, budget_bytes=30_000)
            results[str(size)] = {
                "send": send_calls,
                "send_server_evalsha": send_server,
                "sync_page": counter.calls - before_calls,
            }
        client.close()
    return results


def _evalsha_calls(client) -> int:
    stats = client.info("commandstats")
    return sum(
        v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_info")
    )


# --- handler CPU per delivered message ------------------------------------------------------------


def handler_cpu(members: int = 1000, sends: int = 20) -> dict:
    """The whole message handler (parse, one Redis call, encode, fan-out) against an instant endpoint."""
    from bench.events import Caller, LambdaContext, message_event
    from classwire import runtime
    from classwire.classroom_store import Member
    from classwire.handlers import message
    from localcloud.cache import RedisServer

    with (
        RedisServer() as server,
        bench_fanout.stub_process(0) as endpoint,
        _environment(
            CLASSWIRE_REDIS_URL=server.url,
            CLASSWIRE_MANAGEMENT_ENDPOINT=endpoint,
            CLASSWIRE_JWT_SECRET_ARN="arn:aws:secretsmanager:eu-west-1:123456789012:secret:unused",
            CLASSWIRE_RATE_PER_SECOND="100000",
            CLASSWIRE_RATE_BURST="100000",
            AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
            AWS_SECRET_ACCESS_KEY="secret",
            AWS_REGION="eu-west-1",
            POWERTOOLS_METRICS_DISABLED="true",
            POWERTOOLS_LOG_LEVEL="WARNING",
        ),
    ):
        runtime.reset()
        callers = [Caller(f"c{i:05d}=", f"u{i}", "student", "bench") for i in range(members)]
        store = runtime.classroom_store()
        for caller in callers:  # straight into the store: $connect's fan-outs are not what is measured
            store.join(Member(caller.connection_id, "bench", caller.user_id, "student"), 0)
        # The joins' rounds are not what is measured: as if their $connects had posted them.
        client = runtime.redis_client()
        client.delete("cw:{bench}:flusher")
        client.hset("cw:{bench}:meta", "flushed", int(client.hget("cw:{bench}:meta", "seq") or 0))  # type: ignore[arg-type]
        context = LambdaContext()
        message.handler(
            message_event(callers[0], {"action": "send", "id": "w", "event": "chat", "data": {}}), context
        )
        events = [
            message_event(
                callers[0], {"action": "send", "id": f"m{i}", "event": "stroke", "data": {"p": [i, i]}}
            )
            for i in range(sends)
        ]
        cpu, wall = time.process_time(), time.perf_counter()
        for event in events:
            message.handler(event, context)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        # Every send's round was posted by its own invocation (a held lease would have measured nothing).
        seq, flushed = client.hmget("cw:{bench}:meta", ["seq", "flushed"])  # type: ignore[misc]
        assert flushed == seq, f"only seq {flushed!r} of {seq!r} was posted"
    return {
        "members": members,
        "sends": sends,
        "cpu_us_per_delivery": round(cpu / (members * sends) * 1e6, 1),
        "wall_ms_per_send": round(wall / sends * 1000, 1),
    }


@contextlib.contextmanager
def _environment(**values: str):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- cold initialisation --------------------------------------------------------------------------

IMPORT_ONE = "import sys, time; sys.path.insert(0, sys.argv[1]); t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def cold_init(zip_path: Path, runs: int = 10) -> dict:
    """Import each handler from the built zip in a fresh interpreter (no site-packages), median of `runs`."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="classwire-cold-") as code:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(code)
        env = {"PATH": os.environ.get("PATH", ""), "AWS_REGION": "us-east-1", "LANG": "C.UTF-8"}
        for name in HANDLERS:
            module = f"classwire.handlers.{name}"
            command = [sys.executable, "-I", "-S", "-c", IMPORT_ONE.format(module=module), code]
            samples = [
                float(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout)
                for _ in range(runs)
            ]
            profile = subprocess.run(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-X",
                    "importtime",
                    "-c",
                    IMPORT_ONE.format(module=module),
                    code,
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stderr
            results[name] = {
                "median_ms": round(statistics.median(samples) * 1000, 1),
                "top": _dominant(profile),
            }
    return results


def _dominant(importtime: str, top: int = 4) -> list[list]:
    """The packages that cost the most, from `-X importtime`: each module's own time, summed per package."""
    costs: dict[str, int] = {}
    for line in importtime.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            package = match.group(2).split(".")[0]
            costs[package] = costs.get(package, 0) + int(match.group(1))
    ranked = sorted(costs.items(), key=lambda item: -item[1])[:top]
    return [[package, round(us / 1000, 1)] for package, us in ranked]


# --- packages and synthesis -----------------------------------------------------------------------


def zips() -> dict:
    from classwire_infra.config import load

    results = {}
    for env in ("local", "dev"):
        subprocess.run(
            [sys.executable, "scripts/build_lambdas.py", "--env", env],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        path = ROOT / load(env).lambda_zip
        results[path.name] = {"bytes": path.stat().st_size, "mb": round(path.stat().st_size / 1e6, 2)}
    return results


SYNTH_ALL = """
import sys, time, tempfile
from pathlib import Path
started = time.perf_counter()
if sys.argv[1] == "eager":  # the bindings' own root import, all 2,123 submodules (before provider_bindings)
    import cdktf_cdktf_provider_aws
from classwire_infra.synth import synth
print("start", time.perf_counter() - started)
out = Path(tempfile.mkdtemp(prefix="classwire-synth-"))
for env in ("local", "dev", "staging", "prod"):
    t = time.perf_counter()
    zip_file = out / "lambda.zip"
    zip_file.write_bytes(b"PK\\x05\\x06" + bytes(18))
    synth(env, out=out / env, zip_file=zip_file)
    print(env, time.perf_counter() - t)
print("total", time.perf_counter() - started)
"""


def synth_times() -> dict:
    """All four stacks in one process: the start (jsii and the bindings), then each stack; with the
    provider's bindings loaded as shipped (one submodule at a time) and, for comparison, all at once."""
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    results = {}
    for mode in ("lazy", "eager"):
        output = subprocess.run(
            [sys.executable, "-c", SYNTH_ALL, mode],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results[mode] = {
            name: round(float(seconds), 2) for name, seconds in (line.split() for line in output.splitlines())
        }
    return results


# --- end to end -----------------------------------------------------------------------------------

E2E_FULL = {"connections": 1000, "classrooms": 40, "events_per_second": 5, "seconds": 30, "processes": 3}
E2E_QUICK = {"connections": 120, "classrooms": 8, "events_per_second": 5, "seconds": 5, "processes": 1}


def end_to_end(quick: bool) -> dict:
    """The local system (gateway process, warm workers, real Redis) under `bench.load`: p50/p99."""
    import secrets

    from bench.load import percentile, run_load
    from localcloud.system import LocalSystem

    shape = E2E_QUICK if quick else E2E_FULL
    with LocalSystem(key=secrets.token_urlsafe(48), gateway="process", max_concurrency=8) as system:
        result = run_load(
            system.websocket_url,
            lambda user, room: system.token(user, room, "student"),
            progress=lambda line: print(line, file=sys.stderr, flush=True),
            **shape,
        )
    latencies = result["latencies"]
    return {
        **shape,
        "deliveries": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "lost": result["lost"],
        "duplicates": result["duplicates"],
        "setup_s": round(result["setup_s"], 1),
    }


# --- report ---------------------------------------------------------------------------------------


def report(results: dict) -> str:
    lines = [f"classwire bench, {results['when']}, {results['machine']}"]
    if "fanout" in results:
        lines += [
            "",
            "## Fan-out against @connections with injected latency",
            bench_fanout.table(results["fanout"]),
        ]
    if "batching" in results:
        lines += ["", "## Batching: messages per delivered event", bench_batching.table(results["batching"])]
    if "late" in results:
        lines += ["", "## A late joiner's catch-up", bench_late_joiner.table(results["late"])]
    if "presence" in results:
        lines += ["", "## Presence at lecture scale", bench_presence.table(results["presence"])]
    if "redis" in results:
        lines += ["", "## Redis round trips (client calls)", f"{'members':>8} {'send':>5} {'sync page':>10}"]
        lines += [f"{size:>8} {r['send']:>5} {r['sync_page']:>10}" for size, r in results["redis"].items()]
    if "handler" in results:
        h = results["handler"]
        lines += [
            "",
            "## Message handler, instant endpoint",
            f"{h['cpu_us_per_delivery']} us CPU per delivered message ({h['members']} members, {h['sends']} "
            f"sends; {h['wall_ms_per_send']} ms wall per send)",
        ]
    if "cold" in results:
        lines += ["", "## Cold initialisation from the zip (median of 10, fresh interpreter)"]
        for name, c in results["cold"].items():
            top = ", ".join(f"{package} {ms} ms" for package, ms in c["top"])
            lines.append(f"{name:>11} {c['median_ms']:>7.1f} ms   dominated by: {top}")
    if "zips" in results:
        lines += ["", "## Lambda packages"]
        lines += [f"{name}: {z['bytes']} bytes ({z['mb']} MB)" for name, z in results["zips"].items()]
    if "synth" in results:
        lines += ["", "## Synthesis (one process, all stacks)"]
        lines += [
            f"{mode} bindings: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in times.items())
            for mode, times in results["synth"].items()
        ]
    if "e2e" in results:
        e = results["e2e"]
        lines += [
            "",
            "## End to end on the local system",
            f"{e['connections']} clients in {e['classrooms']} classrooms, {e['events_per_second']} persistent "
            f"events/s per classroom for {e['seconds']} s: p50 {e['p50_ms']} ms, p95 {e['p95_ms']} ms, "
            f"p99 {e['p99_ms']} ms over {e['deliveries']} deliveries; lost {e['lost']}, "
            f"duplicates {e['duplicates']}",
        ]
    if "targets" in results:
        lines += ["", "## Targets"]
        lines += [
            f"{'met ' if t['met'] else 'MISSED'} {name}: {t['value']} (target {t['target']})"
            for name, t in results["targets"].items()
        ]
    return "\n".join(lines)


def targets(results: dict) -> dict:
    checks = {}
    fanout = results.get("fanout", {}).get("sizes", {})
    for size, key in (("30", "fanout_30_x_floor"), ("1000", "fanout_1000_x_floor")):
        if size in fanout:
            checks[key] = fanout[size]["lean"]["ratio_to_floor"]
    busy = results.get("batching", {}).get("scenarios", {}).get(bench_batching.BUSY_ROOM.name)
    if busy:
        checks["busy_room_messages_per_delivered_event"] = busy["batched"]["messages_per_delivered_event"]
    if "redis" in results:
        checks["redis_calls_per_send"] = max(r["send"] for r in results["redis"].values())
    if "handler" in results:
        checks["handler_cpu_us_per_delivery"] = results["handler"]["cpu_us_per_delivery"]
    if "cold" in results:
        checks["cold_init_ms"] = max(c["median_ms"] for c in results["cold"].values())
    return {
        name: {"value": value, "target": TARGETS[name], "met": value <= TARGETS[name]}
        for name, value in checks.items()
    }


SECTIONS = ("fanout", "batching", "late", "presence", "redis", "handler", "cold", "zips", "synth", "e2e")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test of the bench itself)")
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "bench.json")
    args = parser.parse_args(argv)
    sections = args.only.split(",")
    runs = 3 if args.quick else 7
    from classwire_infra.config import load
    from localcloud.cache import RedisServer

    results: dict = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f}",
    }
    if "zips" in sections or "cold" in sections:
        results["zips"] = zips()
    if "fanout" in sections:
        with RedisServer() as server:
            results["fanout"] = bench_fanout.run(
                sizes=(30, 300) if args.quick else ROOM_SIZES,
                runs=runs,
                redis_url=server.url,
                sequential_sizes=(30,),
            )
    if "batching" in sections:
        results["batching"] = bench_batching.run(quick=args.quick)
    if "late" in sections:
        results["late"] = bench_late_joiner.run(hours=0.5 if args.quick else 2.0)
    if "presence" in sections:
        results["presence"] = bench_presence.run(members=300 if args.quick else 1000)
    if "redis" in sections:
        results["redis"] = redis_round_trips()
    if "handler" in sections:
        results["handler"] = handler_cpu(sends=5 if args.quick else 20)
    if "cold" in sections:
        results["cold"] = cold_init(ROOT / load("local").lambda_zip, runs=3 if args.quick else 10)
    if "synth" in sections:
        results["synth"] = synth_times()
    if "e2e" in sections:
        results["e2e"] = end_to_end(args.quick)
    results["targets"] = targets(results)
    print(report(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
