"""Running a gateway beside other code: on its own event loop in a thread (`GatewayThread`), or as its
own process (`GatewayProcess`, `python -m localcloud.gateway`) that can be killed and started again."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from classwire_infra.paths import ROOT
from localcloud import processes
from localcloud.gateway.connections_api import PostFaults
from localcloud.gateway.data_plane import HOST, Gateway
from localcloud.gateway.quotas import GatewayQuotas
from localcloud.manifest import Manifest


class GatewayThread:
    """A gateway on its own event loop in a background thread, for synchronous callers and tests.

    with GatewayThread(manifest, quotas=GatewayQuotas(idle_timeout=1)) as gateway:
        websockets.sync.client.connect(gateway.websocket_url + "?token=...")
    """

    def __init__(self, manifest: Manifest, **options) -> None:
        self.gateway = Gateway(manifest, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="localcloud-gateway", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.gateway.start())
        except BaseException as exc:  # noqa: BLE001 (re-raised in the starting thread by start())
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def start(self) -> Gateway:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self.gateway

    def call(self, coroutine, timeout: float = 30.0):
        """Run a coroutine on the gateway's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.call(self.gateway.stop(), timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._loop.close()

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class GatewayProcess:
    """The gateway as its own process (`python -m localcloud.gateway`), so it can be killed and started
    again on the same port, as an API Gateway deployment can drop every connection at once.

    `stop(signal.SIGTERM)` shuts down cleanly (every connection's `$disconnect` runs); `signal.SIGKILL`
    makes every connection vanish without one, which is what the stale-connection pruning is for.
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        work_dir: Path,
        port: int = 0,
        quotas: GatewayQuotas = GatewayQuotas(),
        environment: dict[str, str] | None = None,
        max_concurrency: int = 10,
        post_faults: PostFaults | None = None,
    ) -> None:
        from localcloud import free_port

        self.post_faults = post_faults
        self.manifest = manifest
        self.work_dir = work_dir
        self.port = port or free_port()
        self.quotas = quotas
        self.environment = environment or {}
        self.max_concurrency = max_concurrency
        self.starts = 0
        self.process: subprocess.Popen | None = None
        self._log = work_dir / "gateway.log"

    @property
    def websocket_url(self) -> str:
        return f"ws://{HOST}:{self.port}/{self.manifest.stage}"

    @property
    def management_endpoint(self) -> str:
        return f"http://{HOST}:{self.port}/{self.manifest.stage}"

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        manifest_path = self.manifest.dump(self.work_dir / "manifest.json")
        argv = [
            sys.executable,
            "-m",
            "localcloud.gateway",
            "--manifest",
            str(manifest_path),
            "--port",
            str(self.port),
            "--log-dir",
            str(self.work_dir / "functions"),
            "--max-concurrency",
            str(self.max_concurrency),
            # The whole quotas object, so that none of them falls back to its default in the child.
            f"--quotas={self.quotas.to_json()}",
            *(f"--env={name}={value}" for name, value in self.environment.items()),
            *([f"--post-faults={self.post_faults.to_json()}"] if self.post_faults else []),
        ]
        offset = self._log.stat().st_size if self._log.exists() else 0
        with self._log.open("a") as log_file:
            self.process = processes.start_session(argv, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while "gateway: ws://" not in self._log.read_text(errors="replace")[offset:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(
                    f"gateway did not start: {self._log.read_text(errors='replace')[offset:][-2000:]}"
                )
            time.sleep(0.05)
        self.starts += 1
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        """SIGTERM: a clean shutdown (killed if it takes longer than `timeout`); SIGKILL: gone at once."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
