"""The registry of event types members may send: who may send each, whether it is logged, and what
happens after it is delivered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from classwire.settings import ROLES

if TYPE_CHECKING:
    from classwire.classroom import ClassroomService
    from classwire.classroom_store import Member, Published

EVERYONE = frozenset(ROLES)
TEACHER = frozenset({"teacher"})
# Appended by the server itself; no client may send them.
SYSTEM_EVENTS = frozenset({"join", "leave"})

AfterDelivery = Callable[["ClassroomService", "Member", "Published"], None]


@dataclass(frozen=True)
class EventType:
    name: str
    senders: frozenset[str]
    # Persistent events get a seq, are logged and acknowledged; volatile ones are best effort.
    persistent: bool
    after_delivery: AfterDelivery | None = None
    # The class stays ended (students' $connect and sends refused) until a teacher reopens it.
    closes_class: bool = False


def _end_class(service: ClassroomService, sender: Member, published: Published) -> None:
    """`end` closes every connection of the classroom once everyone has been sent the event."""
    service.close_connections(sender.classroom_id, published.connection_ids)


DEFAULT_EVENT_TYPES: tuple[EventType, ...] = (
    EventType("chat", EVERYONE, persistent=True),
    EventType("stroke", EVERYONE, persistent=True),
    EventType("erase", EVERYONE, persistent=True),
    EventType("cursor", EVERYONE, persistent=False),
    EventType("clear", TEACHER, persistent=True),
    EventType("end", TEACHER, persistent=True, after_delivery=_end_class, closes_class=True),
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
