"""The local cloud: the same system as AWS, on this machine (make deploy ENV=local)."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where the project's Python lives (the Makefile's PYTHONPATH): child processes import from these.
SOURCE_PATHS = (ROOT / "lambdas", ROOT / "terraform", ROOT / "clients" / "python", ROOT)


def python_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """`environ` (default: this process's) with the project's source paths first on PYTHONPATH, so a
    `python -m localcloud...` child imports the same code wherever it was started from."""
    env = dict(os.environ if environ is None else environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, SOURCE_PATHS), *filter(None, [env.get("PYTHONPATH")])])
    return env


def draw_fault(rng: random.Random, chances: Mapping[str, float]) -> str | None:
    """One seeded draw among faults with these probabilities (fault tests); None: no fault this time."""
    draw = rng.random()
    for kind, chance in chances.items():
        draw -= chance
        if draw < 0:
            return kind
    return None
