"""The local cloud: the same system as AWS, on this machine (make deploy ENV=local)."""

from __future__ import annotations

import random
from collections.abc import Mapping


def draw_fault(rng: random.Random, chances: Mapping[str, float]) -> str | None:
    """One seeded draw among faults with these probabilities (fault tests); None: no fault this time."""
    draw = rng.random()
    for kind, chance in chances.items():
        draw -= chance
        if draw < 0:
            return kind
    return None
