"""How many API Gateway messages a delivered event costs with batching (README, "Batching").

One invocation at a time posts a classroom's events in rounds; whatever is appended while a round's posts
are in flight goes out together in the next. Given a room's event rate (Poisson arrivals), how long a
round takes and the flusher's optional linger, this replays the flusher's rule over a seeded arrival
stream: rounds per event is what each member is posted per event it receives. `bench.batching` checks the
rule against the real system at the same rates.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import random
from dataclasses import dataclass

SAMPLE_EVENTS = 50_000


@dataclass(frozen=True)
class Batching:
    messages_per_event: float  # rounds per event: each member is posted once per round
    flushes_per_event: float  # flushers started per event (each lingers once, then posts its rounds)


@functools.cache
def batching(events_per_second: float, round_ms: float, linger_ms: float = 0.0) -> Batching:
    """A round starts when an event finds no flusher (after `linger_ms`), takes `round_ms`, and the next
    one carries every event appended meanwhile."""
    if events_per_second <= 0:
        return Batching(1.0, 1.0)
    rng = random.Random(1)
    arrivals = list(itertools.accumulate(rng.expovariate(events_per_second) for _ in range(SAMPLE_EVENTS)))
    d, linger = round_ms / 1000, linger_ms / 1000
    rounds = flushes = i = 0
    while i < len(arrivals):
        cutoff = arrivals[i] + linger  # the first round takes what came during the linger
        end = cutoff + d
        rounds += 1
        flushes += 1
        i = bisect.bisect_right(arrivals, cutoff, lo=i)
        while i < len(arrivals) and arrivals[i] <= end:  # appended while the round was posted
            cutoff, end = end, end + d
            rounds += 1
            i = bisect.bisect_right(arrivals, cutoff, lo=i)
    return Batching(rounds / len(arrivals), flushes / len(arrivals))
