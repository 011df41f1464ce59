"""A late joiner's catch-up: someone joining two hours into a class of the reference profile.

    python -m bench.late_joiner [--profile cost/profiles/mid_size_school.toml] [--hours 2]

The class's log is built with the real scripts on a real redis-server, event by event at the profile's
rates for an average room (pen segments, chat, erases, the teacher's clears; cursors are volatile and not
logged), with data of the profile's sizes. The joiner arrives halfway between two clears (the average case).
It then syncs from 0 through the message handler's core, page after page as the client libraries do: once
starting at the last `clear` (as shipped), once in a classroom whose clears start no board (the path before,
from the oldest event retained). Messages are the sync requests and their replies (two per page).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.batching import LIMITS, Delivered
from classwire.classroom import ClassroomService
from classwire.classroom_store import ClassroomStore, Member
from cost.profile import DEFAULT_PROFILE, UsageProfile, load_profile
from localcloud.cache import RedisServer

SYNC_LIMIT = 200  # what both client libraries ask for


def class_events(profile: UsageProfile, hours: float) -> list[tuple[float, str, int]]:
    """(time, event, data bytes) of one average room's persistent events, evenly paced per kind; the
    clears fall at odd multiples of half their period, so the class ends halfway between two."""
    room = profile.peak_concurrent_users * profile.average_to_peak / profile.classrooms
    seconds = hours * 3600
    events = []
    for name, rate in profile.events.items():
        if name == "cursor":
            continue
        per_second = rate.per_member_per_second * room
        if per_second <= 0:
            continue
        period = 1 / per_second
        offset = period / 2 if name == "clear" else 0.0
        size = rate.data_bytes + rate.fixed_data_bytes
        count = int((seconds - offset) / period) + 1
        events += [(offset + k * period, name, size) for k in range(count) if offset + k * period < seconds]
    return sorted(events)


def catch_up(core: ClassroomService, joiner: Member) -> dict:
    since, epoch, pages, reply_bytes, events = 0, "", 0, 0, 0
    request_bytes = 0
    while True:
        request = json.dumps({"action": "sync", "since": since, "epoch": epoch, "limit": SYNC_LIMIT})
        reply = core.handle(joiner, request)
        assert reply is not None
        page = json.loads(reply)
        pages += 1
        request_bytes += len(request)
        reply_bytes += len(reply.encode())
        events += len(page["events"])
        since, epoch = page["last"], page["epoch"]
        if not page["more"]:
            return {
                "events": events,
                "pages": pages,
                "round_trips": pages,
                "messages": 2 * pages,
                "bytes": reply_bytes + request_bytes,
            }


def run(profile_path: Path = DEFAULT_PROFILE, hours: float = 2.0) -> dict:
    profile = load_profile(profile_path)
    schedule = class_events(profile, hours)
    results: dict = {"profile": profile.name, "hours": hours, "events_in_class": len(schedule)}
    with RedisServer() as server:
        client = server.client()
        store = ClassroomStore(client, LIMITS)
        core = ClassroomService(store, Delivered(), LIMITS)
        for path, starts_board in (("from_last_clear", True), ("from_oldest_retained", False)):
            room = f"late-{path}"
            teacher = Member("T0000000000000=", room, "t" * profile.ids.user_id_chars, "teacher", "Teacher")
            joiner = Member("J0000000000000=", room, "j" * profile.ids.user_id_chars, "student", "Late")
            core.connect(teacher, 0, batch=True)
            for n, (_, name, size) in enumerate(schedule):
                store.publish(
                    teacher,
                    f"{n:0{profile.ids.client_id_chars}d}",
                    name,
                    json.dumps({"d": "x" * max(0, size - 8)}),
                    True,
                    starts_board=starts_board and name == "clear",
                )
            core.connect(joiner, 0, batch=True)
            results[path] = catch_up(core, joiner)
        client.close()
    before, after = results["from_oldest_retained"], results["from_last_clear"]
    results["bytes_ratio"] = round(after["bytes"] / before["bytes"], 3)
    return results


def table(results: dict) -> str:
    lines = [
        f"A late joiner {results['hours']:g} h into a class of {results['profile']} "
        f"({results['events_in_class']} persistent events; the log keeps the newest 10,000):",
        "",
        "| first sync | events | pages (round trips) | messages | bytes |",
        "|---|---:|---:|---:|---:|",
    ]
    for path, label in (
        ("from_oldest_retained", "from the oldest retained (before)"),
        ("from_last_clear", "from the last clear"),
    ):
        r = results[path]
        lines.append(f"| {label} | {r['events']} | {r['pages']} | {r['messages']} | {r['bytes']:,} |")
    lines.append(f"\nbytes: {results['bytes_ratio']} of before")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, default=DEFAULT_PROFILE)
    parser.add_argument("--hours", type=float, default=2.0)
    args = parser.parse_args(argv)
    print(table(run(args.profile, args.hours)))


if __name__ == "__main__":
    main()
