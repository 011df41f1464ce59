"""Reliability runs against the local system: chaos, load and stale state (issue 5, "Faults").

Sizes come from `tests/prove/sizes.py`: small in `make test`, full in `make prove` (CLASSWIRE_PROVE=full).
Every test prints its figures and records them (`figures`); the session's end writes the report.
"""

from __future__ import annotations

import secrets
import time

import pytest

from localcloud.system import LocalSystem
from tests.prove.figures import Figures
from tests.prove.sizes import Sizes, current

_FIGURES = Figures(current())
_started = False


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    return current()


@pytest.fixture(scope="session")
def figures() -> Figures:
    global _started
    if not _started:
        _FIGURES.reset()
        _started = True
    return _FIGURES


@pytest.fixture(scope="session")
def system(sizes, figures):
    """The system as the faults need it: Redis primary + replica behind the primary endpoint, the gateway
    as its own process on a fixed port (restartable), Lambda workers per function as sized."""
    started = time.monotonic()
    with LocalSystem(
        key=secrets.token_urlsafe(48),
        redis="replicated",
        gateway="process",
        max_concurrency=sizes.max_concurrency,
    ) as local:
        figures.record("setup", "system start", round(time.monotonic() - started, 1), "s")
        yield local


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and "figures" in getattr(item, "fixturenames", ()):
        _FIGURES.outcome(item.name, report.passed)
    return report


def pytest_sessionfinish(session, exitstatus):
    if _started:
        path = _FIGURES.write_report()
        if path is not None:
            print(f"\nreliability report: {path}")
