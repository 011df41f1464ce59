"""A deterministic world for the Python client: an asyncio loop on fake time and fake WebSocket connections.

`VirtualTimeLoop` never sleeps: when nothing is ready it jumps its clock to the next timer, so a test that
waits out a 10 s sync timeout or a 600 s resend window takes microseconds and always sees the same order.
`FakeNetwork.connect` stands in for `websockets.asyncio.client.connect` (patched into the client module):
each connection is a `FakeConnection` the test plays the server on, or a refusal (`InvalidStatus`).
"""

from __future__ import annotations

import asyncio
import json
import selectors
from collections.abc import Callable, Coroutine
from contextlib import contextmanager
from unittest import mock

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.http11 import Response

import classwire_client


class _Clock:
    now = 0.0


class _JumpingSelector(selectors.BaseSelector):
    """Polls the real selector (the loop's self-pipe) without blocking, then advances the fake clock by
    the timeout the loop asked for: the loop's next timer is due at once."""

    def __init__(self, clock: _Clock):
        self._real = selectors.DefaultSelector()
        self._clock = clock

    def register(self, fileobj, events, data=None):
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self._real.unregister(fileobj)

    def modify(self, fileobj, events, data=None):
        return self._real.modify(fileobj, events, data)

    def get_map(self):
        return self._real.get_map()

    def close(self):
        self._real.close()

    def select(self, timeout=None):
        ready = self._real.select(0)
        if not ready:
            if timeout is None:
                raise RuntimeError("deadlock: nothing is scheduled and nothing can happen")
            self._clock.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._fake_clock = _Clock()
        super().__init__(_JumpingSelector(self._fake_clock))

    def time(self) -> float:
        return self._fake_clock.now


def run_virtual(work: Coroutine, timeout: float = 3600.0):
    """Runs a coroutine on fake time; fails if it takes longer than `timeout` fake seconds."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(asyncio.wait_for(work, timeout))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


_CLEAN, _ABORT = object(), object()


class _Transport:
    def __init__(self, connection: FakeConnection):
        self._connection = connection

    def abort(self) -> None:
        self._connection.cut()


class FakeConnection:
    """What the client holds as its socket; the server side is `deliver`, `cut` and `sent`."""

    def __init__(self, network: FakeNetwork, url: str):
        self.network = network
        self.url = url
        self.sent: list[dict] = []
        self.closed = False
        self.transport = _Transport(self)
        self._incoming: asyncio.Queue = asyncio.Queue()

    # -- the client's side (the subset of websockets' ClientConnection the client uses)
    async def send(self, text: str) -> None:
        if self.closed:
            raise ConnectionClosedError(None, None)
        frame = json.loads(text)
        self.sent.append(frame)
        self.network.on_frame(self, frame)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._incoming.put_nowait(_CLEAN)

    def __aiter__(self):
        return self

    async def __anext__(self) -> str:
        item = await self._incoming.get()
        if item is _CLEAN:
            raise StopAsyncIteration
        if item is _ABORT:
            raise ConnectionClosedError(None, None)
        return item

    # -- the server's side
    def deliver(self, frame: dict | str) -> None:
        if not self.closed:
            self._incoming.put_nowait(frame if isinstance(frame, str) else json.dumps(frame))

    def close_from_server(self) -> None:
        """The server closes the connection cleanly (as after `end`)."""
        if not self.closed:
            self.closed = True
            self._incoming.put_nowait(_CLEAN)

    def cut(self) -> None:
        """The network fails (no close handshake): the client sees ConnectionClosedError."""
        if not self.closed:
            self.closed = True
            self._incoming.put_nowait(_ABORT)

    def frames(self, action: str) -> list[dict]:
        return [frame for frame in self.sent if frame.get("action") == action]


class FakeNetwork:
    """Hands out connections. `refusals` are HTTP statuses answered to the next connects, in order;
    `on_frame(connection, frame)` sees every frame a client sends (the scripted server's hook)."""

    def __init__(self, on_frame: Callable[[FakeConnection, dict], None] | None = None):
        self.connections: list[FakeConnection] = []
        self.refusals: list[int] = []
        self.attempts: list[float] = []  # loop time of every connection attempt
        self.down = False  # connects fail with OSError while True (the network is down)
        self.connect_delay = 0.0  # seconds a connect takes
        self.server = on_frame

    def on_frame(self, connection: FakeConnection, frame: dict) -> None:
        if self.server is not None:
            self.server(connection, frame)

    @property
    def current(self) -> FakeConnection:
        return self.connections[-1]

    def connect(self, url: str, **_options) -> _Connecting:
        return _Connecting(self, url)

    @contextmanager
    def installed(self):
        """Makes the client module connect through this network."""
        with mock.patch.object(classwire_client, "connect", self.connect):
            yield self


class _Connecting:
    def __init__(self, network: FakeNetwork, url: str):
        self._network = network
        self._url = url
        self._connection: FakeConnection | None = None

    async def __aenter__(self) -> FakeConnection:
        network = self._network
        network.attempts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(network.connect_delay)
        if network.down:
            raise OSError("network is unreachable")
        if network.refusals:
            raise InvalidStatus(Response(network.refusals.pop(0), "refused", Headers()))
        self._connection = FakeConnection(network, self._url)
        network.connections.append(self._connection)
        return self._connection

    async def __aexit__(self, *exc) -> None:
        if self._connection is not None:
            self._connection.closed = True
