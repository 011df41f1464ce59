"""The local cloud: the same system as AWS, on this machine (make deploy ENV=local)."""

from __future__ import annotations

import random
import socket
from collections.abc import Mapping

HOST = "127.0.0.1"  # everything the local cloud serves listens on loopback only


def free_port() -> int:
    """A loopback port nothing listens on now (the OS's choice)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def draw_fault(rng: random.Random, chances: Mapping[str, float]) -> str | None:
    """One seeded draw among faults with these probabilities (fault tests); None: no fault this time."""
    draw = rng.random()
    for kind, chance in chances.items():
        draw -= chance
        if draw < 0:
            return kind
    return None
