"""A local stand-in for API Gateway's `@connections` management API, over real HTTP/1.1 on 127.0.0.1.

asyncio, so a thousand keep-alive connections each waiting out the injected latency cost no threads.
It answers POST/GET/DELETE `/{stage}/@connections/{id}` the way API Gateway does (410 with
`x-amzn-ErrorType: GoneException` and an empty body for a gone connection), records every request
as it arrived, and can check each SigV4 signature by recomputing it with botocore's SigV4Auth.

    with ManagementStub(latency_ms=20, gone={"c2="}) as stub:
        stub.endpoint  # http://127.0.0.1:PORT/dev
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

STAGE = "dev"
TEST_REGION = "eu-west-1"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    target: str  # the request target exactly as sent, percent-encoding included
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @functools.cached_property
    def connection_id(self) -> str:
        return urllib.parse.unquote(self.target.rsplit("/", 1)[-1])


@dataclass
class ManagementStub:
    stage: str = STAGE
    latency_ms: float = 0.0
    gone: set[str] = field(default_factory=set)
    # connection id -> (status, x-amzn-ErrorType) to answer instead, e.g. {"c=": (500, "InternalServerError")}
    errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    # connection ids whose requests are never answered (a NAT-less VPC)
    hang: set[str] = field(default_factory=set)
    # (access key, secret key) to verify signatures with; None accepts anything with an Authorization
    verify: tuple[str, str] | None = None
    region: str = TEST_REGION
    record: bool = True
    # answer this many requests per connection id with this status first (retry tests)
    fail_first: dict[str, int] = field(default_factory=dict)
    fail_status: tuple[int, str] = (500, "InternalServerError")
    # serve https with this context (tests/support/tls.py makes a certificate for 127.0.0.1)
    ssl_context: ssl.SSLContext | None = None
    # called with (connection id, body) as each POST to a live connection arrives (the stub's thread)
    on_post: Callable[[str, bytes], None] | None = None

    def __post_init__(self):
        self.requests: list[RecordedRequest] = []
        self.posts: list[tuple[str, bytes]] = []
        self.connections_accepted = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.signature_failures = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._transports: set[asyncio.Transport] = set()

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/{self.stage}"

    @property
    def _plain(self) -> bool:
        return not (
            self.record
            or self.verify
            or self.gone
            or self.errors
            or self.hang
            or self.fail_first
            or self.on_post
        )

    def reset(self) -> None:
        self.requests.clear()
        self.posts.clear()
        self.max_in_flight = 0

    def close_idle_connections(self) -> None:
        """Closes every client socket, as API Gateway does to idle keep-alive connections."""
        assert self._loop is not None
        done = threading.Event()

        def close_all():
            for transport in list(self._transports):
                transport.close()
            done.set()

        self._loop.call_soon_threadsafe(close_all)
        done.wait(5)

    # -- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> ManagementStub:
        started = threading.Event()

        async def main():
            self._loop = asyncio.get_running_loop()
            server = await self._loop.create_server(
                self._protocol, "127.0.0.1", 0, backlog=2048, ssl=self.ssl_context
            )
            self.port = server.sockets[0].getsockname()[1]
            self._stop = asyncio.Event()
            started.set()
            async with server:
                await self._stop.wait()
                for transport in list(self._transports):
                    transport.close()

        self._thread = threading.Thread(
            target=asyncio.run, args=(main(),), name="management-stub", daemon=True
        )
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("management stub did not start")
        return self

    def __exit__(self, *exc) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    # -- HTTP ------------------------------------------------------------------------------------------
    def _protocol(self) -> asyncio.Protocol:
        return _StubConnection(self)

    def _answer(self, request: RecordedRequest) -> tuple[int, dict, bytes]:
        """The response; the caller adds the latency (and never answers a hanging id)."""
        if self.record:
            self.requests.append(request)
        prefix = f"/{self.stage}/@connections/"
        if not request.target.startswith(prefix):
            return 404, {"x-amzn-ErrorType": "NotFoundException"}, b'{"message":"Not Found"}'
        if request.header("Authorization") is None:
            return (
                403,
                {"x-amzn-ErrorType": "MissingAuthenticationTokenException"},
                b'{"message":"Missing Authentication Token"}',
            )
        if self.verify is not None and not self._signature_ok(request):
            self.signature_failures += 1
            return 403, {"x-amzn-ErrorType": "InvalidSignatureException"}, b'{"message":"bad signature"}'
        connection_id = request.connection_id
        if self.fail_first.get(connection_id, 0) > 0:
            self.fail_first[connection_id] -= 1
            status, kind = self.fail_status
            return status, {"x-amzn-ErrorType": kind}, b'{"message":null}'
        if connection_id in self.errors:
            status, kind = self.errors[connection_id]
            return status, {"x-amzn-ErrorType": kind, "Content-Type": "application/json"}, b'{"message":null}'
        if connection_id in self.gone:
            # What API Gateway sends for a gone connection: the error type in a header, no body.
            return 410, {"x-amzn-ErrorType": "GoneException"}, b""
        if request.method == "POST":
            if self.record:
                self.posts.append((connection_id, request.body))
            if self.on_post is not None:
                self.on_post(connection_id, request.body)
            return 200, {}, b""
        if request.method == "DELETE":
            self.gone.add(connection_id)
            return 204, {}, b""
        if request.method == "GET":
            info = {
                "connectedAt": "2026-01-01T00:00:00.000Z",
                "identity": {"sourceIp": "127.0.0.1", "userAgent": "stub"},
                "lastActiveAt": "2026-01-01T00:00:01.000Z",
            }
            return 200, {"Content-Type": "application/json"}, json.dumps(info).encode()
        return 405, {"x-amzn-ErrorType": "MethodNotAllowed"}, b""

    def _signature_ok(self, request: RecordedRequest) -> bool:
        """Recomputes the signature with botocore's own SigV4Auth over the request as received."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        assert self.verify is not None
        token = request.header("X-Amz-Security-Token")
        auth = SigV4Auth(Credentials(self.verify[0], self.verify[1], token), "execute-api", self.region)
        signed = {"X-Amz-Date": request.header("X-Amz-Date") or ""}
        if token:
            signed["X-Amz-Security-Token"] = token
        aws_request = AWSRequest(
            method=request.method,
            url=f"http://{request.header('Host')}{request.target}",
            headers=signed,
            data=request.body,
        )
        aws_request.context["timestamp"] = signed["X-Amz-Date"]
        canonical = auth.canonical_request(aws_request)
        expected = auth.signature(auth.string_to_sign(aws_request, canonical), aws_request)
        return (request.header("Authorization") or "").endswith(f"Signature={expected}")


