"""The protocol end to end over real WebSockets: two classrooms, several members each."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from classwire_client import Refused


def run(scenario):
    return asyncio.run(asyncio.wait_for(scenario, 60))


def persistent(client, kind=None):
    return [(e["from"], e["event"], e["data"]) for e in client.events if kind is None or e["event"] == kind]


async def eventually(client, condition, timeout: float = 15.0) -> None:
    """Syncs until `condition()` holds: for effects that follow an action asynchronously."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        await client.catch_up()
        if condition():
            return
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def test_members_see_the_same_events_in_the_same_order_and_nothing_leaks(members, classroom):
    other_room = classroom + "-b"

    async def scenario():
        async with members() as room:
            teacher = await room.join("tina", classroom, "teacher")
            students = [await room.join(f"s{n}", classroom) for n in range(3)]
            outsider = await room.join("olga", other_room)
            acks = await asyncio.gather(
                *(
                    member.send("stroke", {"n": i, "by": member.user_id})
                    for i, member in enumerate([teacher, *students])
                )
            )
            last = max(ack["seq"] for ack in acks)
            for member in [teacher, *students]:
                await member.wait_for_seq(last)
            strokes = [persistent(m, "stroke") for m in [teacher, *students]]
            assert all(view == strokes[0] for view in strokes) and len(strokes[0]) == 4
            await outsider.send("chat", {"text": "only here"})
            await asyncio.sleep(0.3)
            assert all(e["classroom"] == other_room for e in outsider.events)
            assert all(e["classroom"] == classroom for m in [teacher, *students] for e in m.events)
            assert "only here" not in json.dumps([m.events for m in [teacher, *students]])

    run(scenario())


def test_seq_is_gapless_and_chained(members, classroom):
    async def scenario():
        async with members() as room:
            a = await room.join("amy", classroom)
            b = await room.join("ben", classroom)
            await asyncio.gather(
                *(a.send("chat", {"i": i}) for i in range(10)), *(b.send("chat", {"i": i}) for i in range(10))
            )
            await b.catch_up()
            await a.catch_up()
            seqs = [e["seq"] for e in a.events]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            assert all(y["prev"] == x["eid"] for x, y in zip(a.events, a.events[1:], strict=False))
            assert [e["eid"] for e in a.events[-20:]] == [e["eid"] for e in b.events[-20:]]
            # Each sender's own events stay in its sending order.
            assert [e["data"]["i"] for e in a.events if e["from"] == "amy" and e["event"] == "chat"] == list(
                range(10)
            )

    run(scenario())


def test_roster_and_presence(members, classroom):
    async def scenario():
        async with members() as room:
            teacher = await room.join("tina", classroom, "teacher")
            student = await room.join("sam", classroom)
            roster = await teacher.who()
            assert {(m["userId"], m["role"], m["connections"]) for m in roster} == {
                ("tina", "teacher", 1),
                ("sam", "student", 1),
            }
            assert all("connectionId" not in json.dumps(m) for m in roster)
            await student.close()
            # $disconnect runs after the socket is gone (a cold execution environment can take seconds here);
            # the roster shows it at once, the room is told only once the grace passes without a reconnect.
            deadline = asyncio.get_running_loop().time() + 15
            while [m["userId"] for m in await teacher.who()] != ["tina"]:
                assert asyncio.get_running_loop().time() < deadline, "sam still in the roster"
                await asyncio.sleep(0.2)
            assert [e for e in persistent(teacher) if e[:2] == ("sam", "leave")] == []

    run(scenario())


def test_a_reconnect_within_the_grace_announces_nothing(members, classroom):
    async def scenario():
        async with members() as room:
            teacher = await room.join("tina", classroom, "teacher")
            student = await room.join("sam", classroom)
            await teacher.catch_up()
            before = persistent(teacher)
            assert student._ws is not None
            await student._ws.close()  # dropped (Wi-Fi, API Gateway's 2-hour close): the client reconnects
            await asyncio.sleep(2.0)
            ack = await student.send("chat", {"text": "back"})
            await teacher.wait_for_seq(ack["seq"])
            assert persistent(teacher) == [*before, ("sam", "chat", {"text": "back"})]

    run(scenario())


