"""The registry of event types members may send: who may send each, whether it is logged, and whether
it ends the class. Plain data: the classroom service acts on it."""

from __future__ import annotations

from dataclasses import dataclass

from classwire import roles

EVERYONE = frozenset(roles.ROLES)
TEACHER = frozenset({roles.TEACHER})
# Appended by the server itself; no client may send them.
SYSTEM_EVENTS = frozenset({"join", "leave"})


@dataclass(frozen=True)
class EventType:
    name: str
    senders: frozenset[str]
    # Persistent events get a seq, are logged and acknowledged; volatile ones are best effort.
    persistent: bool
    # Once everyone has been sent it, every connection of the classroom is closed, and the class stays
    # ended (students' $connect and sends refused) until a teacher reopens it.
    closes_class: bool = False
    # A new board starts here: a member's first sync (it holds nothing) starts at the last such event,
    # not at the oldest one retained, so a late joiner does not replay strokes a teacher has cleared.
    starts_board: bool = False


DEFAULT_EVENT_TYPES: tuple[EventType, ...] = (
    EventType("chat", EVERYONE, persistent=True),
    EventType("stroke", EVERYONE, persistent=True),
    EventType("erase", EVERYONE, persistent=True),
    EventType("cursor", EVERYONE, persistent=False),
    EventType("clear", TEACHER, persistent=True, starts_board=True),
    EventType("end", TEACHER, persistent=True, closes_class=True),
)


class EventRegistry:
    def __init__(self, types: tuple[EventType, ...] = DEFAULT_EVENT_TYPES):
        clash = SYSTEM_EVENTS & {t.name for t in types}
        if clash:
            raise ValueError(f"event names reserved for the server: {sorted(clash)}")
        self._types = {t.name: t for t in types}

    def get(self, name: str) -> EventType | None:
        return self._types.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._types)
