"""Runs the browser test (classroom.browser.test.mjs: Playwright driving Debian's chromium) against the
real local system as part of `make test`.

The system is the one `make deploy` serves, started the way the end-to-end tests start it: real
redis-server (a primary and a replica, so the test can fail it over), the AWS emulator, the gateway
with warm Lambda workers running the real handlers, and the demo page with its local token endpoint
(`DemoWebServer`, wired to the system as `localcloud.deploy` wires it), all on free ports on 127.0.0.1.

Faults the page cannot cause itself are asked for over HTTP (CLASSWIRE_CONTROL_URL):
    POST /redis/hold-replica  the replica stops receiving writes (once it has every write so far)
    POST /redis/failover      the replica is promoted: writes made since the hold are lost
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from classwire.settings import Limits
from localcloud.cache import ReplicationGroup
from localcloud.system import LocalSystem
from localcloud.web_server import DemoWebServer

HERE = Path(__file__).resolve().parent
TEST_FILE = "classroom.browser.test.mjs"
NODE_TIMEOUT_SECONDS = 300
# A classroom of more than 3 users is crowded (LIVE_MAX in the test file), so a few pages show it; leaves are
# announced at once, so a closed page leaves the teacher's roster while the test waits.
BROWSER_LIMITS = Limits(presence_live_max_users=3, presence_grace_seconds=0)

pytestmark = [
    pytest.mark.slow,
    # Only a machine without Node skips (as tests/test_js_client.py does); a missing chromium or
    # node_modules is a broken setup, and fails.
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]


def chromium_path() -> str | None:
    configured = os.environ.get("CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )


class Controls:
    """The fault endpoints of CLASSWIRE_CONTROL_URL, on 127.0.0.1."""

    def __init__(self, system: LocalSystem):
        self.system = system
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="browser-controls", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> Controls:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _group(self) -> ReplicationGroup:
        group = self.system.redis
        assert isinstance(group, ReplicationGroup)  # the browser suite's system is replicated
        return group

    def hold_replica(self) -> dict:
        group = self._group()
        group.wait_in_sync()
        # As in tests/core/test_failover.py: the replica follows a primary that is not there.
        group.replica.client().replicaof("127.0.0.1", 1)
        return {"held": True}

    def failover(self) -> dict:
        self.system.failover()
        return {"failovers": self._group().failovers}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        controls = self
        actions = {"/redis/hold-replica": controls.hold_replica, "/redis/failover": controls.failover}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                action = actions.get(self.path)
                if action is None:
                    self._send(HTTPStatus.NOT_FOUND, {"error": f"no control {self.path}"})
                    return
                try:
                    with controls._lock:
                        self._send(HTTPStatus.OK, action())
                except Exception as error:  # noqa: BLE001 (reported to the browser test, which fails on it)
                    self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": repr(error)})

            def _send(self, status: int, body: dict) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


@contextlib.contextmanager
def local_system() -> Iterator[tuple[str, str]]:
    """(demo page URL, control URL) of a running local system, wired as `localcloud.deploy` wires it."""
    with (
        LocalSystem(key=secrets.token_urlsafe(48), redis="replicated", limits=BROWSER_LIMITS) as system,
        DemoWebServer(
            lambda user, classroom, role, name: system.token(user, classroom, role, name),
            system.websocket_url,
        ) as web,
        Controls(system) as controls,
    ):
        yield web.url, controls.url


def test_demo_page_in_chromium_against_the_local_system():
    # Checked before anything starts, so a broken setup fails at once, saying what to run.
    chromium = chromium_path()
    assert chromium, (
        f"chromium not found ({os.environ.get('CHROMIUM') or 'chromium on PATH, /usr/bin/chromium'}): "
        "run `make install`"
    )
    assert (HERE / "node_modules" / "playwright-core").is_dir(), (
        "tests/browser/node_modules is missing: run `make install` (npm ci in tests/browser)"
    )
    with local_system() as (web_url, control_url):
        env = {
            **os.environ,
            "CLASSWIRE_WEB_URL": web_url,
            "CLASSWIRE_CONTROL_URL": control_url,
            "CHROMIUM": chromium,
        }
        result = subprocess.run(
            ["node", "--test", "--test-reporter=tap", TEST_FILE],
            cwd=HERE,
            env=env,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_SECONDS,
        )
    summary = [line for line in result.stdout.splitlines() if line.startswith(("# pass", "# fail"))]
    print("\n".join(summary))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "# fail 0" in result.stdout, result.stdout[-6000:]
