"""API Gateway's WebSocket data plane on 127.0.0.1, serving one stage of a deployment manifest.

Clients connect to `ws://127.0.0.1:PORT/STAGE?token=...`; the `@connections` management API answers on
the same host and port under `/STAGE/@connections/{id}`, so `http://127.0.0.1:PORT/STAGE` is the endpoint
the handlers' boto3 calls use. Lambda handlers run in warm worker processes (`lambda_runtime`).

What it does the way API Gateway does it:
- `$connect`: a missing or empty identity source is 401 without invoking the authorizer; the REQUEST
  authorizer's `Unauthorized` error is 401, a policy that does not allow `execute-api:Invoke` on the
  methodArn (`.../STAGE/$connect`) is 403, any other failure (error, malformed response, context value
  that is an object or array, result over 8 KB) is 500. Context values reach the integrations
  stringified, with `principalId` and `integrationLatency`. The `$connect` integration's non-2xx
  `statusCode` rejects the upgrade with that status; its failure is 502. Only then is the connection open.
- Frames: the route comes from the route selection expression (`$request.body.action`); a frame that is
  not JSON, or names no known route, goes to `$default`; with no `$default` the caller gets
  `{"message": "Forbidden", ...}`. Integrations run concurrently, even for one connection. A failed or
  timed-out integration (29 s) sends `{"message": "Internal server error", "connectionId", "requestId"}`.
  Two-way routes send the handler's `body` back.
- Limits: a frame over 32 KB or a message over 128 KB closes with 1009, a binary frame with 1003; no data
  frame in either direction for 10 minutes closes with 1001 (pings do not count), as does reaching the
  2-hour maximum. Outgoing messages over 32 KB are split into 32 KB frames.
- `$disconnect` gets `disconnectStatusCode`/`disconnectReason` after the connection is gone (a POST to
  it is then 410).
- `@connections`: POST (200; 410 gone; 413 over 128 KB), GET (connectedAt, identity, lastActiveAt),
  DELETE (204, closes with 1000); a request without a SigV4 `Authorization` header is 403 Missing
  Authentication Token. Signatures are not verified.

    python -m localcloud.gateway --manifest cdktf.out/local/manifest.json --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import email.utils
import fnmatch
import http
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.server import Server, ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, PayloadTooBig, ProtocolError
from websockets.frames import OP_BINARY, OP_CONT, OP_TEXT, CloseCode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from localcloud import draw_fault, python_env
from localcloud.lambda_runtime import Invocation, LambdaRuntime
from localcloud.manifest import Manifest, RouteSpec

log = logging.getLogger("localcloud.gateway")

HOST = "127.0.0.1"
AUTHORIZER_RESULT_LIMIT = 8 * 1024
URL_LIMIT = 4096
CLOSED_NORMALLY = (1000, "Connection Closed Normally")
GOING_AWAY = (1001, "Going away")


@dataclass(frozen=True)
class Limits:
    """API Gateway's WebSocket quotas; tests shrink them."""

    frame_bytes: int = 32 * 1024
    message_bytes: int = 128 * 1024
    idle_timeout: float = 10 * 60
    max_duration: float = 2 * 3600
    integration_timeout: float = 29.0


@dataclass(frozen=True)
class PostFaults:
    """`@connections` POSTs answered as a struggling API Gateway would, for fault tests: throttled (429),
    failed (500) or not answered for `hang_seconds` (past the caller's timeout), each with its probability
    from a seeded generator. Such a frame is not delivered."""

    throttled: float = 0.0
    failed: float = 0.0
    hung: float = 0.0
    hang_seconds: float = 5.0
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