def test_who_shows_which_members_are_behind(members, classroom):
    async def scenario():
        async with members() as room:
            teacher = await room.join("tina", classroom, "teacher", telemetry_interval=None)
            # The client's own telemetry loop reports this one, caught up, every 0.2 s.
            caught_up = await room.join("cleo", classroom, telemetry_interval=0.2)
            lagging = await room.join("luke", classroom, telemetry_interval=None)
            acks = [await teacher.send("stroke", {"n": n}) for n in range(4)]
            last = acks[-1]["seq"]
            await caught_up.wait_for_seq(last)
            await lagging.wait_for_seq(last)
            # Luke's client says it has applied only up to two events ago.
            await lagging._send_frame(action="ping", seq=last - 2, lagMs=1500)
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                roster = {m["userId"]: m for m in await teacher.who()}
                if roster["luke"]["behind"] is not None and roster["cleo"]["behind"] is not None:
                    break
                assert asyncio.get_running_loop().time() < deadline, f"no telemetry in time: {roster}"
                await asyncio.sleep(0.1)
            assert (roster["luke"]["behind"], roster["luke"]["lagMs"]) == (2, 1500)
            assert roster["cleo"]["behind"] == 0 and roster["cleo"]["lagMs"] is not None
            assert (roster["tina"]["behind"], roster["tina"]["lagMs"]) == (None, None)  # never reported
            # Each client also heard it in its pong (which may arrive just after the roster showed it).
            for _ in range(50):
                if (lagging.behind, caught_up.behind) == (2, 0):
                    break
                await asyncio.sleep(0.1)
            assert (lagging.behind, caught_up.behind) == (2, 0)

    run(scenario())


def test_a_dropped_socket_replays_what_it_missed(members, classroom):
    async def scenario():
        async with members() as room:
            writer = await room.join("wes", classroom)
            reader = await room.join("rita", classroom)
            await writer.send("stroke", {"n": 0})
            await reader.drop()
            for n in range(1, 6):
                await writer.send("stroke", {"n": n})
            await reader.catch_up()
            assert [d["n"] for _, _, d in persistent(reader, "stroke")] == list(range(6))
            assert reader.stats.reconnects >= 1 and reader.stats.replayed >= 5

    run(scenario())


def test_a_resend_with_the_same_id_creates_no_new_event(members, classroom):
    async def scenario():
        async with members() as room:
            alice = await room.join("alice", classroom)
            first = await alice.send("chat", {"text": "hi"}, id="fixed-1")
            again = await alice.send("chat", {"text": "hi"}, id="fixed-1")
            assert again["seq"] == first["seq"] and again["eid"] == first["eid"]
            await alice.catch_up()
            assert sum(1 for e in alice.events if e.get("id") == "fixed-1") == 1

    run(scenario())


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_request"),
        ({"action": "dance"}, "unknown_action"),
        ({"action": "send", "id": "x", "event": "clear", "data": {}}, "forbidden"),
        ({"action": "who", "classroom": "elsewhere"}, "forbidden"),
        ({"action": "send", "id": "x", "event": "chat", "data": "x" * 20_000}, "too_large"),
        ({"action": "send", "id": "x", "event": "chat"}, "bad_request"),
    ],
)
def test_every_error_code_reaches_the_client(system, classroom, frame, code):
    async def scenario():
        token = system.token("eve", classroom, "student")
        async with connect(f"{system.websocket_url}?token={token}&classroom={classroom}") as ws:
            await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply["type"] == "error" and reply["code"] == code, reply

    run(scenario())


def test_rate_limited_error_carries_retry_after(system, classroom):
    async def scenario():
        token = system.token("rick", classroom, "student")
        async with connect(f"{system.websocket_url}?token={token}&classroom={classroom}") as ws:
            for i in range(60):
                await ws.send(
                    json.dumps({"action": "send", "id": f"r{i}", "event": "cursor", "data": {"x": i}})
                )
            replies = []
            with pytest.raises(asyncio.TimeoutError):
                while True:
                    replies.append(json.loads(await asyncio.wait_for(ws.recv(), 2)))
            limited = [r for r in replies if r.get("code") == "rate_limited"]
            assert limited and all(r["retryAfterMs"] > 0 for r in limited)

    run(scenario())