class _StubConnection(asyncio.Protocol):
    """One client socket. A Protocol, not streams and a task per request: the stub must stay far
    cheaper per request than the clients it measures."""

    def __init__(self, stub: ManagementStub):
        self.stub = stub
        self.buffer = bytearray()
        self.busy = False  # one request at a time per connection, as HTTP/1.1 without pipelining
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.stub.connections_accepted += 1
        self.stub._transports.add(transport)

    def connection_lost(self, exc) -> None:
        assert self.transport is not None  # connection_made came first
        self.stub._transports.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        buffer, stub = self.buffer, self.stub
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end])
        at = head.lower().find(b"\r\ncontent-length:")
        length = int(head[at + 17 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(buffer) < end + 4 + length:
            return
        body = bytes(buffer[end + 4 : end + 4 + length])
        del buffer[: end + 4 + length]
        self.busy = True
        stub.in_flight += 1
        stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
        if stub._plain and head.startswith(b"POST "):
            answer = _DELIVERED  # the benchmark's path: nothing to record, check or look up
        else:
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = tuple(
                (name.strip(), value.strip())
                for name, _, value in (line.partition(":") for line in lines[1:])
            )
            request = RecordedRequest(method, target, headers, body)
            answer = stub._answer(request)
            if request.connection_id in stub.hang:
                return  # never answered: the client's read timeout has to end it
        if stub.latency_ms:
            asyncio.get_running_loop().call_later(stub.latency_ms / 1000, self._respond, answer)
        else:
            self._respond(answer)

    def _respond(self, answer: tuple[int, dict, bytes]) -> None:
        self.stub.in_flight -= 1
        self.busy = False
        if self.transport is None or self.transport.is_closing():
            return
        if answer is _DELIVERED:
            self.transport.write(_DELIVERED_BYTES)
            if self.buffer:
                self._next()
            return
        status, extra, payload = answer
        response = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        response += [f"{k}: {v}" for k, v in extra.items()]
        if status != 204:
            response.append(f"Content-Length: {len(payload)}")
        self.transport.write(("\r\n".join(response) + "\r\n\r\n").encode() + payload)
        if self.buffer:
            self._next()


_DELIVERED: tuple[int, dict[str, str], bytes] = (200, {}, b"")
_DELIVERED_BYTES = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_REASONS = {
    200: "OK",
    204: "No Content",
    403: "Forbidden",
    404: "Not Found",
    410: "Gone",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


def serve_forever(latency_ms: float, port_pipe) -> None:
    """Runs a stub in this (child) process, so a benchmark's CPU clock measures only the client."""
    with ManagementStub(latency_ms=latency_ms, record=False) as stub:
        port_pipe.send(stub.port)
        port_pipe.recv()  # any message, or the parent going away, stops it
