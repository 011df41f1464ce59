"""One open WebSocket connection as the gateway tracks it, shared by the data plane and `@connections`."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection

# Why the gateway closed a connection, as `$disconnect` reports it.
CLOSED_NORMALLY = (1000, "Connection Closed Normally")
GOING_AWAY = (1001, "Going away")


@dataclass(eq=False)
class Connection:
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
        self.last_active_at = now_ms()

    @property
    def gone(self) -> bool:
        return self.close_cause is not None or self.socket.state.name != "OPEN"


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id() -> str:
    """An id shaped like API Gateway's (connection, request and message ids): 16 base64 characters."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode()
