"""Fan-out benchmark: the lean @connections client against boto3, on a local stub with injected latency.

    python -m bench.fanout [--runs 7] [--latency-ms 20] [--redis-url redis://127.0.0.1:6379]
                                   [--json reports/bench_fanout.json]

The stub runs in its own process, so the CPU clock here measures only the clients. The floor is what a
fan-out cannot beat: one post's latency plus one Redis round trip (the store call before it).
`run()` is what `make bench` calls.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.connections_stub import TEST_REGION, serve_forever
from classwire.management_api import Credentials, ManagementApi
from classwire_infra.paths import ROOT

SIZES = (30, 300, 1000)
BOTO3_THREADS = 64
FRAME = b'{"type":"event","classroom":"room-1","seq":42,"event":"chat","data":{"text":"hello, class"}}'
CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token")


@contextlib.contextmanager
def stub_process(latency_ms: float):
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=serve_forever, args=(latency_ms, theirs), daemon=True
    )
    process.start()
    try:
        if not ours.poll(30):
            raise RuntimeError("the management stub did not start")
        yield f"http://127.0.0.1:{ours.recv()}/dev"
    finally:
        ours.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()


def connection_ids(n: int) -> list[str]:
    # Shaped like API Gateway's: 16 characters of base64, ending in `=`.
    return [f"L0SM9cOF{i:07d}=" for i in range(n)]


def redis_round_trip_ms(url: str) -> float | None:
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        samples = []
        for _ in range(200):
            started = time.perf_counter()
            client.ping()
            samples.append((time.perf_counter() - started) * 1000)
        client.close()
        return statistics.median(samples)
    except Exception:  # noqa: BLE001 (whatever broke boto3's run, the table shows no boto3 figure)
        return None


def measure(fanout, ids: list[str], runs: int) -> dict:
    fanout(ids)  # warm: sockets open, key derived
    walls, cpus = [], []
    for _ in range(runs):
        cpu, wall = time.process_time(), time.perf_counter()
        delivered = fanout(ids)
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1e6 / len(ids))
        if delivered != len(ids):
            raise RuntimeError(f"delivered {delivered} of {len(ids)}")
    return {
        "median_ms": round(statistics.median(walls), 2),
        "min_ms": round(min(walls), 2),
        "cpu_us_per_post": round(statistics.median(cpus), 1),
    }


def lean(endpoint: str):
    api = ManagementApi(endpoint, TEST_REGION, lambda: CREDENTIALS)
    return lambda ids: len(api.post_many(ids, FRAME).delivered)


def boto3_client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name=TEST_REGION,
        aws_access_key_id=CREDENTIALS.access_key,
        aws_secret_access_key=CREDENTIALS.secret_key,
        aws_session_token=CREDENTIALS.token,
        config=Config(max_pool_connections=128, connect_timeout=1, read_timeout=3),
    )


def boto3_threads(endpoint: str):
    client = boto3_client(endpoint)
    pool = ThreadPoolExecutor(BOTO3_THREADS)

    def post(connection_id: str) -> bool:
        client.post_to_connection(ConnectionId=connection_id, Data=FRAME)
        return True

    return lambda ids: sum(pool.map(post, ids))


def boto3_sequential(endpoint: str):
    client = boto3_client(endpoint)

    def fanout(ids):
        for connection_id in ids:
            client.post_to_connection(ConnectionId=connection_id, Data=FRAME)
        return len(ids)

    return fanout


def run(
    sizes=SIZES,
    latency_ms: float = 20.0,
    runs: int = 7,
    redis_url: str = "redis://127.0.0.1:6379",
    sequential_sizes=(30, 300),
) -> dict:
    redis_ms = redis_round_trip_ms(redis_url)
    floor_ms = latency_ms + (redis_ms or 0.0)
    results: dict = {
        "latency_ms": latency_ms,
        "runs": runs,
        "redis_round_trip_ms": None if redis_ms is None else round(redis_ms, 3),
        "floor_ms": round(floor_ms, 3),
        "sizes": {},
    }
    with stub_process(latency_ms) as endpoint:
        clients = {
            "lean": lean(endpoint),
            "boto3_threads": boto3_threads(endpoint),
            "boto3_sequential": boto3_sequential(endpoint),
        }
        for size in sizes:
            ids = connection_ids(size)
            row = {}
            for name, fanout in clients.items():
                if name == "boto3_sequential" and size not in sequential_sizes:
                    continue
                row[name] = measure(fanout, ids, runs if name != "boto3_sequential" else min(runs, 3))
                row[name]["ratio_to_floor"] = round(row[name]["median_ms"] / floor_ms, 2)
            results["sizes"][str(size)] = row
    # The handler's own cost: CPU per delivered message when the endpoint answers at once.
    with stub_process(0) as endpoint:
        ids = connection_ids(max(sizes))
        results["instant_endpoint_cpu_us_per_delivery"] = {
            "lean": measure(lean(endpoint), ids, runs)["cpu_us_per_post"],
            "boto3_threads": measure(boto3_threads(endpoint), ids, min(runs, 3))["cpu_us_per_post"],
        }
    return results


def table(results: dict) -> str:
    redis = results["redis_round_trip_ms"]
    lines = [
        f"floor = {results['latency_ms']:g} ms latency + "
        + (f"{redis:.3f} ms Redis PING" if redis is not None else "0 ms Redis (unreachable: not counted)")
        + f" = {results['floor_ms']:.2f} ms; median of {results['runs']} runs",
        f"{'members':>8} {'client':<17} {'median ms':>10} {'x floor':>8} {'CPU us/post':>12}",
    ]
    for size, row in results["sizes"].items():
        for name, m in row.items():
            lines.append(
                f"{size:>8} {name:<17} {m['median_ms']:>10.1f} {m['ratio_to_floor']:>8.2f} {m['cpu_us_per_post']:>12.1f}"
            )
    instant = results["instant_endpoint_cpu_us_per_delivery"]
    lines.append(
        "handler CPU per delivered message, instant endpoint: "
        + ", ".join(f"{name} {us:.1f} us" for name, us in instant.items())
    )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")), default=SIZES)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument("--json", default=str(ROOT / "reports" / "bench_fanout.json"))
    args = parser.parse_args(argv)
    results = run(args.sizes, args.latency_ms, args.runs, args.redis_url)
    print(table(results))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
