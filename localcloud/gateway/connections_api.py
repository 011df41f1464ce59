"""The `@connections` management API: POST, GET and DELETE `/STAGE/@connections/{id}` on the gateway's
own host and port, answered with API Gateway's statuses and error shapes.

- POST sends the body to the connection (200), split into frames by the data plane; 410 GoneException
  for a connection that is gone or closing, 413 PayloadTooLargeException over the message quota.
- GET answers connectedAt, identity and lastActiveAt; DELETE closes the connection with 1000 (204).
- A request without a SigV4 `Authorization` header, or to any other path or method, is 403
  MissingAuthenticationTokenException. Signatures are not verified.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import http
import json
import random
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from websockets.exceptions import ConnectionClosed

from localcloud import draw_fault
from localcloud.gateway.connection import CLOSED_NORMALLY
from localcloud.gateway.quotas import ChildArgument

if TYPE_CHECKING:
    from localcloud.gateway.data_plane import Gateway


@dataclass(frozen=True)
class PostFaults(ChildArgument):
    """`@connections` POSTs answered as a struggling API Gateway would, for fault tests: throttled (429),
    failed (500) or not answered for `hang_seconds` (past the caller's timeout), each with its probability
    from a seeded generator. Such a frame is not delivered."""

    throttled: float = 0.0
    failed: float = 0.0
    hung: float = 0.0
    hang_seconds: float = 5.0
    seed: int = 0


class ConnectionsApi:
    """Serves the HTTP connections the gateway's front door hands over (`serve`), against the
    gateway's open connections."""

    def __init__(self, gateway: Gateway, post_faults: PostFaults | None = None) -> None:
        self.gateway = gateway
        self.post_faults = post_faults
        self._faults_random = random.Random(post_faults.seed if post_faults else 0)
        self._writers: set[asyncio.StreamWriter] = set()

    def close(self) -> None:
        """Drops every open HTTP connection (the gateway is stopping)."""
        for writer in list(self._writers):
            writer.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    return
                try:
                    method, target, _ = line.decode("latin-1").split(" ", 2)
                except ValueError:
                    await _write_response(writer, 400, {}, b"", close=True)
                    return
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                if length > 4 * self.gateway.quotas.message_bytes:
                    await _write_response(
                        writer, *_aws_error(413, "PayloadTooLargeException", "Payload too large"), close=True
                    )
                    return
                body = await reader.readexactly(length) if length else b""
                status, extra, payload = await self._manage(method, target, headers, body)
                close = headers.get("connection", "").lower() == "close"
                await _write_response(writer, status, extra, payload, close=close)
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _manage(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict, bytes]:
        path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
        prefix = f"/{self.gateway.manifest.stage}/@connections/"
        if not path.startswith(prefix) or path == prefix or method not in ("GET", "POST", "DELETE"):
            return _aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        if not headers.get("authorization", "").startswith("AWS4-HMAC-SHA256"):
            return _aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        connection = self.gateway.connections.get(path[len(prefix) :])
        if connection is None or connection.gone:
            return 410, {"x-amzn-ErrorType": "GoneException"}, b""
        if method == "POST":
            if len(body) > self.gateway.quotas.message_bytes:
                return _aws_error(413, "PayloadTooLargeException", "Message too long")
            fault = self._post_fault()
            if fault == "hung":
                assert self.post_faults is not None  # faults are only drawn from post_faults
                await asyncio.sleep(self.post_faults.hang_seconds)
                return _aws_error(504, "GatewayTimeout", "timed out")
            if fault == "throttled":
                return _aws_error(429, "LimitExceededException", "Rate exceeded")
            if fault == "failed":
                return _aws_error(500, "InternalServerErrorException", "Internal server error")
            try:
                await self.gateway.send(connection, body)
            except ConnectionClosed:
                return 410, {"x-amzn-ErrorType": "GoneException"}, b""
            return 200, {}, b""
        if method == "DELETE":
            connection.close_cause = CLOSED_NORMALLY
            task = asyncio.create_task(connection.socket.close(1000))
            connection.tasks.add(task)
            task.add_done_callback(connection.tasks.discard)
            return 204, {}, b""
        info = {
            "connectedAt": _iso(connection.connected_at),
            "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
            "lastActiveAt": _iso(connection.last_active_at),
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(info).encode()

    def _post_fault(self) -> str | None:
        faults = self.post_faults
        if faults is None:
            return None
        return draw_fault(
            self._faults_random, {"throttled": faults.throttled, "failed": faults.failed, "hung": faults.hung}
        )


def _iso(epoch_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _aws_error(status: int, error_type: str, message: str) -> tuple[int, dict, bytes]:
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": error_type}
    return status, headers, json.dumps({"message": message}).encode()


async def _write_response(
    writer: asyncio.StreamWriter, status: int, headers: dict, body: bytes, close: bool = False
) -> None:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        f"x-amzn-RequestId: {uuid.uuid4()}",
        f"Content-Length: {len(body)}",
        f"Connection: {'close' if close else 'keep-alive'}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
