"""Classroom isolation over the local system (real Redis, gateway, handlers, WebSockets): a member of one
classroom cannot publish into, sync from, or list the roster of another by any payload field, and no
member ever sees a connection id.

Every socket's frames are collected as raw text, so the checks read exactly what reached a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

REPLY_TYPES = ("error", "sync", "roster", "pong")


def run(scenario, timeout: float = 120):
    return asyncio.run(asyncio.wait_for(scenario, timeout))


class Peer:
    """One raw WebSocket member: every frame it receives is kept, replies are awaited by type."""

    def __init__(self, name: str, ws: ClientConnection):
        self.name = name
        self.ws = ws
        self.frames: list[str] = []
        self._replies: asyncio.Queue[dict] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                self.frames.append(raw if isinstance(raw, str) else raw.decode("utf-8", "replace"))
                frame = json.loads(self.frames[-1])
                if frame.get("type") in REPLY_TYPES:
                    self._replies.put_nowait(frame)

    async def request(self, frame: dict | str, timeout: float = 20) -> dict:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))
        return await asyncio.wait_for(self._replies.get(), timeout)

    async def publish(self, frame: dict, timeout: float = 20) -> dict:
        """Sends a `send` and waits for its acknowledgement (the sender's own copy) or its error."""
        await self.ws.send(json.dumps(frame))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._replies.empty():  # an error frame is a reply: take it off the queue
                reply = self._replies.get_nowait()
                assert reply.get("type") == "error" and reply.get("id") == frame["id"], reply
                return reply
            if event := self._event(frame["id"]):
                return event
            await asyncio.sleep(0.02)
        raise AssertionError(f"no acknowledgement or error for {frame['id']}")

    async def received(self, event_id: str, timeout: float = 20) -> dict:
        """Waits until the event the client sent as `event_id` has reached this member."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if event := self._event(event_id):
                return event
            await asyncio.sleep(0.02)
        raise AssertionError(f"{self.name} never received {event_id}")

    def _event(self, event_id: str) -> dict | None:
        return next((e for e in self.events() if e.get("id") == event_id), None)

    def events(self) -> list[dict]:
        return [f for f in map(json.loads, self.frames) if f.get("type") == "event"]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


class Classrooms:
    def __init__(self, system):
        self.system = system
        self.peers: list[Peer] = []
        tag = secrets.token_hex(3)
        self.a, self.b = f"iso-{tag}-a", f"iso-{tag}-b"

    async def join(
        self, user: str, classroom: str, grants: list[str] | None = None, role: str = "student"
    ) -> Peer:
        token = self.system.token(user, grants or [classroom], role, name=user.title())
        query = urlencode({"token": token, "classroom": classroom})
        peer = Peer(user, await connect(f"{self.system.websocket_url}?{query}", open_timeout=60))
        self.peers.append(peer)
        return peer

    def connection_ids(self) -> set[str]:
        """Every connection id the system knows: the gateway's and the Redis registry of both classrooms."""
        redis = self.system.redis.client()
        try:
            ids = set(self.system._gateway.gateway.connections)
            for classroom in (self.a, self.b):
                ids |= {m.decode() for m in redis.zrange(f"cw:{{{classroom}}}:members", 0, -1)}
        finally:
            redis.close()
        return ids

    def dump(self, classroom: str) -> dict[bytes, bytes | None]:
        """Byte-exact contents (DUMP) of every key of a classroom."""
        redis = self.system.redis.client()
        try:
            keys = sorted(redis.scan_iter(match=f"cw:{{{classroom}}}:*", count=1000))
            return {key: redis.dump(key) for key in keys}
        finally:
            redis.close()

    def log(self, classroom: str) -> list[dict]:
        redis = self.system.redis.client()
        try:
            return [json.loads(fields[b"f"]) for _, fields in redis.xrange(f"cw:{{{classroom}}}:log")]
        finally:
            redis.close()

    async def close(self) -> None:
        for peer in self.peers:
            await peer.close()


@contextlib.asynccontextmanager
async def classrooms(system):
    rooms = Classrooms(system)
    try:
        yield rooms
    finally:
        await rooms.close()


async def settle(rooms: Classrooms, seconds: float = 1.0) -> None:
    """Lets any fan-out still in flight land before checking what did not arrive."""
    await asyncio.sleep(seconds)


# Payload fields a client might try to steer a frame with; only `classroom` is part of the protocol.
STEERING_FIELDS = ("room", "classroomId", "classroom_id", "roomId", "channel", "target", "to")


def steered(frame: dict, other: str) -> list[tuple[str, dict]]:
    """The frame with every steering field naming `other`, alone and nested."""
    variants = [(f"{name}", {**frame, name: other}) for name in STEERING_FIELDS]
    variants.append(
        ("nested-requestContext", {**frame, "requestContext": {"authorizer": {"classroomId": other}}})
    )
    variants.append(("nested-meta", {**frame, "meta": {"classroom": other}}))
    return variants


# `classroom` itself, naming the other classroom in every shape: refused with `forbidden`.
def classroom_field_variants(other: str, own: str) -> list[tuple[str, object]]:
    return [
        ("exact", other),
        ("upper-case", other.upper()),
        ("with-nul", other + "\u0000"),
        ("with-space", " " + other),
        ("as-list", [other]),
        ("as-object", {"id": other}),
        ("own-then-other", f"{own},{other}"),
        ("null", None),
    ]


def test_a_member_cannot_publish_into_another_classroom(system):
    async def scenario():
        async with classrooms(system) as rooms:
            mallory = await rooms.join("mallory", rooms.a)
            bystander_a = await rooms.join("amy", rooms.a)
            bob = await rooms.join("bob", rooms.b)
            bella = await rooms.join("bella", rooms.b)
            ack = await bob.publish(
                {"action": "send", "id": "b-1", "event": "chat", "data": {"text": "secret-B"}}
            )
            assert ack["type"] == "event" and ack["classroom"] == rooms.b
            await bella.received("b-1")  # the sender's ack can overtake the other members' copies
            before = rooms.dump(rooms.b)
            last_seq_b = rooms.log(rooms.b)[-1]["seq"]
            frames_b = len(bella.frames)

            refused = 0
            for name, value in classroom_field_variants(rooms.b, rooms.a):
                for event in ("chat", "stroke", "cursor"):
                    frame = {
                        "action": "send",
                        "id": f"x-{name}-{event}",
                        "event": event,
                        "data": {"n": 1},
                        "classroom": value,
                    }
                    reply = await mallory.publish(frame)
                    assert reply["type"] == "error" and reply["code"] == "forbidden", (name, reply)
                    refused += 1
            # Duplicate keys: the last one wins in the handler's JSON parser, so it is the one checked.
            duplicate = f'{{"action":"send","id":"dup","event":"chat","data":1,"classroom":"{rooms.a}","classroom":"{rooms.b}"}}'
            reply = await mallory.request(duplicate)
            assert reply["code"] == "forbidden"

            accepted = 0
            for name, frame in steered(
                {"action": "send", "event": "chat", "data": {"text": "steered"}}, rooms.b
            ):
                reply = await mallory.publish({**frame, "id": f"s-{name}"})
                # Ignored: the event lands in the sender's own classroom, never in the other one.
                assert reply["type"] == "event" and reply["classroom"] == rooms.a, (name, reply)
                accepted += 1
            await settle(rooms)

            assert rooms.dump(rooms.b) == before, "the other classroom's Redis state changed"
            assert [e["data"] for e in rooms.log(rooms.b) if e["event"] == "chat"] == [{"text": "secret-B"}]
            # Only B's own events from before the attempts (a late join fan-out, say) may still arrive.
            late = [json.loads(raw) for raw in bella.frames[frames_b:]]
            assert all(e.get("type") == "event" and e["seq"] <= last_seq_b for e in late), late
            assert all(e["classroom"] == rooms.b for e in bella.events())
            assert "mallory" not in "".join(bob.frames + bella.frames)
            assert all(e["classroom"] == rooms.a for e in bystander_a.events())
            print(
                f"\npublish into another classroom: {refused + 1} refused (forbidden), {accepted} steered and kept in A"
            )

    run(scenario())


def test_a_member_cannot_sync_or_list_another_classroom(system):
    async def scenario():
        async with classrooms(system) as rooms:
            mallory = await rooms.join("mallory", rooms.a)
            bob = await rooms.join("bob", rooms.b)
            await bob.publish({"action": "send", "id": "b-1", "event": "chat", "data": {"text": "secret-B"}})
            await mallory.publish(
                {"action": "send", "id": "a-1", "event": "chat", "data": {"text": "hello-A"}}
            )

            for action, extra in (("sync", {"since": 0}), ("who", {})):
                for name, value in classroom_field_variants(rooms.b, rooms.a):
                    reply = await mallory.request({"action": action, **extra, "classroom": value})
                    assert reply["type"] == "error" and reply["code"] == "forbidden", (action, name, reply)
                for name, frame in steered({"action": action, **extra}, rooms.b):
                    reply = await mallory.request(frame)
                    assert reply["type"] == ("sync" if action == "sync" else "roster"), (action, name, reply)
                    text = json.dumps(reply)
                    assert "secret-B" not in text and "bob" not in text, (action, name)
                    if action == "sync":
                        assert reply["events"] and all(e["classroom"] == rooms.a for e in reply["events"])
                    else:
                        assert {m["userId"] for m in reply["members"]} == {"mallory"}
            # A sync positioned on the other classroom's event ids still reads only its own log.
            b_eid = rooms.log(rooms.b)[-1]["eid"]
            reply = await mallory.request({"action": "sync", "since": 1, "sinceEid": b_eid})
            assert all(e["classroom"] == rooms.a for e in reply["events"]) and "secret-B" not in json.dumps(
                reply
            )
            # `who` paging by a user id of the other classroom only pages the own roster.
            reply = await mallory.request({"action": "who", "after": "bob"})
            assert {m["userId"] for m in reply["members"]} <= {"mallory"}

    run(scenario())


def test_connection_ids_never_reach_a_member(system):
    async def scenario():
        async with classrooms(system) as rooms:
            teacher = await rooms.join("tina", rooms.a, role="teacher")
            students = [await rooms.join(f"s{n}", rooms.a) for n in range(3)]
            bob = await rooms.join("bob", rooms.b)
            second_tab = await rooms.join("s0", rooms.a)  # a user with two connections
            everyone = [teacher, *students, bob, second_tab]
            known = rooms.connection_ids()
            assert len(known) >= len(everyone)
            for peer in everyone:
                await peer.publish(
                    {"action": "send", "id": f"{peer.name}-1", "event": "chat", "data": {"from": peer.name}}
                )
                await peer.ws.send(
                    json.dumps(
                        {"action": "send", "id": f"{peer.name}-c", "event": "cursor", "data": {"x": 1}}
                    )
                )
                await peer.request({"action": "sync", "since": 0})
                await peer.request({"action": "who"})
                await peer.request({"action": "ping", "seq": 1})
                await peer.request({"action": "dance"})  # an error frame too
            for gone in (second_tab, students[1]):  # a user's second tab, and a user's only connection
                await gone.close()
                rooms.peers.remove(gone)
            await settle(rooms)
            await teacher.request({"action": "sync", "since": 0})  # the leave event, via sync as well
            frames = [frame for peer in everyone for frame in peer.frames]
            assert any('"event":"leave"' in f for f in teacher.frames)
            leaked = {cid for cid in known if any(cid in frame for frame in frames)}
            assert not leaked, f"connection ids in member frames: {leaked}"
            print(f"\n{len(frames)} frames scanned for {len(known)} connection ids: none found")

    run(scenario())


def test_a_token_for_one_classroom_is_refused_for_another(system):
    async def scenario():
        a, b = f"iso-{secrets.token_hex(3)}-a", f"iso-{secrets.token_hex(3)}-b"
        token = system.token("mallory", a)
        statuses = {}
        queries: dict[str, dict[str, str] | list[tuple[str, str]]] = {
            "other-classroom": {"token": token, "classroom": b},
            "repeated-param-last-wins": [("token", token), ("classroom", a), ("classroom", b)],
        }
        for name, query in queries.items():
            try:
                async with connect(f"{system.websocket_url}?{urlencode(query)}", open_timeout=60):
                    statuses[name] = 101
            except InvalidStatus as refused:
                statuses[name] = refused.response.status_code
        assert statuses == {"other-classroom": 403, "repeated-param-last-wins": 403}

    run(scenario())


def test_a_user_granted_two_classrooms_sees_only_the_one_connected_to(system):
    async def scenario():
        async with classrooms(system) as rooms:
            dual = await rooms.join("dana", rooms.a, grants=[rooms.a, rooms.b])
            bob = await rooms.join("bob", rooms.b)
            await bob.publish({"action": "send", "id": "b-1", "event": "chat", "data": {"text": "secret-B"}})
            await bob.ws.send(
                json.dumps({"action": "send", "id": "b-c", "event": "cursor", "data": {"x": 9}})
            )
            reply = await dual.publish(
                {"action": "send", "id": "d-1", "event": "chat", "data": 1, "classroom": rooms.b}
            )
            assert reply["code"] == "forbidden"  # granted B, but this connection is bound to A
            sync = await dual.request({"action": "sync", "since": 0})
            roster = await dual.request({"action": "who"})
            await settle(rooms)
            assert all(e["classroom"] == rooms.a for e in dual.events() + sync["events"])
            assert {m["userId"] for m in roster["members"]} == {"dana"}
            assert "secret-B" not in "".join(dual.frames) and '"x":9' not in "".join(dual.frames)
            assert all(e["classroom"] == rooms.b for e in bob.events())

    run(scenario())


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
