"""The usage profile: how the stack is used (cost/profiles/*.toml), as typed frozen dataclasses."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path

from classwire.event_types import DEFAULT_EVENT_TYPES

DEFAULT_PROFILE = Path(__file__).resolve().parent / "profiles" / "mid_size_school.toml"


@dataclass(frozen=True)
class EventRate:
    per_member_per_second: float
    # Serialized `data` of one frame; for strokes, of one pen segment (coalescing multiplies it).
    data_bytes: int
    # Part of `data` sent once per frame whatever the coalescing (a stroke's id, color, width).
    fixed_data_bytes: int = 0


@dataclass(frozen=True)
class Ids:
    user_id_chars: int
    name_chars: int
    classroom_id_chars: int
    client_id_chars: int
    connection_id_chars: int


@dataclass(frozen=True)
class LambdaTiming:
    full_vcpu_memory_mb: int
    redis_round_trip_ms: float
    post_round_trip_ms: float
    cpu_ms_per_frame: float
    cpu_ms_per_delivery: float
    authorizer_cpu_ms: float


@dataclass(frozen=True)
class LogAssumptions:
    platform_bytes_per_invocation: int
    emf_bytes_per_invocation: int
    app_bytes_per_connect: int
    app_bytes_per_message: int
    compression_ratio: float


@dataclass(frozen=True)
class NetworkAssumptions:
    post_request_overhead_bytes: int
    post_response_bytes: int
    redis_request_overhead_bytes: int
    redis_reply_bytes_per_member: int


@dataclass(frozen=True)
class FlowLogAssumptions:
    warm_environments_per_concurrent_execution: float
    flows_per_environment: float
    records_per_flow: float
    record_bytes: int


@dataclass(frozen=True)
class MonthlyRequests:
    kms: int
    secrets_manager: int


@dataclass(frozen=True)
class UsageProfile:
    name: str
    description: str
    peak_concurrent_users: int
    # Distinct users connecting in a month (what MAU-priced services bill).
    monthly_active_users: int
    classrooms: int
    hours_per_day: float
    days_per_month: float
    average_to_peak: float
    ping_interval_seconds: float
    reconnects_per_connection_hour: float
    reconnect_gap_seconds: float
    # Of the reconnects, those back within the presence grace (they announce nothing).
    reconnects_within_grace: float
    stroke_coalescing_factor: int
    events: dict[str, EventRate]
    ids: Ids
    lambda_timing: LambdaTiming
    logs: LogAssumptions
    network: NetworkAssumptions
    flow_logs: FlowLogAssumptions
    monthly_requests: MonthlyRequests
    # Volatile event types logged (and acknowledged) like persistent ones anyway: the "cursors logged" lever.
    logged_volatile: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        sendable = {t.name for t in DEFAULT_EVENT_TYPES}
        for name in self.events:
            if name not in sendable:
                problems.append(
                    f"events.{name}: not an event type of the registry ({', '.join(sorted(sendable))})"
                )
        for name in self.logged_volatile:
            if name not in sendable:
                problems.append(f"logged_volatile: {name!r} is not an event type")
        if (
            self.peak_concurrent_users < 1
            or self.classrooms < 1
            or self.classrooms > self.peak_concurrent_users
        ):
            problems.append(
                "peak_concurrent_users and classrooms must be >= 1, with at most one classroom per user"
            )
        if not 0 < self.average_to_peak <= 1:
            problems.append("average_to_peak must be in (0, 1]")
        if not 0 < self.hours_per_day <= 24 or not 0 < self.days_per_month <= 31:
            problems.append("hours_per_day must be in (0, 24] and days_per_month in (0, 31]")
        if self.stroke_coalescing_factor < 1 or self.ping_interval_seconds <= 0:
            problems.append("stroke_coalescing_factor must be >= 1 and ping_interval_seconds > 0")
        if not 0 <= self.reconnects_within_grace <= 1:
            problems.append("reconnects_within_grace must be in [0, 1]")
        if any(e.per_member_per_second < 0 or e.data_bytes < 0 for e in self.events.values()):
            problems.append("event rates and sizes must be >= 0")
        if problems:
            raise ValueError(f"profile {self.name!r} is invalid:\n  - " + "\n  - ".join(problems))


def load_profile(path: Path) -> UsageProfile:
    return build(UsageProfile, _read(path), where=str(path))


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A profile's table; `based_on` names a profile (beside it) whose tables it starts from: its own keys
    win, tables merge key by key, except `events`, which a profile that lists any lists in full."""
    if path.resolve() in seen:
        raise ValueError(f"{path}: based_on forms a cycle")
    with open(path, "rb") as file:
        data = tomllib.load(file)
    base_name = data.pop("based_on", None)
    if base_name is None:
        return data
    base = _read(path.parent / str(base_name), (*seen, path.resolve()))
    return _merge(base, data)


def _merge(base: dict, own: dict) -> dict:
    merged = dict(base)
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "events":
            merged[key] = _merge(base[key], value)
        else:
            merged[key] = value
    return merged


def build(cls, data, where: str):
    """A (nested) frozen dataclass from a TOML mapping; unknown and missing keys are errors naming the key."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
    values = {}
    for spec in dataclasses.fields(cls):
        if spec.name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ValueError(f"{where}: missing key {spec.name!r}")
            continue
        values[spec.name] = _coerce(hints[spec.name], data[spec.name], f"{where}: {spec.name}")
    return cls(**values)


def _coerce(hint, value, where: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a table")
        return {key: _coerce(item, entry, f"{where}.{key}") for key, entry in value.items()}
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list")
        return tuple(str(v) for v in value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    raise ValueError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
