"""How big the reliability runs are: `CLASSWIRE_PROVE=full` (make prove) or the CI size (make test)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Sizes:
    name: str
    # Chaos: clients spread over classrooms, each sending persistent events for `chaos_seconds`
    # while sockets are cut, the gateway restarts once and Redis fails over once.
    chaos_clients: int
    chaos_classrooms: int
    chaos_seconds: float
    chaos_send_interval: float  # mean pause between one client's sends (seconds)
    chaos_cuts_per_second: float  # socket cuts, client and gateway side together
    # Load: connections over classrooms, persistent events per second per classroom.
    load_connections: int
    load_classrooms: int
    load_events_per_second: float
    load_seconds: float
    load_processes: int  # client processes (one Python process cannot drive 1,000 sockets on 2 cores)
    max_concurrency: int  # execution environments per function in the gateway
    # Faults on every hop: Redis replies dropped, delayed, cut mid-command; @connections 429/500/no answer;
    # the message function's workers killed between an append and its fan-out (`faults_kills` times).
    faults_clients: int
    faults_classrooms: int
    faults_seconds: float
    faults_kills: int
    # Abuse: one user against the system while a bystander classroom measures what it still gets.
    abuse_seconds: float
    abuse_bystanders: int

    def as_dict(self) -> dict:
        return asdict(self)


CI = Sizes(
    name="ci",
    chaos_clients=12,
    chaos_classrooms=3,
    chaos_seconds=6,
    chaos_send_interval=0.3,
    chaos_cuts_per_second=1.5,
    load_connections=60,
    load_classrooms=6,
    load_events_per_second=5,
    load_seconds=4,
    load_processes=1,
    max_concurrency=6,
    faults_clients=8,
    faults_classrooms=2,
    faults_seconds=8,
    faults_kills=2,
    abuse_seconds=5,
    abuse_bystanders=4,
)

FULL = Sizes(
    name="full",
    chaos_clients=200,
    chaos_classrooms=10,
    chaos_seconds=60,
    chaos_send_interval=2.0,
    chaos_cuts_per_second=3,
    load_connections=1000,
    load_classrooms=40,
    load_events_per_second=5,
    load_seconds=60,
    load_processes=3,
    max_concurrency=8,
    faults_clients=60,
    faults_classrooms=6,
    faults_seconds=60,
    faults_kills=10,
    abuse_seconds=30,
    abuse_bystanders=20,
)


def current() -> Sizes:
    return FULL if os.environ.get("CLASSWIRE_PROVE") == "full" else CI