@pytest.mark.parametrize(
    ("case", "status"), [("no-token", 401), ("bad-token", 401), ("other-classroom", 403)]
)
def test_connections_are_refused_with_401_and_403(system, classroom, case, status):
    async def scenario():
        token = {"no-token": "", "bad-token": "x.y.z", "other-classroom": system.token("mal", "elsewhere")}[
            case
        ]
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{system.websocket_url}?token={token}&classroom={classroom}"):
                pass
        assert refused.value.response.status_code == status

    run(scenario())


def test_client_reports_refusal(members, classroom, system):
    async def scenario():
        from classwire_client import ClasswireClient

        client = ClasswireClient(system.websocket_url, system.token("x", "elsewhere"), classroom, user_id="x")
        with pytest.raises(Refused) as refused:
            await client.start()
        assert refused.value.status == 403
        await client.close()

    run(scenario())


def test_teacher_ends_the_class_and_every_connection_closes(members, classroom):
    async def scenario():
        async with members() as room:
            teacher = await room.join("tina", classroom, "teacher")
            student = await room.join("sam", classroom)
            await teacher.send("clear", {})
            await teacher.send("end", {})
            await student.wait_for_seq(teacher.last_seq)
            for _ in range(50):
                if student.ended and teacher.ended and student._ws is None and teacher._ws is None:
                    break
                await asyncio.sleep(0.1)
            assert student.ended and student._ws is None and teacher._ws is None
            assert persistent(student)[-1][1] == "end"

    run(scenario())


def test_a_busy_classroom_gets_its_events_in_fewer_frames_when_it_asks_for_batches(
    system, members, classroom
):
    """Five members send at once; a raw connection with batch=1 gets `events` frames, one without gets one
    frame per event, and both get every event once."""

    async def listen(batch: bool, seen: list[dict], frames: list[str], expected: int) -> None:
        query = f"token={system.token('watcher', classroom)}&classroom={classroom}" + (
            "&batch=1" if batch else ""
        )
        async with connect(f"{system.websocket_url}?{query}") as ws:
            ready.release()
            while len([e for e in seen if e.get("event") == "stroke"]) < expected:
                frame = json.loads(await ws.recv())
                frames.append(frame["type"])
                seen.extend(frame["events"] if frame["type"] == "events" else [frame])

    ready = asyncio.Semaphore(0)

    async def scenario():
        async with members() as room:
            senders = [await room.join(f"s{n}", classroom) for n in range(5)]
            batched_events: list[dict] = []
            plain_events: list[dict] = []
            batched_frames: list[str] = []
            plain_frames: list[str] = []
            listeners = [
                asyncio.create_task(listen(True, batched_events, batched_frames, 50)),
                asyncio.create_task(listen(False, plain_events, plain_frames, 50)),
            ]
            for _ in listeners:
                await ready.acquire()
            await asyncio.sleep(0.3)  # both joined (their $connect returned)

            async def strokes(sender):
                for k in range(10):
                    await sender.send("stroke", {"k": k})

            await asyncio.gather(*(strokes(s) for s in senders))
            await asyncio.wait_for(asyncio.gather(*listeners), 20)

            def strokes_of(events: list[dict]) -> list[tuple]:
                return sorted((e["seq"], e["id"]) for e in events if e.get("event") == "stroke")

            assert (
                strokes_of(batched_events) == strokes_of(plain_events) and len(strokes_of(plain_events)) == 50
            )
            assert set(plain_frames) == {"event"}
            assert "events" in batched_frames and len(batched_frames) < len(plain_frames)

    run(scenario())


def test_a_late_joiner_starts_at_the_last_clear(members, classroom):
    async def scenario():
        async with members() as room:
            teacher = await room.join("tina", classroom, "teacher")
            for k in range(10):
                await teacher.send("stroke", {"k": k})
            await teacher.send("chat", {"text": "before the clear"})
            cleared = await teacher.send("clear", None)
            for k in range(2):
                await teacher.send("stroke", {"after": k})
            late = await room.join("lea", classroom)
            await late.wait_for_seq(cleared["seq"] + 2)
            assert [e["event"] for e in late.events][:3] == ["clear", "stroke", "stroke"]
            assert late.events[0]["seq"] == cleared["seq"] and late.stats.resets == 0
            # The teacher, there all along, holds the whole log.
            assert len(teacher.events) > len(late.events)

    run(scenario())
