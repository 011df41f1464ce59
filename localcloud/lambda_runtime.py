"""Lambda execution environments on this machine: warm worker processes, a pool per function.

Each worker (`lambda_worker.py`) is one execution environment: it gets the function's configured
environment plus the variables Lambda sets, imports the handler once, and then serves one invocation
at a time. A pool grows up to `max_concurrency` workers when invocations overlap (API Gateway invokes
concurrently, even for consecutive frames of one connection) and keeps them warm. A handler that runs
past its timeout has its worker killed and replaced, as Lambda does; a worker that dies is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from localcloud.manifest import FunctionSpec, Manifest

log = logging.getLogger("localcloud.lambda")

WORKER_SCRIPT = Path(__file__).resolve().parent / "lambda_worker.py"
# Lambda gives the init phase (imports at module scope) 10 seconds of its own.
INIT_TIMEOUT_SECONDS = 10.0
# Lambda's synchronous response limit is 6 MB; the pipe reader must take a whole reply line.
MAX_REPLY_BYTES = 8 * 1024 * 1024
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


@dataclass(frozen=True)
class Invocation:
    """What an invocation returned: `payload` when `ok`, else Lambda's error object in `error`."""

    ok: bool
    payload: object = None
    error: dict | None = None
    duration_ms: float = 0.0
    cold_start: bool = False

    @property
    def error_message(self) -> str:
        return str((self.error or {}).get("errorMessage", ""))


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, argv: list[str], env: dict[str, str], cwd: str, stderr: IO | None) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=cwd,
            limit=MAX_REPLY_BYTES,
            start_new_session=True,  # Ctrl-C reaches the gateway, which stops the workers itself
        )
        return cls(process)

    async def receive(self) -> dict:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            code = await self.process.wait()
            raise _WorkerDied(f"worker exited with code {code}")
        return json.loads(line)

    async def send(self, message: dict) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        await self.process.stdin.drain()

    def alive(self) -> bool:
        return self.process.returncode is None

    async def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()

    async def stop(self, grace: float = 2.0) -> None:
        """End the worker: EOF on stdin ends its loop; kill it if it does not go."""
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            await self.kill()


class _WorkerDied(Exception):
    pass


class FunctionPool:
    """The warm execution environments of one function."""

    def __init__(
        self,
        spec: FunctionSpec,
        code_dir: Path,
        environment: dict[str, str],
        max_concurrency: int,
        stderr: IO | None,
    ) -> None:
        self.spec = spec
        self.code_dir = code_dir
        self.environment = environment
        self.max_concurrency = max_concurrency
        self.stderr = stderr
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._count = 0
        self._changed = asyncio.Condition()
        self._closed = False
        self.cold_starts = 0

    @property
    def size(self) -> int:
        return self._count

    async def invoke(self, event: dict, request_id: str | None = None) -> Invocation:
        request_id = request_id or str(uuid.uuid4())
        started = time.monotonic()
        try:
            worker, cold = await self._acquire()
        except _InitFailed as failure:
            return Invocation(False, error=failure.error, duration_ms=_ms(started), cold_start=True)
        healthy = False
        try:
            deadline_ms = int(time.time() * 1000 + self.spec.timeout * 1000)
            await worker.send({"event": event, "request_id": request_id, "deadline_ms": deadline_ms})
            reply = await asyncio.wait_for(worker.receive(), self.spec.timeout)
            healthy = reply.get("ok", False) or not str(reply["error"].get("errorType", "")).startswith(
                "Runtime.Exit"
            )
            if reply.get("ok"):
                return Invocation(
                    True, payload=reply.get("result"), duration_ms=_ms(started), cold_start=cold
                )
            return Invocation(False, error=reply["error"], duration_ms=_ms(started), cold_start=cold)
        except TimeoutError:
            message = f"Task timed out after {self.spec.timeout:.2f} seconds"
            log.warning("%s %s: %s", self.spec.name, request_id, message)
            return Invocation(
                False, error=_lambda_error(message, "Sandbox.Timedout"), duration_ms=_ms(started)
            )
        except (_WorkerDied, ConnectionError, json.JSONDecodeError) as exc:
            log.warning("%s %s: execution environment crashed: %s", self.spec.name, request_id, exc)
            return Invocation(
                False, error=_lambda_error(str(exc), "Runtime.ExitError"), duration_ms=_ms(started)
            )
        finally:
            await self._release(worker, healthy and worker.alive())

    async def _acquire(self) -> tuple[_Worker, bool]:
        async with self._changed:
            while True:
                if self._closed:
                    raise _InitFailed(_lambda_error("function is shutting down", "Runtime.Unavailable"))
                if self._idle:
                    worker = self._idle.pop()  # the most recently used one: the warmest
                    self._busy.add(worker)
                    return worker, False
                if self._count < self.max_concurrency:
                    self._count += 1
                    break
                await self._changed.wait()
        try:
            worker = await self._start_worker()
        except BaseException:
            async with self._changed:
                self._count -= 1
                self._changed.notify()
            raise
        self._busy.add(worker)
        return worker, True

    async def _start_worker(self) -> _Worker:
        self.cold_starts += 1
        worker = await _Worker.start(
            [sys.executable, "-I", "-u", str(WORKER_SCRIPT)],
            self.environment,
            str(self.code_dir),
            self.stderr,
        )
        try:
            ready = await asyncio.wait_for(worker.receive(), max(INIT_TIMEOUT_SECONDS, self.spec.timeout))
        except (TimeoutError, _WorkerDied, json.JSONDecodeError) as exc:
            await worker.kill()
            raise _InitFailed(_lambda_error(f"init failed: {exc}", "Runtime.Unknown")) from None
        except BaseException:
            await worker.kill()
            raise
        if not ready.get("ready"):
            await worker.kill()
            raise _InitFailed(ready["error"])
        return worker

    async def _release(self, worker: _Worker, healthy: bool) -> None:
        if not healthy or self._closed:
            await worker.kill()
        async with self._changed:
            self._busy.discard(worker)
            if healthy and not self._closed:
                self._idle.append(worker)
            else:
                self._count -= 1
            self._changed.notify()

    async def close(self) -> None:
        async with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
            self._count -= len(idle)
            self._changed.notify_all()
        await asyncio.gather(*(worker.stop() for worker in idle), *(worker.kill() for worker in busy))


