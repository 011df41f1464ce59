"""Presence at lecture scale: the messages a class start, API Gateway's 2-hour reconnect wave and a class end
cost, before (every join and leave logged for everyone) and after (a reconnect grace, and above
`presence_live_max_users` students' joins and leaves go to the teachers only).

    python -m bench.presence [--members 1000]

The real core (ClassroomService and its Lua scripts on a real redis-server) posts to an @connections stub
that counts: a message is one POST (what API Gateway bills), a delivery one event or presence change
reaching one connection. Members join one at a time (the worst case for batching: each join is its own
round); in the wave each member's connection closes and its client reconnects at once; at the end every
member leaves, each after the grace (so each leave is announced).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace

from bench.batching import LIMITS, Delivered
from classwire.classroom import ClassroomService
from classwire.classroom_store import ClassroomStore, Member
from classwire.settings import Limits
from localcloud.cache import RedisServer

BEFORE = replace(LIMITS, presence_grace_seconds=0, presence_live_max_users=10**9)
AFTER = replace(LIMITS, presence_grace_seconds=Limits().presence_grace_seconds)


@dataclass
class Counted(Delivered):
    """@connections that delivers every post and counts messages and deliveries."""

    messages: int = 0
    deliveries: int = 0

    def post_each(self, posts):
        for _, data in posts:
            frame = json.loads(data)
            self.messages += 1
            kind = frame["type"]
            self.deliveries += (
                len(frame["events"])
                if kind == "events"
                else len(frame["changes"])
                if kind == "presence"
                else 1
            )
        return super().post_each(posts)

    def taken(self) -> dict:
        counted = {"messages": self.messages, "deliveries": self.deliveries}
        self.messages = self.deliveries = 0
        return counted


def lecture(client, room: str, limits: Limits, members: int) -> dict:
    connections = Counted()

    def core(grace: Limits) -> ClassroomService:
        return ClassroomService(ClassroomStore(client, grace), connections, grace)

    live = core(limits)
    people = [Member(f"{room}-t", room, "teacher", "teacher", "Teacher")] + [
        Member(f"{room}-{n}", room, f"student-{n:04d}", "student", f"Student {n}") for n in range(1, members)
    ]
    for m in people:
        assert live.connect(m, 0, batch=True) is None
    phases = {"class start": connections.taken()}
    again = []
    for m in people:  # each connection reaches API Gateway's 2 hours; its client reconnects at once
        live.disconnect(m)
        back = replace(m, connection_id=m.connection_id + "-2h")
        assert live.connect(back, 0, batch=True) is None
        again.append(back)
    phases["2-hour reconnect wave"] = connections.taken()
    # Leaves spaced further apart than the grace are each announced as they happen: the same as no grace.
    leaving = core(replace(limits, presence_grace_seconds=0))
    for m in reversed(again):
        leaving.disconnect(m)
    phases["class end"] = connections.taken()
    return phases


def run(members: int = 1000) -> dict:
    results: dict = {"members": members, "live_max_users": AFTER.presence_live_max_users}
    with RedisServer() as server:
        client = server.client()
        for name, limits in (("before", BEFORE), ("after", AFTER)):
            results[name] = lecture(client, f"presence-{name}", limits, members)
        client.close()
    results["ratios"] = {
        phase: round(results["after"][phase]["messages"] / max(1, results["before"][phase]["messages"]), 4)
        for phase in results["before"]
    }
    return results


def table(results: dict) -> str:
    lines = [
        f"A {results['members']:,}-member lecture (1 teacher), crowded above "
        f"{results['live_max_users']} users; messages are API Gateway POSTs:",
        "",
        "| phase | before: messages | before: deliveries | after: messages | after: deliveries | after / before |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for phase, ratio in results["ratios"].items():
        b, a = results["before"][phase], results["after"][phase]
        lines.append(
            f"| {phase} | {b['messages']:,} | {b['deliveries']:,} | {a['messages']:,} | {a['deliveries']:,} "
            f"| {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    args = parser.parse_args(argv)
    print(table(run(args.members)))


if __name__ == "__main__":
    main()