@dataclass(eq=False)
class _Connection:
    id: str
    socket: ServerConnection
    connected_at: int  # epoch ms, as in the events
    last_active_at: int
    source_ip: str
    user_agent: str
    domain_name: str
    authorizer: dict | None
    tasks: set[asyncio.Task] = field(default_factory=set)
    # Why the gateway closed it (idle, duration, DELETE, shutdown); None when the client did.
    close_cause: tuple[int, str] | None = None

    def touch(self) -> None:
        self.last_active_at = _now_ms()

    @property
    def gone(self) -> bool:
        return self.close_cause is not None or self.socket.state.name != "OPEN"


@dataclass
class _Opening:
    """What the handshake learned, handed to the connection once the upgrade succeeds."""

    id: str
    connected_at: int
    source_ip: str
    user_agent: str
    domain_name: str
    authorizer: dict | None


class _ApiGatewayProtocol(ServerProtocol):
    """Adds API Gateway's per-frame limit and its refusal of binary frames to the message limit."""

    def __init__(self, frame_bytes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.frame_bytes = frame_bytes
        self.failure: tuple[int, str] | None = None

    def recv_frame(self, frame) -> None:
        if frame.opcode in (OP_TEXT, OP_BINARY, OP_CONT) and len(frame.data) > self.frame_bytes:
            self.failure = (CloseCode.MESSAGE_TOO_BIG, "Message too big")
            raise PayloadTooBig(len(frame.data), self.frame_bytes)
        if frame.opcode is OP_BINARY:
            self.failure = (CloseCode.UNSUPPORTED_DATA, "Binary frames are not supported")
            self.fail(*self.failure)
            raise ProtocolError("binary frame")
        super().recv_frame(frame)

    def fail(self, code: int, reason: str = "") -> None:
        if self.failure is None and code == CloseCode.MESSAGE_TOO_BIG:
            self.failure = (code, "Message too big")
        super().fail(code, reason)


class Gateway:
    """`await gateway.start()` binds the port; `await gateway.stop()` disconnects everyone and stops the
    workers. See `GatewayThread` to run one beside synchronous code."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        host: str = HOST,
        port: int = 0,
        limits: Limits = Limits(),
        environment: dict[str, str] | None = None,
        max_concurrency: int = 10,
        log_dir: Path | None = None,
        post_faults: PostFaults | None = None,
    ) -> None:
        self.manifest = manifest
        self.host = host
        self.port = port
        self.limits = limits
        self.post_faults = post_faults
        self._faults_random = random.Random(post_faults.seed if post_faults else 0)
        self.runtime = LambdaRuntime(
            manifest, environment=environment, max_concurrency=max_concurrency, log_dir=log_dir
        )
        self.connections: dict[str, _Connection] = {}
        self._opening: dict[ServerConnection, _Opening] = {}
        self._http: set[asyncio.StreamWriter] = set()
        # Invocations still running, including those API Gateway already gave up on.
        self._inflight: set[asyncio.Future] = set()
        self._ws: Server | None = None
        self._listener: asyncio.Server | None = None

    @property
    def websocket_url(self) -> str:
        return f"ws://{self.host}:{self.port}/{self.manifest.stage}"

    @property
    def management_endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/{self.manifest.stage}"

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> Gateway:
        self._ws = Server(
            self._serve_connection,
            process_request=self._open,
            server_header=None,
            # The authorizer and $connect each get the integration timeout, cold starts included.
            open_timeout=2 * self.limits.integration_timeout + 10,
            logger=logging.getLogger("localcloud.gateway.websockets"),
        )
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(lambda: _FrontDoor(self), self.host, self.port)
        self._ws.wrap(self._listener)
        self.port = self._listener.sockets[0].getsockname()[1]
        log.info("serving %s (@connections at %s)", self.websocket_url, self.management_endpoint)
        return self

    async def stop(self) -> None:
        """Close every connection with 1001 (their `$disconnect` runs), then stop the workers."""
        if self._ws is None:
            return
        for connection in self.connections.values():
            connection.close_cause = connection.close_cause or GOING_AWAY
        for writer in list(self._http):
            writer.close()
        self._ws.close()
        await self._ws.wait_closed()
        tasks = [task for connection in self.connections.values() for task in connection.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.runtime.close()  # ends the invocations still running, so they can be awaited
        await asyncio.gather(*self._inflight, return_exceptions=True)
        self._ws = None

    # --- the WebSocket side -----------------------------------------------------------------------

    def _websocket_protocol(self) -> ServerConnection:
        protocol = _ApiGatewayProtocol(
            self.limits.frame_bytes,
            max_size=self.limits.message_bytes,
            logger=logging.getLogger("localcloud.gateway.websockets"),
        )
        # API Gateway sends no pings of its own; it answers the client's.
        return ServerConnection(protocol, self._ws, ping_interval=None, ping_timeout=None, close_timeout=5)

    async def _open(self, socket: ServerConnection, request: Request) -> Response | None:
        """The upgrade request: authorizer, then `$connect`; a Response here rejects the upgrade."""
        url = urllib.parse.urlsplit(request.path)
        if len(request.path) > URL_LIMIT:
            return _reject(414, "Request-URI Too Long")
        if url.path.rstrip("/") != f"/{self.manifest.stage}":
            return _reject(403, "Forbidden", "ForbiddenException")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return _reject(426, "Upgrade Required")
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        opening = _Opening(
            id=_new_id(),
            connected_at=_now_ms(),
            source_ip=socket.remote_address[0] if socket.remote_address else HOST,
            user_agent=request.headers.get("User-Agent", ""),
            domain_name=request.headers.get("Host", f"{self.host}:{self.port}"),
            authorizer=None,
        )
        headers, multi_headers = _headers(request.headers, opening)
        single_query = {name: values[-1] for name, values in query.items()}
        connect = self.manifest.route("$connect")
        # The authorizer and the $connect integration see the same request id, as on AWS.
        request_id = _new_id()

        if connect is not None and connect.authorized and self.manifest.authorizer is not None:
            rejection, context = await self._authorize(
                opening, request, headers, multi_headers, query, request_id
            )
            if rejection is not None:
                return rejection
            opening.authorizer = context

        if connect is not None:
            event = {
                "headers": {k: v for k, v in headers.items() if k.lower() not in _HOP_HEADERS},
                "multiValueHeaders": {
                    k: v for k, v in multi_headers.items() if k.lower() not in _HOP_HEADERS
                },
                **(
                    {"queryStringParameters": single_query, "multiValueQueryStringParameters": query}
                    if query
                    else {}
                ),
                "requestContext": self._request_context(opening, "$connect", "CONNECT", request_id),
                "isBase64Encoded": False,
            }
            result = await self._integrate(connect.function, event, request_id)
            if not result.ok:
                return _reject(502, "Internal server error", "InternalServerErrorException")
            status = (
                (result.payload or {}).get("statusCode", 200) if isinstance(result.payload, dict) else 200
            )
            try:
                status = int(status)
            except (TypeError, ValueError):
                return _reject(502, "Internal server error", "InternalServerErrorException")
            if not 200 <= status < 300:
                return _status_response(status, _body(result.payload))
        self._opening[socket] = opening
        return None

    async def _authorize(
        self,
        opening: _Opening,
        request: Request,
        headers: dict,
        multi_headers: dict,
        query: dict,
        request_id: str,
    ) -> tuple[Response | None, dict | None]:
        authorizer = self.manifest.authorizer
        assert authorizer is not None
        for source in authorizer.identity_source:
            if not _identity_value(source, request.headers, query):
                return _reject(401, "Unauthorized", "UnauthorizedException"), None
        m = self.manifest
        method_arn = f"arn:aws:execute-api:{m.region}:{m.account_id}:{m.api_id}/{m.stage}/$connect"
        event = {
            "type": "REQUEST",
            "methodArn": method_arn,
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": {name: values[-1] for name, values in query.items()},
            "multiValueQueryStringParameters": query,
            "stageVariables": {},
            "requestContext": self._request_context(opening, "$connect", "CONNECT", request_id),
        }
        started = time.monotonic()
        result = await self._integrate(authorizer.function, event, request_id)
        latency = int((time.monotonic() - started) * 1000)
        if not result.ok:
            if result.error_message == "Unauthorized":
                return _reject(401, "Unauthorized", "UnauthorizedException"), None
            log.warning(
                "authorizer failed: %s: %s", (result.error or {}).get("errorType"), result.error_message
            )
            return _reject(500, "Internal server error", "AuthorizerFailureException"), None
        try:
            allowed, context = _evaluate_authorizer_result(result.payload, method_arn)
        except ValueError as problem:
            log.warning("authorizer returned an invalid result: %s", problem)
            return _reject(500, "Internal server error", "AuthorizerConfigurationException"), None
        if not allowed:
            return _reject(403, "Forbidden", "AccessDeniedException"), None
        return None, {**context, "integrationLatency": latency}

    async def _serve_connection(self, socket: ServerConnection) -> None:
        opening = self._opening.pop(socket)
        connection = _Connection(
            id=opening.id,
            socket=socket,
            connected_at=opening.connected_at,
            last_active_at=opening.connected_at,
            source_ip=opening.source_ip,
            user_agent=opening.user_agent,
            domain_name=opening.domain_name,
            authorizer=opening.authorizer,
        )
        self.connections[connection.id] = connection
        watchdog = asyncio.create_task(self._watch(connection))
        try:
            async for message in socket:
                connection.touch()
                task = asyncio.create_task(self._on_message(connection, message))
                connection.tasks.add(task)
                task.add_done_callback(connection.tasks.discard)
        except ConnectionClosed:
            pass
        finally:
            watchdog.cancel()
            self.connections.pop(connection.id, None)
            await self._disconnected(connection)

    async def _watch(self, connection: _Connection) -> None:
        """Idle timeout and maximum duration, measured on the wall clock like connectedAt."""
        while True:
            now = _now_ms()
            idle_at = connection.last_active_at + self.limits.idle_timeout * 1000
            end_at = connection.connected_at + self.limits.max_duration * 1000
            if now >= min(idle_at, end_at):
                connection.close_cause = GOING_AWAY
                await connection.socket.close(*GOING_AWAY)
                return
            await asyncio.sleep((min(idle_at, end_at) - now) / 1000)

    async def _disconnected(self, connection: _Connection) -> None:
        route = self.manifest.route("$disconnect")
        if route is None:
            return
        code, reason = _close_cause(connection)
        request_id = _new_id()
        context = self._request_context(connection, "$disconnect", "DISCONNECT", request_id)
        context.update(disconnectStatusCode=code, disconnectReason=reason)
        host = connection.domain_name
        event = {
            "headers": {"Host": host, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""},
            "multiValueHeaders": {
                "Host": [host],
                "x-api-key": [""],
                "X-Forwarded-For": [""],
                "x-restapi": [""],
            },
            "requestContext": context,
            "isBase64Encoded": False,
        }
        await self._integrate(route.function, event, request_id)

    async def _on_message(self, connection: _Connection, text: str) -> None:
        try:
            await self._route_message(connection, text)
        except Exception:
            log.exception("message from %s failed", connection.id)

    async def _route_message(self, connection: _Connection, text: str) -> None:
        request_id = _new_id()
        route = self._select_route(text)
        if route is None:
            await self._send_quietly(connection, _gateway_error("Forbidden", connection.id, request_id))
            return
        event = {
            "requestContext": {
                **self._request_context(connection, route.key, "MESSAGE", request_id),
                "messageId": _new_id(),
            },
            "body": text,
            "isBase64Encoded": False,
        }
        result = await self._integrate(route.function, event, request_id)
        if not result.ok:
            await self._send_quietly(
                connection, _gateway_error("Internal server error", connection.id, request_id)
            )
        elif route.two_way:
            body = _body(result.payload)
            if body:
                await self._send_quietly(connection, body)

    def _select_route(self, text: str) -> RouteSpec | None:
        key = None
        try:
            value = json.loads(text)
            for part in self.manifest.route_selection_expression.removeprefix("$request.body.").split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, str):
                key = value
            elif value is not None and not isinstance(value, (dict, list)):
                key = json.dumps(value)
        except ValueError:
            pass
        route = self.manifest.route(key) if key not in (None, "$connect", "$disconnect") else None
        return route or self.manifest.route("$default")

    async def _integrate(self, function: str, event: dict, request_id: str) -> Invocation:
        """Invoke a Lambda as an integration: API Gateway gives up after its integration timeout."""
        # Lambda's request id is its own, not API Gateway's.
        invocation = asyncio.ensure_future(self.runtime.invoke(function, event))
        self._inflight.add(invocation)
        invocation.add_done_callback(self._inflight.discard)
        try:
            return await asyncio.wait_for(asyncio.shield(invocation), self.limits.integration_timeout)
        except TimeoutError:
            log.warning("%s: integration timed out after %ss", function, self.limits.integration_timeout)
            return Invocation(
                False, error={"errorMessage": "Endpoint request timed out", "errorType": "Timeout"}
            )

    def _request_context(
        self, connection: _Connection | _Opening, route_key: str, event_type: str, request_id: str
    ) -> dict:
        now = _now_ms()
        context = {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now / 1000)),
            "messageDirection": "IN",
            "stage": self.manifest.stage,
            "connectedAt": connection.connected_at,
            "requestTimeEpoch": now,
            "identity": {"userAgent": connection.user_agent, "sourceIp": connection.source_ip},
            "requestId": request_id,
            "domainName": connection.domain_name,
            "connectionId": connection.id,
            "apiId": self.manifest.api_id,
        }
        if connection.authorizer is not None:
            context["authorizer"] = dict(connection.authorizer)
        return context

    async def send(self, connection: _Connection, data: str | bytes) -> None:
        """One message to a client, split into frames of at most the frame limit."""
        if isinstance(data, bytes):
            try:
                data = data.decode()
            except UnicodeDecodeError:
                await connection.socket.send(data)
                connection.touch()
                return
        encoded = data.encode()
        if len(encoded) <= self.limits.frame_bytes:
            await connection.socket.send(data)
        else:
            await connection.socket.send(_fragments(encoded, self.limits.frame_bytes))
        connection.touch()

    async def _send_quietly(self, connection: _Connection, data: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.send(connection, data)

    # --- the @connections management API ---------------------------------------------------------

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._http.add(writer)
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
                if length > 4 * self.limits.message_bytes:
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
            self._http.discard(writer)
            writer.close()

    async def _manage(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict, bytes]:
        path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
        prefix = f"/{self.manifest.stage}/@connections/"
        if not path.startswith(prefix) or path == prefix or method not in ("GET", "POST", "DELETE"):
            return _aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        if not headers.get("authorization", "").startswith("AWS4-HMAC-SHA256"):
            return _aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        connection = self.connections.get(path[len(prefix) :])
        if connection is None or connection.gone:
            return 410, {"x-amzn-ErrorType": "GoneException"}, b""
        if method == "POST":
            if len(body) > self.limits.message_bytes:
                return _aws_error(413, "PayloadTooLargeException", "Message too long")
            fault = self._post_fault()
            if fault == "hung":
                await asyncio.sleep(self.post_faults.hang_seconds)
                return _aws_error(504, "GatewayTimeout", "timed out")
            if fault == "throttled":
                return _aws_error(429, "LimitExceededException", "Rate exceeded")
            if fault == "failed":
                return _aws_error(500, "InternalServerErrorException", "Internal server error")
            try:
                await self.send(connection, body)
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


class _FrontDoor(asyncio.Protocol):
    """Reads the request line, then hands the TCP connection to the WebSocket or the HTTP side."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\n")
        if end < 0:
            if len(self.buffer) > URL_LIMIT + 64:
                self.transport.close()
            return
        method, _, rest = self.buffer[:end].partition(b" ")
        target = rest.partition(b" ")[0]
        if method == b"GET" and b"/@connections" not in target and b"/%40connections" not in target:
            protocol: asyncio.Protocol = self.gateway._websocket_protocol()
        else:
            protocol = asyncio.StreamReaderProtocol(asyncio.StreamReader(), self.gateway._serve_http)
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(self.buffer)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class GatewayThread:
    """A gateway on its own event loop in a background thread, for synchronous callers and tests.

    with GatewayThread(manifest, limits=Limits(idle_timeout=1)) as gateway:
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
        except BaseException as exc:
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
        limits: Limits = Limits(),
        environment: dict[str, str] | None = None,
        max_concurrency: int = 10,
        post_faults: PostFaults | None = None,
    ) -> None:
        from localcloud.cache import free_port

        self.post_faults = post_faults
        self.manifest = manifest
        self.work_dir = work_dir
        self.port = port or free_port()
        self.limits = limits
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
        root = Path(__file__).resolve().parent.parent
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
            "--idle-timeout",
            str(self.limits.idle_timeout),
            "--max-duration",
            str(self.limits.max_duration),
            *(f"--env={name}={value}" for name, value in self.environment.items()),
            *([f"--post-faults={self.post_faults.to_json()}"] if self.post_faults else []),
        ]
        env = python_env()
        offset = self._log.stat().st_size if self._log.exists() else 0
        with self._log.open("a") as log_file:
            self.process = subprocess.Popen(
                argv, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
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


# --- helpers --------------------------------------------------------------------------------------

# Headers API Gateway does not pass on to the $connect integration.
_HOP_HEADERS = {"connection", "upgrade", "content-length"}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _new_id() -> str:
    """An id shaped like API Gateway's (connection, request and message ids): 16 base64 characters."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode()