class _InitFailed(Exception):
    def __init__(self, error: dict) -> None:
        super().__init__(error.get("errorMessage"))
        self.error = error


class LambdaRuntime:
    """The functions of a manifest, each with its pool; zips are extracted once into a temp dir."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        environment: dict[str, str] | None = None,
        max_concurrency: int = 10,
        log_dir: Path | None = None,
    ) -> None:
        self.manifest = manifest
        self.overrides = dict(environment or {})
        self.max_concurrency = max_concurrency
        self.log_dir = Path(log_dir) if log_dir else None
        self._pools: dict[str, FunctionPool] = {}
        self._extracted: dict[tuple[str, str], Path] = {}
        self._tmp: Path | None = None
        self._logs: list[IO] = []

    def pool(self, function_name: str) -> FunctionPool:
        pool = self._pools.get(function_name)
        if pool is None:
            spec = self.manifest.functions[function_name]
            code_dir = self._code_dir(spec.code)
            pool = FunctionPool(
                spec, code_dir, self.environment(spec, code_dir), self.max_concurrency, self._log(spec)
            )
            self._pools[function_name] = pool
        return pool

    async def invoke(self, function_name: str, event: dict, request_id: str | None = None) -> Invocation:
        request_id = request_id or str(uuid.uuid4())
        result = await self.pool(function_name).invoke(event, request_id)
        log.debug(
            "invoke %s %s %s %.1fms%s",
            function_name,
            request_id,
            "ok" if result.ok else f"error {(result.error or {}).get('errorType')}",
            result.duration_ms,
            " (cold start)" if result.cold_start else "",
        )
        return result

    def environment(self, spec: FunctionSpec, code_dir: Path) -> dict[str, str]:
        """What a Lambda process sees: the function's variables, then the ones Lambda reserves."""
        m = self.manifest
        stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        reserved = {
            "_HANDLER": spec.handler,
            "LAMBDA_TASK_ROOT": str(code_dir),
            "AWS_REGION": m.region,
            "AWS_DEFAULT_REGION": m.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "LOCALCLOUD_FUNCTION_ARN": f"arn:aws:lambda:{m.region}:{m.account_id}:function:{spec.name}",
            **FAKE_CREDENTIALS,
        }
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            # The developer's ~/.aws profiles must not leak into a function.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            **spec.environment,
            **self.overrides,
            **reserved,
        }

    def _code_dir(self, code: str) -> Path:
        path = Path(code)
        if path.is_dir():
            return path.resolve()
        if not zipfile.is_zipfile(path):
            raise FileNotFoundError(f"function code {code} is neither a directory nor a zip")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        key = (str(path.resolve()), digest)
        if key not in self._extracted:
            if self._tmp is None:
                self._tmp = Path(tempfile.mkdtemp(prefix="classwire-lambda-"))
            target = self._tmp / digest[:16]
            with zipfile.ZipFile(path) as archive:
                archive.extractall(target)
            self._extracted[key] = target
        return self._extracted[key]

    def _log(self, spec: FunctionSpec) -> IO | None:
        if self.log_dir is None:
            return None  # inherit the gateway's stderr
        self.log_dir.mkdir(parents=True, exist_ok=True)
        handle = (self.log_dir / f"{spec.name}.log").open("ab")
        self._logs.append(handle)
        return handle

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self._pools.values()))
        self._pools.clear()
        for handle in self._logs:
            handle.close()
        self._logs.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._extracted.clear()


def _lambda_error(message: str, error_type: str) -> dict:
    return {"errorMessage": message, "errorType": error_type}


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000
