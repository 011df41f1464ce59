"""API Gateway's WebSocket data plane: the front door on one port, the upgrade (authorizer, then
`$connect`), route selection, the integrations, the quotas on frames and messages, idle and maximum
duration, and `$disconnect`. The `@connections` HTTP side is `connections_api`."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import json
import logging
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.server import Server, ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, PayloadTooBig, ProtocolError
from websockets.frames import OP_BINARY, OP_CONT, OP_TEXT, CloseCode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from localcloud import HOST
from localcloud.gateway.authorizer import evaluate_authorizer_result, identity_value
from localcloud.gateway.connection import GOING_AWAY, Connection, new_id, now_ms
from localcloud.gateway.connections_api import ConnectionsApi, PostFaults
from localcloud.gateway.quotas import GatewayQuotas
from localcloud.lambda_runtime import Invocation, LambdaRuntime
from localcloud.manifest import Manifest, RouteSpec

log = logging.getLogger("localcloud.gateway")

URL_LIMIT = 4096


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
    workers. See `GatewayThread` to run one beside synchronous code, `GatewayProcess` to run one as its
    own process."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        host: str = HOST,
        port: int = 0,
        quotas: GatewayQuotas = GatewayQuotas(),
        environment: dict[str, str] | None = None,
        max_concurrency: int = 10,
        log_dir: Path | None = None,
        post_faults: PostFaults | None = None,
    ) -> None:
        self.manifest = manifest
        self.host = host
        self.port = port
        self.quotas = quotas
        self.runtime = LambdaRuntime(
            manifest, environment=environment, max_concurrency=max_concurrency, log_dir=log_dir
        )
        self.connections: dict[str, Connection] = {}
        self._opening: dict[ServerConnection, _Opening] = {}
        self.connections_api = ConnectionsApi(self, post_faults)
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
            open_timeout=2 * self.quotas.integration_timeout + 10,
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
        self.connections_api.close()
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
            self.quotas.frame_bytes,
            max_size=self.quotas.message_bytes,
            logger=logging.getLogger("localcloud.gateway.websockets"),
        )
        assert self._ws is not None  # connections only arrive between start() and stop()
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
            id=new_id(),
            connected_at=now_ms(),
            source_ip=socket.remote_address[0] if socket.remote_address else HOST,
            user_agent=request.headers.get("User-Agent", ""),
            domain_name=request.headers.get("Host", f"{self.host}:{self.port}"),
            authorizer=None,
        )
        headers, multi_headers = _headers(request.headers, opening)
        single_query = {name: values[-1] for name, values in query.items()}
        connect = self.manifest.route("$connect")
        # The authorizer and the $connect integration see the same request id, as on AWS.
        request_id = new_id()

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
            if not identity_value(source, request.headers, query):
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
            allowed, context = evaluate_authorizer_result(result.payload, method_arn)
        except ValueError as problem:
            log.warning("authorizer returned an invalid result: %s", problem)
            return _reject(500, "Internal server error", "AuthorizerConfigurationException"), None
        if not allowed:
            return _reject(403, "Forbidden", "AccessDeniedException"), None
        return None, {**context, "integrationLatency": latency}

    async def _serve_connection(self, socket: ServerConnection) -> None:
        opening = self._opening.pop(socket)
        connection = Connection(
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
                assert isinstance(message, str)  # _ApiGatewayProtocol refuses binary frames
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

    async def _watch(self, connection: Connection) -> None:
        """Idle timeout and maximum duration, measured on the wall clock like connectedAt."""
        while True:
            now = now_ms()
            idle_at = connection.last_active_at + self.quotas.idle_timeout * 1000
            end_at = connection.connected_at + self.quotas.max_duration * 1000
            if now >= min(idle_at, end_at):
                connection.close_cause = GOING_AWAY
                await connection.socket.close(*GOING_AWAY)
                return
            await asyncio.sleep((min(idle_at, end_at) - now) / 1000)

    async def _disconnected(self, connection: Connection) -> None:
        route = self.manifest.route("$disconnect")
        if route is None:
            return
        code, reason = _close_cause(connection)
        request_id = new_id()
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

    async def _on_message(self, connection: Connection, text: str) -> None:
        try:
            await self._route_message(connection, text)
        except Exception:
            log.exception("message from %s failed", connection.id)

    async def _route_message(self, connection: Connection, text: str) -> None:
        request_id = new_id()
        route = self._select_route(text)
        if route is None:
            await self._send_quietly(connection, _gateway_error("Forbidden", connection.id, request_id))
            return
        event = {
            "requestContext": {
                **self._request_context(connection, route.key, "MESSAGE", request_id),
                "messageId": new_id(),
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
        route = (
            self.manifest.route(key) if key is not None and key not in ("$connect", "$disconnect") else None
        )
        return route or self.manifest.route("$default")

    async def _integrate(self, function: str, event: dict, request_id: str) -> Invocation:
        """Invoke a Lambda as an integration: API Gateway gives up after its integration timeout."""
        # Lambda's request id is its own, not API Gateway's.
        invocation = asyncio.ensure_future(self.runtime.invoke(function, event))
        self._inflight.add(invocation)
        invocation.add_done_callback(self._inflight.discard)
        try:
            return await asyncio.wait_for(asyncio.shield(invocation), self.quotas.integration_timeout)
        except TimeoutError:
            log.warning("%s: integration timed out after %ss", function, self.quotas.integration_timeout)
            return Invocation(
                False, error={"errorMessage": "Endpoint request timed out", "errorType": "Timeout"}
            )

    def _request_context(
        self, connection: Connection | _Opening, route_key: str, event_type: str, request_id: str
    ) -> dict:
        now = now_ms()
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

    async def send(self, connection: Connection, data: str | bytes) -> None:
        """One message to a client, split into frames of at most the frame limit."""
        if isinstance(data, bytes):
            try:
                data = data.decode()
            except UnicodeDecodeError:
                await connection.socket.send(data)
                connection.touch()
                return
        encoded = data.encode()
        if len(encoded) <= self.quotas.frame_bytes:
            await connection.socket.send(data)
        else:
            await connection.socket.send(_fragments(encoded, self.quotas.frame_bytes))
        connection.touch()

    async def _send_quietly(self, connection: Connection, data: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.send(connection, data)


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
            protocol = asyncio.StreamReaderProtocol(
                asyncio.StreamReader(), self.gateway.connections_api.serve
            )
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(self.buffer)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


# --- helpers --------------------------------------------------------------------------------------

# Headers API Gateway does not pass on to the $connect integration.
_HOP_HEADERS = {"connection", "upgrade", "content-length"}


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


def _close_cause(connection: Connection) -> tuple[int, str]:
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