def _iso(epoch_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _headers(headers: Headers, opening: _Opening) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The request headers as API Gateway forwards them, with the ones its front end adds."""
    multi: dict[str, list[str]] = {}
    for name, value in headers.raw_items():
        multi.setdefault(name, []).append(value)
    multi.setdefault(
        "X-Amzn-Trace-Id", [f"Root=1-{opening.connected_at // 1000:08x}-{uuid.uuid4().hex[:24]}"]
    )
    multi.setdefault("X-Forwarded-For", [opening.source_ip])
    multi.setdefault("X-Forwarded-Port", [str(opening.domain_name.rpartition(":")[2] or 80)])
    multi.setdefault("X-Forwarded-Proto", ["http"])
    return {name: ",".join(values) for name, values in multi.items()}, multi


def _identity_value(source: str, headers: Headers, query: dict[str, list[str]]) -> str:
    kind, _, name = source.removeprefix("route.request.").partition(".")
    if kind == "querystring":
        return (query.get(name) or [""])[-1]
    if kind == "header":
        return headers.get(name, "")
    raise ValueError(f"unsupported identity source {source!r}")


def _evaluate_authorizer_result(result: object, method_arn: str) -> tuple[bool, dict]:
    """(allowed, requestContext.authorizer) from a REQUEST authorizer's IAM policy result."""
    if not isinstance(result, dict):
        raise ValueError("result is not an object")
    if len(json.dumps(result)) > AUTHORIZER_RESULT_LIMIT:
        raise ValueError("result is larger than 8 KB")
    principal = result.get("principalId")
    statements = (result.get("policyDocument") or {}).get("Statement")
    if principal is None or not isinstance(statements, list):
        raise ValueError("result needs principalId and policyDocument.Statement")
    context = {}
    for key, value in (result.get("context") or {}).items():
        if isinstance(value, (dict, list)):
            raise ValueError(f"context value {key!r} is an object or array")
        # API Gateway hands every context value on as a string.
        context[key] = value if value is None or isinstance(value, str) else json.dumps(value)
    decisions = [
        statement.get("Effect")
        for statement in statements
        if _matches(statement.get("Action"), "execute-api:invoke", fold_case=True)
        and _matches(statement.get("Resource"), method_arn)
    ]
    allowed = "Allow" in decisions and "Deny" not in decisions
    return allowed, {**context, "principalId": principal}


def _matches(patterns: object, value: str, fold_case: bool = False) -> bool:
    """IAM's wildcards: `*` and `?` (actions compare case-insensitively, resources exactly)."""
    patterns = [patterns] if isinstance(patterns, str) else patterns or []
    fold = str.lower if fold_case else str
    return any(fnmatch.fnmatchcase(value, fold(pattern).replace("[", "[[]")) for pattern in patterns)


def _close_cause(connection: _Connection) -> tuple[int, str]:
    if connection.close_cause is not None:
        return connection.close_cause
    failure = getattr(connection.socket.protocol, "failure", None)
    if failure is not None:
        return failure
    received = connection.socket.protocol.close_rcvd
    if received is not None:
        return int(received.code), received.reason
    return 1006, "Connection closed abnormally"


def _body(payload: object) -> str:
    if not isinstance(payload, dict) or payload.get("body") is None:
        return ""
    body = payload["body"]
    return body if isinstance(body, str) else json.dumps(body)


def _gateway_error(message: str, connection_id: str, request_id: str) -> str:
    # API Gateway's own spacing, as clients see it.
    return f'{{"message": "{message}", "connectionId":"{connection_id}", "requestId":"{request_id}"}}'


def _fragments(encoded: bytes, size: int) -> Iterator[str]:
    start = 0
    while start < len(encoded):
        end = min(start + size, len(encoded))
        while end < len(encoded) and (encoded[end] & 0xC0) == 0x80:  # not inside a UTF-8 character
            end -= 1
        yield encoded[start:end].decode()
        start = end


def _status_response(status: int, body: str, error_type: str | None = None) -> Response:
    payload = body.encode()
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ]
    )
    if error_type:
        headers["x-amzn-ErrorType"] = error_type
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    return Response(status, reason, headers, payload)


