"""The demo classroom page and its local-only token endpoint, on 127.0.0.1.

    GET /                 the page (localcloud/web/)
    GET /classwire.js     the JavaScript client (clients/js/classwire.js): one copy, not vendored
    GET /local/token?user=<id>&classroom=<id>&role=teacher|student&name=<display name>
                          -> {"token": "<JWT granting that classroom>", "url": "<websocket url>"}

The token endpoint exists only here: in AWS tokens come from the platform's identity provider.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from classwire.auth import CLASSROOM_ID
from classwire.roles import ROLES
from classwire_infra.paths import ROOT

FILES = {
    "/": (ROOT / "localcloud/web/index.html", "text/html; charset=utf-8"),
    "/index.html": (ROOT / "localcloud/web/index.html", "text/html; charset=utf-8"),
    "/app.js": (ROOT / "localcloud/web/app.js", "text/javascript; charset=utf-8"),
    "/style.css": (ROOT / "localcloud/web/style.css", "text/css; charset=utf-8"),
    "/classwire.js": (ROOT / "clients/js/classwire.js", "text/javascript; charset=utf-8"),
}
# Classroom ids: exactly the authorizer's rule. User ids: the authorizer takes any 1-128 characters of
# `sub`; the demo mints only plain ones, so a typed name can never make a surprising token.
USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")

TokenIssuer = Callable[[str, str, str, str], str]  # (user, classroom, role, name) -> JWT


class DemoWebServer:
    """Serves the page until stopped; `issue_token` signs with the local key, `websocket_url` is the stage."""

    def __init__(self, issue_token: TokenIssuer, websocket_url: str, port: int = 0):
        self.issue_token = issue_token
        self.websocket_url = websocket_url
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-web", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def start(self) -> DemoWebServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> DemoWebServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def token_response(self, query: str) -> tuple[int, dict]:
        params = {key: values[-1] for key, values in parse_qs(query).items()}
        user, classroom = params.get("user", ""), params.get("classroom", "")
        role, name = params.get("role", "student"), params.get("name", "")[:64]
        if not USER_ID.fullmatch(user):
            return HTTPStatus.BAD_REQUEST, {"error": "user must match " + USER_ID.pattern}
        if not CLASSROOM_ID.fullmatch(classroom):
            return HTTPStatus.BAD_REQUEST, {"error": "classroom must match " + CLASSROOM_ID.pattern}
        if role not in ROLES:
            return HTTPStatus.BAD_REQUEST, {"error": "role must be teacher or student"}
        return HTTPStatus.OK, {
            "token": self.issue_token(user, classroom, role, name),
            "url": self.websocket_url,
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "classwire-local"

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/local/token":
                    status, body = site.token_response(url.query)
                    self._send(status, json.dumps(body).encode(), "application/json")
                elif url.path in FILES:
                    path, content_type = FILES[url.path]
                    self._send(HTTPStatus.OK, path.read_bytes(), content_type)
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the terminal shows the system's log, not every file fetch

        return Handler
