"""A real redis-server for tests: started in its own temp dir on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """`with RedisServer() as server:` gives `server.url`; extra config lines go in `extra`."""

    def __init__(self, extra: list[str] | None = None, port: int | None = None):
        self.extra = extra or []
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="classwire-redis-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run scripts/install-system-deps")
        config = [
            "bind 127.0.0.1",
            f"port {self.port}",
            f"dir {self.dir}",
            'save ""',
            "appendonly no",
            "protected-mode yes",
            *self.extra,
        ]
        (self.dir / "redis.conf").write_text("\n".join(config) + "\n")
        self.process = subprocess.Popen(
            [binary, str(self.dir / "redis.conf")],
            stdout=(self.dir / "redis.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()[-2000:]}")
            try:
                if self.client().ping():
                    return
            except (redis.ConnectionError, OSError):
                time.sleep(0.05)
        raise RuntimeError("redis-server did not become ready")

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
