"""API Gateway's WebSocket data plane on 127.0.0.1, serving one stage of a deployment manifest.

    python -m localcloud.gateway --manifest manifest.json --port 8765

The manifest is a file `Manifest.dump()` wrote: `GatewayProcess` writes `<work_dir>/manifest.json` and
starts this command on it (`make deploy` keeps its manifest in memory and writes none). Serves until
SIGINT or SIGTERM, then closes every connection (their `$disconnect` runs) and stops the functions.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from localcloud.gateway.connections_api import PostFaults
from localcloud.gateway.data_plane import Gateway
from localcloud.gateway.quotas import GatewayQuotas
from localcloud.manifest import Manifest


async def serve(manifest: Manifest, port: int, **options) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly."""
    gateway = await Gateway(manifest, port=port, **options).start()
    # GatewayProcess waits for this line.
    print(f"gateway: {gateway.websocket_url}  (@connections: {gateway.management_endpoint})", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        print("gateway: stopping", flush=True)
        await gateway.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m localcloud.gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--manifest", required=True, type=Path, help="a manifest Manifest.dump() wrote (JSON)"
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a variable in every function's environment (repeatable)",
    )
    parser.add_argument("--log-dir", type=Path, help="write each function's output to DIR/<function>.log")
    parser.add_argument("--max-concurrency", type=int, default=10, help="execution environments per function")
    parser.add_argument(
        "--quotas",
        type=GatewayQuotas.from_json,
        default=GatewayQuotas(),
        metavar="JSON",
        help='GatewayQuotas as JSON, e.g. {"idle_timeout": 60}; a field left out keeps its default',
    )
    parser.add_argument(
        "--post-faults",
        type=PostFaults.from_json,
        metavar="JSON",
        help="PostFaults as JSON: fail @connections POSTs (fault tests)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log every invocation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("localcloud.gateway.websockets").setLevel(logging.WARNING)
    environment = dict(item.split("=", 1) for item in args.env)
    asyncio.run(
        serve(
            Manifest.load(args.manifest),
            args.port,
            quotas=args.quotas,
            environment=environment,
            log_dir=args.log_dir,
            max_concurrency=args.max_concurrency,
            post_faults=args.post_faults,
        )
    )


if __name__ == "__main__":
    main()