def _reject(status: int, message: str, error_type: str | None = None) -> Response:
    return _status_response(status, json.dumps({"message": message}), error_type)


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


# --- command line ---------------------------------------------------------------------------------


async def serve(manifest: Manifest, port: int, **options) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly."""
    gateway = await Gateway(manifest, port=port, **options).start()
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
    parser = argparse.ArgumentParser(prog="python -m localcloud.gateway", description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", required=True, type=Path, help="deployment manifest (JSON)")
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
    parser.add_argument("--idle-timeout", type=float, default=Limits.idle_timeout, help="seconds")
    parser.add_argument("--max-duration", type=float, default=Limits.max_duration, help="seconds")
    parser.add_argument("--post-faults", help="PostFaults as JSON: fail @connections POSTs (fault tests)")
    parser.add_argument("--verbose", "-v", action="store_true", help="log every invocation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("localcloud.gateway.websockets").setLevel(logging.WARNING)
    environment = dict(item.split("=", 1) for item in args.env)
    limits = Limits(idle_timeout=args.idle_timeout, max_duration=args.max_duration)
    asyncio.run(
        serve(
            Manifest.load(args.manifest),
            args.port,
            limits=limits,
            environment=environment,
            log_dir=args.log_dir,
            max_concurrency=args.max_concurrency,
            post_faults=PostFaults(**json.loads(args.post_faults)) if args.post_faults else None,
        )
    )


if __name__ == "__main__":
    main()
