"""End-to-end fixtures: the local system (real Redis, emulator, gateway, handlers) and Python clients.

Each test runs one asyncio scenario (`asyncio.run`) that opens its clients with `members.join(...)` and
closes them all when it ends.
"""

from __future__ import annotations

import contextlib
import secrets

import pytest

from classwire_client import ClasswireClient
from localcloud.system import LocalSystem


@pytest.fixture(scope="session")
def system():
    with LocalSystem(key=secrets.token_urlsafe(48)) as local:
        yield local


@pytest.fixture
def classroom(request) -> str:
    """A fresh classroom id per test, so tests on the shared system never see each other."""
    return f"t{secrets.token_hex(4)}-{request.node.name[5:30]}".replace("[", "-").replace("]", "")


class Members(contextlib.AbstractAsyncContextManager):
    def __init__(self, system: LocalSystem):
        self.system = system
        self.clients: list[ClasswireClient] = []

    async def join(self, user: str, classroom: str, role: str = "student", **options) -> ClasswireClient:
        client = ClasswireClient(
            url=self.system.websocket_url,
            token=self.system.token(user, classroom, role, name=user.title()),
            classroom=classroom,
            user_id=user,
            **options,
        )
        self.clients.append(client)
        return await client.start()

    async def __aexit__(self, *exc) -> None:
        for client in self.clients:
            await client.close()


@pytest.fixture
def members(system):
    return lambda: Members(system)
