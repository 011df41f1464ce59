"""The local stand-in for the AWS APIs: a moto server on 127.0.0.1, with `moto_shim` applied.

`with AwsEmulator() as aws:` gives `aws.endpoint` (http://127.0.0.1:PORT) for boto3's `endpoint_url` or the
Terraform provider's `endpoints`. By default the server runs in a child process (`python -m
localcloud.emulator --port N`), so its state dies with it and Terraform's traffic never competes with the
caller's threads; `in_process=True` runs it on a thread instead, for tests that want to poke moto's backends.

    python -m localcloud.emulator --port 4566      # serve until Ctrl-C
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from localcloud import HOST, free_port

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

# The credentials and region every client of the emulator uses; moto accepts any, these are its defaults.
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def moto_environment(load_managed_policies: bool = True) -> dict[str, str]:
    """What moto reads from the environment."""
    return {
        # AWS managed policies (e.g. AWSLambdaVPCAccessExecutionRole) only exist in moto when loaded.
        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true" if load_managed_policies else "false",
        # The stack launches no instances; loading moto's AMI catalogue slows every new EC2 backend.
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    }


def client_environment(endpoint: str) -> dict[str, str]:
    """Environment for an AWS client (Terraform, the AWS CLI, boto3) that must reach only this emulator.

    AWS_ENDPOINT_URL catches every service a provider's `endpoints` block forgets: the SDKs send it here
    instead of to AWS.
    """
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, **CREDENTIALS}


class AwsEmulator:
    """A moto server with the shim, listening on 127.0.0.1 only; stopped by `stop()` or leaving `with`."""

    def __init__(
        self,
        port: int | None = None,
        *,
        in_process: bool = False,
        load_managed_policies: bool = True,
        shim: bool = True,
        log_path: Path | None = None,
    ):
        self.port = port or free_port()
        self.in_process = in_process
        self.shim = shim
        self.load_managed_policies = load_managed_policies
        self._owned_dir: Path | None = None
        if log_path is None:
            self._owned_dir = Path(tempfile.mkdtemp(prefix="classwire-aws-"))
            log_path = self._owned_dir / "moto.log"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self._log: IO[str] | None = None
        self._thread_server: ThreadedMotoServer | None = None
        self.startup_seconds: float | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def client_environment(self) -> dict[str, str]:
        return client_environment(self.endpoint)

    def client(self, service: str) -> Any:
        """A boto3 client for `service` that talks to this emulator.

        Typed Any: boto3-stubs type a client per literal service name, and `service` is any name.
        """
        import boto3

        new_client: Callable[..., Any] = boto3.client
        return new_client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def start(self) -> AwsEmulator:
        started = time.monotonic()
        # Stopped when this interpreter exits normally even if nobody calls stop(); a killed interpreter
        # is covered by the child itself, which exits once its parent is gone (`serve`).
        atexit.register(self.stop)
        if self.in_process:
            self._start_thread()
        else:
            self._start_process()
        self.wait_ready()
        self.startup_seconds = time.monotonic() - started
        return self

    def _start_process(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **moto_environment(self.load_managed_policies)}
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "localcloud.emulator",
                "--port",
                str(self.port),
                "--parent-pid",
                str(os.getpid()),
                *([] if self.shim else ["--without-shim"]),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the orchestrator, not moto directly
        )

    def _start_thread(self) -> None:
        os.environ.update(moto_environment(self.load_managed_policies))
        if self.shim:
            from localcloud import moto_shim

            moto_shim.apply()
        from moto.server import ThreadedMotoServer

        self._thread_server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        self._thread_server.start()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"moto server exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/config", timeout=2) as response:
                    if response.status < 300:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError(f"moto server did not become ready on {self.endpoint}: {self.log_tail()}")

    def reset(self) -> None:
        """Forget every resource (moto's own reset API)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text()[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        atexit.unregister(self.stop)
        if self._thread_server is not None:
            self._thread_server.stop()
            self._thread_server = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)

    def __enter__(self) -> AwsEmulator:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def exit_with_parent(parent_pid: int, interval: float = 0.5) -> threading.Thread:
    """Exit this process (the server) as soon as `parent_pid` is no longer its parent.

    The child runs in its own session, so a test run killed with SIGKILL, or a crash, would otherwise leave
    it listening; once the parent dies the child is re-parented and `os.getppid()` changes.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(0)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def serve(port: int, shim: bool = True, parent_pid: int | None = None) -> None:
    """Apply the shim in this process, then run moto's own server on 127.0.0.1 until SIGTERM/SIGINT
    (or until `parent_pid`, when given, exits)."""
    if parent_pid is not None:
        exit_with_parent(parent_pid)
    for name, value in moto_environment().items():
        os.environ.setdefault(name, value)
    if shim:
        from localcloud import moto_shim

        moto_shim.apply()
    from moto import server

    server.main(["--host", HOST, "--port", str(port)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=4566, help="port on 127.0.0.1 (default 4566)")
    parser.add_argument(
        "--without-shim",
        action="store_true",
        help="plain moto, to see which gaps a new moto version has closed (localcloud/moto_shim.py)",
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        help="exit when this process (the one that started the server) is gone",
    )
    args = parser.parse_args(argv)
    serve(args.port, shim=not args.without_shim, parent_pid=args.parent_pid)


if __name__ == "__main__":
    main()
