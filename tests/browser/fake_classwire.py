"""An in-memory stand-in for the classwire local cloud, for browser tests of the demo page alone.

It speaks the README protocol on ws://127.0.0.1:<port>/local (seq, eid/prev chain, idempotent resend,
paged sync with reset, roster, ping, `end` closing the classroom), serves the page
(localcloud/web/ and clients/js/classwire.js as /classwire.js) and the local-only token endpoint
`GET /local/token?user=&classroom=&role=&name=` -> {"token", "url"}, all on one port; and
`GET /fake/failover?classroom=&lose=N` forgets the last N events, as a Redis failover can. With --jitter-ms
each fan-out frame is delayed at random, so frames reach clients out of seq order as on API Gateway.

Not the system under test: the same browser test runs against `make deploy` by setting CLASSWIRE_WEB_URL.
Prints one line `{"url": "http://127.0.0.1:<port>/"}` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

ROOT = Path(__file__).resolve().parents[2]
STATIC = {
    "/": (ROOT / "localcloud/web/index.html", "text/html; charset=utf-8"),
    "/index.html": (ROOT / "localcloud/web/index.html", "text/html; charset=utf-8"),
    "/app.js": (ROOT / "localcloud/web/app.js", "text/javascript; charset=utf-8"),
    "/style.css": (ROOT / "localcloud/web/style.css", "text/css; charset=utf-8"),
    "/classwire.js": (ROOT / "clients/js/classwire.js", "text/javascript; charset=utf-8"),
}
STAGE = "/local"
EVENTS = {
    "chat": "all",
    "stroke": "all",
    "erase": "all",
    "cursor": "volatile",
    "clear": "teacher",
    "end": "teacher",
}
FRAME_BUDGET = 32 * 1024 - 256


def b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def make_token(user: str, classroom: str, role: str, name: str) -> str:
    claims = {
        "sub": user,
        "role": role,
        "classrooms": [classroom],
        "name": name,
        "exp": int(time.time()) + 3600,
    }
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.fake"


def read_token(token: str) -> dict | None:
    try:
        part = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return None


@dataclass
class Conn:
    ws: ServerConnection
    classroom: str
    user: str
    role: str
    name: str


@dataclass
class Classroom:
    log: list[str] = field(default_factory=list)  # frames; seq n is log[n - 1]
    eids: list[str] = field(default_factory=list)
    members: dict[int, Conn] = field(default_factory=dict)
    idem: dict[tuple[str, str], int] = field(default_factory=dict)


class FakeClasswire:
    def __init__(self, jitter_ms: int):
        self.rooms: dict[str, Classroom] = {}
        self.jitter_ms = jitter_ms
        self.ids = itertools.count(1)
        self.port = 0

    # -- HTTP -------------------------------------------------------------------------------------
    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/local/token":
            body = {
                "token": make_token(
                    query.get("user", "guest"),
                    query.get("classroom", "demo"),
                    query.get("role", "student"),
                    query.get("name", ""),
                ),
                "url": f"ws://127.0.0.1:{self.port}{STAGE}",
            }
            return _response(200, json.dumps(body).encode(), "application/json")
        if url.path == "/fake/failover":
            # Like a Redis failover that lost the last writes: the log silently forgets them.
            room = self.rooms.get(query.get("classroom", ""))
            lose = int(query.get("lose", "1"))
            if room is None or lose > len(room.log):
                return _response(404, b"no such classroom or too few events", "text/plain")
            keep = len(room.log) - lose
            del room.log[keep:], room.eids[keep:]
            room.idem = {key: seq for key, seq in room.idem.items() if seq <= keep}
            return _response(200, json.dumps({"last": keep}).encode(), "application/json")
        if url.path == STAGE and request.headers.get("Upgrade", "").lower() == "websocket":
            claims = read_token(query.get("token", ""))
            if not claims or not isinstance(claims.get("sub"), str):
                return _response(401, b"Unauthorized", "text/plain")
            if query.get("classroom") not in claims.get("classrooms", []):
                return _response(403, b"Forbidden", "text/plain")
            return None
        if url.path in STATIC:
            path, content_type = STATIC[url.path]
            return _response(200, path.read_bytes(), content_type)
        return _response(404, b"not found", "text/plain")

    # -- WebSocket ---------------------------------------------------------------------------------
    async def handler(self, ws: ServerConnection) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(ws.request.path).query).items()}
        claims = read_token(query["token"])
        conn = Conn(
            ws, query["classroom"], claims["sub"], claims.get("role", "student"), claims.get("name", "")
        )
        room = self.rooms.setdefault(conn.classroom, Classroom())
        conn_id = next(self.ids)
        room.members[conn_id] = conn
        frame = self.append(room, conn, None, "join", {"connections": self.connections_of(room, conn.user)})
        self.fan_out(room, frame, exclude=conn_id)
        try:
            async for raw in ws:
                reply = self.handle(room, conn, raw)
                if reply is not None:
                    await ws.send(reply)
        except ConnectionClosed:
            pass
        finally:
            if room.members.pop(conn_id, None) is not None:
                frame = self.append(
                    room, conn, None, "leave", {"connections": self.connections_of(room, conn.user)}
                )
                self.fan_out(room, frame)

    def handle(self, room: Classroom, conn: Conn, raw: str | bytes) -> str | None:
        try:
            msg = json.loads(raw)
        except ValueError:
            return _error("bad_request", "frame is not valid JSON", None)
        action = msg.get("action")
        if action == "ping":
            return json.dumps({"type": "pong", "ts": _now()})
        if action == "who":
            users: dict[str, dict] = {}
            for c in room.members.values():
                entry = users.setdefault(
                    c.user, {"userId": c.user, "role": c.role, "name": c.name, "connections": 0}
                )
                entry["connections"] += 1
            return json.dumps({"type": "roster", "members": [users[u] for u in sorted(users)], "more": False})
        if action == "sync":
            return self.sync(
                room, int(msg.get("since", 0)), msg.get("sinceEid", ""), int(msg.get("limit", 200))
            )
        if action != "send":
            return _error("unknown_action", f"unknown action {action!r}", None)
        client_id, event = msg.get("id"), msg.get("event")
        if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64:
            return _error("bad_request", "field 'id' must be a string of 1..64 characters", None)
        kind = EVENTS.get(event)
        if kind is None:
            return _error("bad_request", f"unknown event {event!r}", client_id)
        if kind == "teacher" and conn.role != "teacher":
            return _error("forbidden", f"a {conn.role} may not send {event!r} events", client_id)
        if kind == "volatile":
            frame = json.dumps(
                {
                    "type": "event",
                    "classroom": conn.classroom,
                    "id": client_id,
                    "from": conn.user,
                    "role": conn.role,
                    "name": conn.name,
                    "event": event,
                    "data": msg.get("data"),
                    "ts": _now(),
                }
            )
            self.fan_out(room, frame)
            return None
        seen = room.idem.get((conn.user, client_id))
        if seen is not None:
            return room.log[seen - 1]  # an idempotent resend: the original, to the sender only
        frame = self.append(room, conn, client_id, event, msg.get("data"))
        room.idem[(conn.user, client_id)] = len(room.log)
        self.fan_out(room, frame)
        if event == "end":
            asyncio.get_running_loop().call_later(0.2, self.close_all, room)
        return None

    def append(self, room: Classroom, conn: Conn, client_id: str | None, event: str, data: object) -> str:
        seq = len(room.log) + 1
        prev = room.eids[-1] if room.eids else ""
        eid = hashlib.sha1(f"{conn.classroom}:{seq}:{time.time_ns()}".encode()).hexdigest()[:16]
        frame = json.dumps(
            {
                "type": "event",
                "classroom": conn.classroom,
                "seq": seq,
                "eid": eid,
                "prev": prev,
                "id": client_id,
                "from": conn.user,
                "role": conn.role,
                "name": conn.name,
                "event": event,
                "data": data,
                "ts": _now(),
            }
        )
        room.log.append(frame)
        room.eids.append(eid)
        return frame

    def sync(self, room: Classroom, since: int, since_eid: str, limit: int) -> str:
        last = len(room.log)
        reset = since > last or (since >= 1 and since_eid and room.eids[since - 1] != since_eid)
        start = 0 if reset else since
        frames, used, more = [], 0, False
        for frame in room.log[start:]:
            if len(frames) >= limit or (frames and used + len(frame) + 1 > FRAME_BUDGET):
                more = True
                break
            frames.append(frame)
            used += len(frame) + 1
        page_last = json.loads(frames[-1])["seq"] if frames else (last if reset else since)
        return (
            f'{{"type":"sync","events":[{",".join(frames)}],"last":{page_last},'
            f'"more":{json.dumps(more)},"reset":{json.dumps(bool(reset))}}}'
        )

    def connections_of(self, room: Classroom, user: str) -> int:
        return sum(1 for c in room.members.values() if c.user == user)

    def fan_out(self, room: Classroom, frame: str, exclude: int | None = None) -> None:
        for conn_id, conn in list(room.members.items()):
            if conn_id != exclude:
                asyncio.get_running_loop().create_task(self.post(conn.ws, frame))

    async def post(self, ws: ServerConnection, frame: str) -> None:
        if self.jitter_ms:
            await asyncio.sleep(random.uniform(0, self.jitter_ms) / 1000)
        try:
            await ws.send(frame)
        except ConnectionClosed:
            pass

    def close_all(self, room: Classroom) -> None:
        for conn in list(room.members.values()):
            asyncio.get_running_loop().create_task(conn.ws.close(1000, "class ended"))


def _response(status: int, body: bytes, content_type: str) -> Response:
    reason = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}[status]
    headers = Headers(
        [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    )
    return Response(status, reason, headers, body)


def _error(code: str, message: str, client_id: str | None) -> str:
    return json.dumps({"type": "error", "code": code, "message": message, "id": client_id})


def _now() -> int:
    return int(time.time() * 1000)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--jitter-ms", type=int, default=0)
    args = parser.parse_args()
    fake = FakeClasswire(args.jitter_ms)
    async with serve(fake.handler, "127.0.0.1", args.port, process_request=fake.process_request) as server:
        fake.port = server.sockets[0].getsockname()[1]
        print(json.dumps({"url": f"http://127.0.0.1:{fake.port}/"}), flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
