"""Monthly cost of one environment's stack for a usage profile, against Pusher Channels and Ably.

    make cost ENV=prod                                   # the reference profile (cost/profiles/mid_size_school.toml)
    make cost ENV=dev PROFILE=cost/profiles/<file>.toml

What the stack is (NAT gateways, public IPs, cache node type and count, Lambda memory and architecture, log
groups and their retention, alarms, dashboards, KMS keys, secrets, flow logs, the access log format, the log
retention limits) is read from the synthesized `cdktf.out/stacks/classwire-<env>/cdk.tf.json`, which is
synthesized first when missing. How it is used comes from the profile (a typed dataclass below); every price
from `cost/prices.toml`, each with its source and date. Frame sizes are those of the protocol (README,
"Protocol"), built with the protocol's own JSON encoding; which events are persistent comes from the event
registry. Writes `cost/results/<env>-<profile>.md` (tables: components, comparison, levers, assumptions)
and `.svg` (a chart), and prints the markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import subprocess
import sys
import tomllib
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "lambdas") not in sys.path:
    sys.path.insert(0, str(ROOT / "lambdas"))

from classwire.event_types import DEFAULT_EVENT_TYPES  # noqa: E402
from classwire.protocol import DEFAULT_SYNC_LIMIT, ERROR_CODES, compact_json  # noqa: E402
from classwire.settings import FRAME_LIMIT_BYTES, IDEMPOTENCY_WINDOW_SECONDS, Limits  # noqa: E402

DEFAULT_PROFILE = ROOT / "cost" / "profiles" / "mid_size_school.toml"
DEFAULT_PRICES = ROOT / "cost" / "prices.toml"
RESULTS_DIR = ROOT / "cost" / "results"
# API Gateway meters WebSocket messages in 32 KB increments: a 33 KB message is two.
METERING_UNIT_BYTES = 32 * 1024
# CloudWatch Logs bills each event's bytes plus this per-event overhead.
LOG_EVENT_OVERHEAD_BYTES = 26
# Room a sync reply keeps for its envelope (lambdas/classwire/classroom.py REPLY_ENVELOPE_BYTES).
REPLY_ENVELOPE_BYTES = 256
GIB = 1024**3
DAYS_PER_MONTH = 365 / 12
# ElastiCache keeps 25% of a node's memory for itself by default (reserved-memory-percent).
CACHE_USABLE_MEMORY = 0.75
# Per logged event in Redis beyond its frame: stream/sorted-set entry, eid index, key overhead.
REDIS_BYTES_PER_LOGGED_EVENT = 120
# Per idempotency record (sender + client id -> seq) kept IDEMPOTENCY_WINDOW_SECONDS.
REDIS_BYTES_PER_IDEMPOTENCY_KEY = 110
# A representative server timestamp, seq and eid, so sizes match real frames.
SAMPLE_TS_MS = 1_764_000_000_000
SAMPLE_SEQ = 123_456
SAMPLE_EID = "9f2c0a1b3d4e5f60"
SAMPLE_LAG_MS = 120


# -- the usage profile ---------------------------------------------------------------------------------------
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
    classrooms: int
    hours_per_day: float
    days_per_month: float
    average_to_peak: float
    ping_interval_seconds: float
    reconnects_per_connection_hour: float
    reconnect_gap_seconds: float
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
        if any(e.per_member_per_second < 0 or e.data_bytes < 0 for e in self.events.values()):
            problems.append("event rates and sizes must be >= 0")
        if problems:
            raise ValueError(f"profile {self.name!r} is invalid:\n  - " + "\n  - ".join(problems))


def load_profile(path: Path) -> UsageProfile:
    with open(path, "rb") as file:
        return build(UsageProfile, tomllib.load(file), where=str(path))


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


# -- prices --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Price:
    key: str
    unit: str
    per: float
    tiers: tuple[tuple[float | None, float], ...]  # (up to, in `per` units, or None; price per `per`)
    source: str
    retrieved: str
    note: str = ""

    def cost(self, quantity: float) -> float:
        """Monthly cost of `quantity` units, tier by tier."""
        remaining, floor, total = quantity / self.per, 0.0, 0.0
        for up_to, price in self.tiers:
            span = remaining if up_to is None else min(remaining, up_to - floor)
            total += max(span, 0.0) * price
            remaining -= max(span, 0.0)
            if up_to is not None:
                floor = up_to
            if remaining <= 0:
                break
        return total

    def describe(self) -> str:
        per = "" if self.per == 1 else f" per {_short(self.per)}"
        first, *rest = self.tiers
        text = f"${_num(first[1])}{per}" + (
            f" up to {_short(first[0] * self.per)}" if first[0] is not None else ""
        )
        for up_to, price in rest:
            text += f", then ${_num(price)}" + (
                f" up to {_short(up_to * self.per)}" if up_to is not None else ""
            )
        return text


@dataclass(frozen=True)
class PriceBook:
    hours_per_month: float
    aws: dict[str, Price]
    node_memory_gib: dict[str, float]
    pusher: dict
    ably: dict

    def __getitem__(self, key: str) -> Price:
        return self.aws[key]


def load_prices(path: Path = DEFAULT_PRICES) -> PriceBook:
    with open(path, "rb") as file:
        raw = tomllib.load(file)
    aws: dict[str, Price] = {}
    memory: dict[str, float] = {}
    for key, entry in raw["aws"].items():
        if key == "elasticache_node_hour":
            for node_type, node in entry.items():
                aws[f"elasticache_node_hour:{node_type}"] = _price(f"elasticache_node_hour:{node_type}", node)
                memory[node_type] = float(node["memory_gib"])
        else:
            aws[key] = _price(key, entry)
    return PriceBook(float(raw["meta"]["hours_per_month"]), aws, memory, raw["pusher"], raw["ably"])


def _price(key: str, entry: dict) -> Price:
    if "tiers" in entry:
        tiers = tuple((t.get("up_to"), float(t["price"])) for t in entry["tiers"])
    else:
        tiers = ((None, float(entry["price"])),)
    return Price(
        key,
        entry["unit"],
        float(entry.get("per", 1)),
        tiers,
        entry["source"],
        entry["retrieved"],
        entry.get("note", ""),
    )


def tiered(tiers: list[dict], per: float, quantity: float) -> float:
    """Cost of `quantity` against a vendor's volume tiers (`up_to` in `per` units)."""
    return Price("vendor", "", per, tuple((t.get("up_to"), float(t["price"])) for t in tiers), "", "").cost(
        quantity
    )


# -- the synthesized stack -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FunctionFacts:
    name: str
    role: str
    memory_mb: int
    architecture: str
    retention_days: int | None


@dataclass(frozen=True)
class StackFacts:
    name: str
    region: str
    availability_zones: int
    nat_gateways: int
    public_ipv4: int
    cache_node_type: str
    cache_nodes: int
    functions: dict[str, FunctionFacts]
    access_log_retention_days: int | None
    access_log_format: dict[str, str]
    flow_logs: int
    flow_log_interval_seconds: int
    flow_log_retention_days: int | None
    alarm_metrics_standard: int
    alarm_metrics_high_resolution: int
    dashboards: int
    kms_keys: int
    secrets: int
    log_max_events: int
    log_max_age_seconds: int

    @classmethod
    def from_json(cls, stack: dict, name: str = "stack") -> StackFacts:
        resources = stack.get("resource", {})

        def block(kind: str) -> list[dict]:
            return list(resources.get(kind, {}).values())

        log_groups = resources.get("aws_cloudwatch_log_group", {})

        def retention(reference: str | None) -> int | None:
            match = re.search(r"aws_cloudwatch_log_group\.([^.}]+)\.", reference or "")
            group = log_groups.get(match.group(1), {}) if match else {}
            return group.get("retention_in_days")

        functions = {}
        for function in block("aws_lambda_function"):
            role = function["function_name"].rsplit("-", 1)[-1]
            functions[role] = FunctionFacts(
                name=function["function_name"],
                role=role,
                memory_mb=int(function.get("memory_size", 128)),
                architecture=(function.get("architectures") or ["x86_64"])[0],
                retention_days=retention((function.get("logging_config") or {}).get("log_group")),
            )
        groups = block("aws_elasticache_replication_group")
        if len(groups) != 1:
            raise ValueError(f"{name}: expected one ElastiCache replication group, found {len(groups)}")
        stages = block("aws_apigatewayv2_stage")
        access = (stages[0].get("access_log_settings") or {}) if stages else {}
        flows = block("aws_flow_log")
        standard = high_resolution = 0
        for alarm in block("aws_cloudwatch_metric_alarm"):
            metrics = sum(1 for q in alarm.get("metric_query", []) if q.get("metric")) or 1
            if int(alarm.get("period", 60)) < 60:
                high_resolution += metrics
            else:
                standard += metrics
        environment = {}
        for function in block("aws_lambda_function"):
            environment.update((function.get("environment") or {}).get("variables", {}))
        limits = Limits()
        provider = (stack.get("provider", {}).get("aws") or [{}])[0]
        return cls(
            name=name,
            region=provider.get("region", "us-east-1"),
            availability_zones=len({s.get("availability_zone") for s in block("aws_subnet")}) or 1,
            nat_gateways=len(block("aws_nat_gateway")),
            public_ipv4=len(block("aws_eip")),
            cache_node_type=groups[0]["node_type"],
            cache_nodes=int(groups[0].get("num_cache_clusters", 1)),
            functions=functions,
            access_log_retention_days=retention(access.get("destination_arn")),
            access_log_format=_json_or_empty(access.get("format")),
            flow_logs=len(flows),
            flow_log_interval_seconds=int(flows[0].get("max_aggregation_interval", 600)) if flows else 600,
            flow_log_retention_days=retention(flows[0].get("log_destination")) if flows else None,
            alarm_metrics_standard=standard,
            alarm_metrics_high_resolution=high_resolution,
            dashboards=len(block("aws_cloudwatch_dashboard")),
            kms_keys=len(block("aws_kms_key")),
            secrets=len(block("aws_secretsmanager_secret")),
            log_max_events=int(environment.get("CLASSWIRE_LOG_MAX_EVENTS", limits.log_max_events)),
            log_max_age_seconds=int(
                environment.get("CLASSWIRE_LOG_MAX_AGE_SECONDS", limits.log_max_age_seconds)
            ),
        )


def _json_or_empty(text: str | None) -> dict[str, str]:
    import json

    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def stack_file(env: str) -> Path:
    return ROOT / "cdktf.out" / "stacks" / f"classwire-{env}" / "cdk.tf.json"


def load_stack(env: str, *, synthesize: bool = True) -> StackFacts:
    """Reads ENV's synthesized stack; synthesizes it (building the Lambda zip if needed) when missing."""
    import json

    path = stack_file(env)
    if not path.exists() and synthesize:
        _synthesize(env)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make synth ENV={env}`")
    return StackFacts.from_json(json.loads(path.read_text()), name=f"classwire-{env}")


def _synthesize(env: str) -> None:
    sys.path.insert(0, str(ROOT / "terraform"))
    from classwire_infra.config import load

    zip_file = ROOT / load(env).lambda_zip
    if not zip_file.exists():
        print(f"cost: building {zip_file.name} for {env}", file=sys.stderr)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build_lambdas.py"), "--env", env], check=True)
    print(f"cost: synthesizing classwire-{env} (cdktf's jsii runtime takes ~35 s to start)", file=sys.stderr)
    subprocess.run([sys.executable, str(ROOT / "terraform" / "main.py"), "--env", env], check=True)


# -- frames: the protocol's shapes, encoded as the server and clients encode them -------------------------------
def metered_units(frame_bytes: float) -> int:
    """API Gateway messages a frame of this many bytes is billed as (32 KB increments, rounded up)."""
    return max(1, math.ceil(frame_bytes / METERING_UNIT_BYTES))


def _with_data(frame: dict, data_bytes: int) -> int:
    """Bytes of `frame` whose `data` is a JSON value of `data_bytes` bytes."""
    return len(compact_json({**frame, "data": None}).encode()) - len("null") + data_bytes


def client_send_bytes(event: str, data_bytes: int, ids: Ids) -> int:
    return _with_data(
        {"action": "send", "id": "m" * ids.client_id_chars, "event": event, "data": None}, data_bytes
    )


def event_frame_bytes(
    event: str, data_bytes: int, persistent: bool, ids: Ids, *, client_id: bool = True
) -> int:
    """An event frame (README, "Server -> client"); persistent ones carry seq, eid and prev."""
    frame: dict[str, object] = {"type": "event", "classroom": "c" * ids.classroom_id_chars}
    if persistent:
        frame.update(seq=SAMPLE_SEQ, eid=SAMPLE_EID, prev=SAMPLE_EID)
    frame.update(
        {
            "id": "m" * ids.client_id_chars if client_id else None,
            "from": "u" * ids.user_id_chars,
            "role": "student",
            "name": "n" * ids.name_chars,
            "event": event,
            "data": None,
            "ts": SAMPLE_TS_MS,
        }
    )
    return _with_data(frame, data_bytes)


def ping_bytes() -> int:
    return len(compact_json({"action": "ping", "seq": SAMPLE_SEQ, "lagMs": SAMPLE_LAG_MS}))


def pong_bytes() -> int:
    return len(compact_json({"type": "pong", "ts": SAMPLE_TS_MS}))


def sync_request_bytes() -> int:
    return len(
        compact_json(
            {"action": "sync", "since": SAMPLE_SEQ, "sinceEid": SAMPLE_EID, "limit": DEFAULT_SYNC_LIMIT}
        )
    )


def who_request_bytes() -> int:
    return len(compact_json({"action": "who", "after": ""}))


def roster_reply_bytes(members: float, ids: Ids) -> float:
    entry = len(
        compact_json(
            {
                "userId": "u" * ids.user_id_chars,
                "role": "student",
                "name": "n" * ids.name_chars,
                "connections": 1,
            }
        )
    )
    return len(compact_json({"type": "roster", "members": [], "more": False})) + members * (entry + 1)


def access_log_line_bytes(log_format: dict[str, str], ids: Ids) -> int:
    """One access log line: the stage's format with representative values for each variable."""
    values = {
        "$context.requestId": "Xa1bCd2eFg3hIjk=",
        "$context.requestTimeEpoch": "1764000000000",
        "$context.apiId": "a1b2c3d4e5",
        "$context.stage": "prod",
        "$context.connectionId": "c" * ids.connection_id_chars,
        "$context.connectedAt": "1764000000000",
        "$context.eventType": "MESSAGE",
        "$context.routeKey": "send",
        "$context.messageId": "Xa1bCd2eFg3hIjk=",
        "$context.status": "200",
        "$context.identity.sourceIp": "203.0.113.10",
        "$context.authorizer.principalId": "u" * ids.user_id_chars,
        "$context.integration.status": "200",
        "$context.integration.latency": "14",
    }
    rendered = {key: values.get(variable, "-") for key, variable in log_format.items()}
    return len(compact_json(rendered))


# -- the estimate ---------------------------------------------------------------------------------------------
FIXED, VARIABLE = "fixed", "variable"


@dataclass(frozen=True)
class Line:
    component: str
    kind: str  # fixed or variable
    quantity: float
    unit: str
    unit_price: str
    usd: float


@dataclass
class Estimate:
    stack: StackFacts
    profile: UsageProfile
    lines: list[Line]
    traffic: dict[str, float]
    vendors: dict[str, dict]
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(line.usd for line in self.lines)

    def by_component(self) -> dict[str, float]:
        return {line.component: line.usd for line in self.lines}

    def subtotal(self, kind: str) -> float:
        return sum(line.usd for line in self.lines if line.kind == kind)


def estimate(stack: StackFacts, profile: UsageProfile, prices: PriceBook) -> Estimate:
    p, ids, timing, net = profile, profile.ids, profile.lambda_timing, profile.network
    hours = prices.hours_per_month
    active_seconds = p.hours_per_day * 3600 * p.days_per_month
    connections = p.peak_concurrent_users * p.average_to_peak
    room = connections / p.classrooms  # members of a classroom, on average
    registry = {t.name: t for t in DEFAULT_EVENT_TYPES}

    # Per second, over the school day: client frames (sends) and the deliveries they fan out to.
    sends = deliveries = inbound_units = outbound_units = nat_bytes = redis_bytes = 0.0
    persistent_events_per_room = persistent_bytes = 0.0
    for name, rate in p.events.items():
        persistent = registry[name].persistent or name in p.logged_volatile
        factor = p.stroke_coalescing_factor if name == "stroke" else 1
        data = rate.fixed_data_bytes + rate.data_bytes * factor
        frames = rate.per_member_per_second / factor * connections
        frame_in, frame_out = (
            client_send_bytes(name, data, ids),
            event_frame_bytes(name, data, persistent, ids),
        )
        sends += frames
        deliveries += frames * room  # everyone in the room, the sender included (its copy is its ack)
        inbound_units += frames * metered_units(frame_in)
        outbound_units += frames * room * metered_units(frame_out)
        nat_bytes += frames * room * (frame_out + net.post_request_overhead_bytes + net.post_response_bytes)
        redis_bytes += frames * (
            net.redis_request_overhead_bytes + data + frame_out + room * net.redis_reply_bytes_per_member
        )
        if persistent:
            persistent_events_per_room += frames / p.classrooms
            persistent_bytes += frames * frame_out
    average_persistent_frame = persistent_bytes / (persistent_events_per_room * p.classrooms or 1)

    # Pings (each answered by a pong through the route response, not the NAT) and reconnects.
    pings = connections / p.ping_interval_seconds
    reconnects = connections * p.reconnects_per_connection_hour / 3600
    roster_frame = event_frame_bytes("join", len('{"connections":1}'), True, ids, client_id=False)
    missed = persistent_events_per_room * p.reconnect_gap_seconds
    missed_bytes = missed * average_persistent_frame
    sync_pages = max(
        1,
        math.ceil(missed / DEFAULT_SYNC_LIMIT),
        math.ceil(missed_bytes / (FRAME_LIMIT_BYTES - REPLY_ENVELOPE_BYTES)),
    )
    sync_reply = 64 + missed_bytes / sync_pages
    join_leave_deliveries = (
        reconnects * 2 * max(room - 1, 0)
    )  # the joining/leaving connection itself excluded
    inbound_units += pings * metered_units(ping_bytes()) + reconnects * (
        sync_pages * metered_units(sync_request_bytes()) + metered_units(who_request_bytes())
    )
    outbound_units += (
        pings * metered_units(pong_bytes())
        + join_leave_deliveries * metered_units(roster_frame)
        + reconnects * (sync_pages * metered_units(sync_reply) + metered_units(roster_reply_bytes(room, ids)))
    )
    nat_bytes += join_leave_deliveries * (
        roster_frame + net.post_request_overhead_bytes + net.post_response_bytes
    )
    redis_bytes += reconnects * (
        2 * (net.redis_request_overhead_bytes + roster_frame + room * net.redis_reply_bytes_per_member)
        + sync_pages * (net.redis_request_overhead_bytes + sync_reply)
    )

    # Lambda: invocations per second and wall time per invocation, per function.
    def wall_ms(function: str, io_ms: float, cpu_ms: float) -> int:
        memory = stack.functions[function].memory_mb
        return math.ceil(io_ms + cpu_ms * max(1.0, timing.full_vcpu_memory_mb / memory))  # billed per 1 ms

    fan = timing.cpu_ms_per_delivery

    def fanning_out(function: str) -> int:
        """One frame's work that ends in a fan-out to the room: a Redis script and the posts."""
        return wall_ms(
            function,
            timing.redis_round_trip_ms + timing.post_round_trip_ms,
            timing.cpu_ms_per_frame + fan * room,
        )

    invocations = {  # function -> [(per second, billed ms)]
        "message": [
            (sends, fanning_out("message")),
            (pings, wall_ms("message", timing.redis_round_trip_ms, timing.cpu_ms_per_frame)),
            (
                reconnects * sync_pages,
                wall_ms(
                    "message", timing.redis_round_trip_ms, timing.cpu_ms_per_frame + fan * missed / sync_pages
                ),
            ),
            (
                reconnects,
                wall_ms("message", timing.redis_round_trip_ms, timing.cpu_ms_per_frame + fan * room),
            ),
        ],
        "authorizer": [(reconnects, wall_ms("authorizer", 0.0, timing.authorizer_cpu_ms))],
        "connect": [(reconnects, fanning_out("connect"))],
        "disconnect": [(reconnects, fanning_out("disconnect"))],
    }
    requests = gb_seconds = concurrency = 0.0
    gb_seconds_by_arch: dict[str, float] = {}
    for function, calls in invocations.items():
        facts = stack.functions[function]
        for per_second, billed_ms in calls:
            requests += per_second * active_seconds
            seconds = per_second * active_seconds * billed_ms / 1000
            gb = seconds * facts.memory_mb / 1024
            gb_seconds += gb
            gb_seconds_by_arch[facts.architecture] = gb_seconds_by_arch.get(facts.architecture, 0.0) + gb
            concurrency += per_second * billed_ms / 1000

    # CloudWatch Logs: Lambda platform + EMF + application lines, API access log lines, flow log records.
    logs = p.logs
    lambda_log_bytes: dict[str, float] = {}
    for function, calls in invocations.items():
        per_second = sum(c for c, _ in calls)
        app = (
            logs.app_bytes_per_connect
            if function in ("connect", "disconnect")
            else (logs.app_bytes_per_message if function == "message" else 0)
        )
        events = 3 + (1 if app else 0)  # start + report platform lines, one EMF line, the app line
        line_bytes = logs.platform_bytes_per_invocation + logs.emf_bytes_per_invocation + app
        lambda_log_bytes[function] = (
            per_second * active_seconds * (line_bytes + events * LOG_EVENT_OVERHEAD_BYTES)
        )
    access_lines = (sends + pings + reconnects * (sync_pages + 1) + 2 * reconnects) * active_seconds
    access_bytes = access_lines * (
        access_log_line_bytes(stack.access_log_format, ids) + LOG_EVENT_OVERHEAD_BYTES
    )
    flows = (
        concurrency
        * p.flow_logs.warm_environments_per_concurrent_execution
        * p.flow_logs.flows_per_environment
    )
    flow_records = (
        flows * p.flow_logs.records_per_flow * active_seconds / stack.flow_log_interval_seconds
        if stack.flow_logs
        else 0.0
    )
    flow_bytes = flow_records * (p.flow_logs.record_bytes + LOG_EVENT_OVERHEAD_BYTES)

    def stored_gb(monthly_bytes: float, retention_days: int | None) -> float:
        months = (retention_days or 3653) / DAYS_PER_MONTH
        return monthly_bytes / GIB * logs.compression_ratio * months

    # -- the lines ------------------------------------------------------------------------------------------
    lines: list[Line] = []

    def add(
        component: str,
        kind: str,
        quantity: float,
        unit: str,
        price: Price,
        usd: float | None = None,
        unit_price: str | None = None,
    ) -> None:
        lines.append(
            Line(
                component,
                kind,
                quantity,
                unit,
                unit_price or price.describe(),
                price.cost(quantity) if usd is None else usd,
            )
        )

    az_share = (
        stack.availability_zones - 1
    ) / stack.availability_zones  # of traffic whose other end is in one AZ
    nat_cross_az = max(0, stack.availability_zones - stack.nat_gateways) / stack.availability_zones
    node_price = prices[f"elasticache_node_hour:{stack.cache_node_type}"]
    add(
        "NAT gateway hours",
        FIXED,
        stack.nat_gateways * hours,
        "NAT gateway-hours",
        prices["nat_gateway_hour"],
    )
    add(
        "Public IPv4 addresses (NAT Elastic IPs)",
        FIXED,
        stack.public_ipv4 * hours,
        "address-hours",
        prices["public_ipv4_hour"],
    )
    add(
        "ElastiCache nodes",
        FIXED,
        stack.cache_nodes * hours,
        f"node-hours ({stack.cache_nodes} x {stack.cache_node_type})",
        node_price,
    )
    add("KMS keys", FIXED, stack.kms_keys, "keys", prices["kms_key_month"])
    add(
        "KMS requests",
        FIXED,
        p.monthly_requests.kms if stack.kms_keys else 0,
        "requests",
        prices["kms_requests"],
    )
    add("Secrets Manager secrets", FIXED, stack.secrets, "secrets", prices["secrets_manager_secret_month"])
    add(
        "Secrets Manager API calls",
        FIXED,
        p.monthly_requests.secrets_manager if stack.secrets else 0,
        "calls",
        prices["secrets_manager_api_calls"],
    )
    add(
        "CloudWatch alarms",
        FIXED,
        stack.alarm_metrics_standard,
        "alarm metrics",
        prices["cloudwatch_alarm_standard"],
    )
    if stack.alarm_metrics_high_resolution:
        add(
            "CloudWatch alarms (high resolution)",
            FIXED,
            stack.alarm_metrics_high_resolution,
            "alarm metrics",
            prices["cloudwatch_alarm_high_resolution"],
        )
    add("CloudWatch dashboards", FIXED, stack.dashboards, "dashboards", prices["cloudwatch_dashboard"])
    metrics = custom_metric_count(len(stack.functions))
    add("CloudWatch custom metrics (EMF)", FIXED, metrics, "metrics", prices["cloudwatch_custom_metrics"])

    messages = (inbound_units + outbound_units) * active_seconds
    add("API Gateway messages", VARIABLE, messages, "messages (32 KB units)", prices["api_gateway_messages"])
    add(
        "API Gateway connection minutes",
        VARIABLE,
        connections * active_seconds / 60,
        "connection-minutes",
        prices["api_gateway_connection_minutes"],
    )
    add("Lambda requests", VARIABLE, requests, "requests", prices["lambda_requests"])
    for arch, gb in sorted(gb_seconds_by_arch.items()):
        add(f"Lambda duration ({arch})", VARIABLE, gb, "GB-seconds", prices[f"lambda_duration_{arch}"])
    nat_gb = nat_bytes * active_seconds / GIB
    add("NAT data processing (fan-out to @connections)", VARIABLE, nat_gb, "GB", prices["nat_gateway_data"])
    each_way = f"{prices['cross_az_data'].describe()} each way (x2)"
    add(
        "Cross-AZ transfer: Lambda to NAT",
        VARIABLE,
        nat_gb * nat_cross_az,
        "GB",
        prices["cross_az_data"],
        usd=prices["cross_az_data"].cost(nat_gb * nat_cross_az) * 2,
        unit_price=each_way,
    )
    redis_gb = redis_bytes * active_seconds / GIB * az_share
    add(
        "Cross-AZ transfer: Lambda to Redis primary",
        VARIABLE,
        redis_gb,
        "GB",
        prices["cross_az_data"],
        usd=prices["cross_az_data"].cost(redis_gb) * 2,
        unit_price=each_way,
    )
    lambda_gb = sum(lambda_log_bytes.values()) / GIB
    add("CloudWatch Logs ingestion: Lambda", VARIABLE, lambda_gb, "GB", prices["cloudwatch_logs_ingestion"])
    add(
        "CloudWatch Logs ingestion: API access log",
        VARIABLE,
        access_bytes / GIB,
        "GB",
        prices["cloudwatch_logs_ingestion"],
    )
    add("VPC flow logs (vended logs)", VARIABLE, flow_bytes / GIB, "GB", prices["vended_logs_ingestion"])
    stored = sum(stored_gb(b, stack.functions[f].retention_days) for f, b in lambda_log_bytes.items())
    stored += stored_gb(access_bytes, stack.access_log_retention_days)
    stored += stored_gb(flow_bytes, stack.flow_log_retention_days)
    add(
        "CloudWatch Logs storage (steady state at retention)",
        VARIABLE,
        stored,
        "GB-month (compressed)",
        prices["cloudwatch_logs_storage"],
    )

    traffic = {
        "average connections": connections,
        "members per classroom (average)": room,
        "client frames per second (sends)": sends,
        "deliveries per second": deliveries,
        "pings per second": pings,
        "reconnects per second": reconnects,
        "API Gateway messages per month": messages,
        "Lambda invocations per month": requests,
        "Lambda concurrency (average)": concurrency,
        "NAT GB per month": nat_gb,
        "log GB ingested per month": lambda_gb + access_bytes / GIB + flow_bytes / GIB,
        "minutes of a classroom its log holds": min(
            stack.log_max_events / (persistent_events_per_room or 1e-9), stack.log_max_age_seconds
        )
        / 60,
    }
    result = Estimate(stack, profile, lines, traffic, {})
    result.warnings.extend(
        _cache_fit(stack, profile, prices, persistent_events_per_room, average_persistent_frame, sends)
    )
    result.vendors = {
        "Pusher Channels": pusher_cost(profile, prices, sends, reconnects, room, active_seconds),
        "Ably": ably_cost(profile, prices, sends, reconnects, room, active_seconds, connections, missed),
    }
    return result


def custom_metric_count(functions: int) -> int:
    """EMF metrics the handlers publish (one dimension set, `service`), plus ColdStart per function."""
    names: set[str] = set()
    for source in (ROOT / "lambdas" / "classwire").rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        names.update(re.findall(r'metric\(\s*"([A-Za-z0-9_]+)"', text))
        names.update(re.findall(r'add_metric\(\s*name="([A-Za-z0-9_]+)"', text))
        if 'f"Error_{error.code}"' in text:
            names.update(f"Error_{code}" for code in ERROR_CODES)
    return len(names) + functions


def _cache_fit(
    stack: StackFacts,
    profile: UsageProfile,
    prices: PriceBook,
    events_per_room: float,
    frame_bytes: float,
    sends: float,
) -> list[str]:
    """Whether every classroom's retained log fits one node (each replica holds a full copy)."""
    per_day = events_per_room * profile.hours_per_day * 3600
    retained = min(stack.log_max_events, per_day, events_per_room * stack.log_max_age_seconds)
    needed = (
        profile.classrooms * retained * (frame_bytes + REDIS_BYTES_PER_LOGGED_EVENT)
        + sends * IDEMPOTENCY_WINDOW_SECONDS * REDIS_BYTES_PER_IDEMPOTENCY_KEY
    )
    memory = prices.node_memory_gib.get(stack.cache_node_type)
    if memory is None:
        return [f"no memory size known for {stack.cache_node_type}; the cache fit was not checked"]
    usable = memory * GIB * CACHE_USABLE_MEMORY
    if needed > usable:
        return [
            f"{stack.cache_node_type} does not fit this profile: the classroom logs ({profile.classrooms} x "
            f"{retained:,.0f} events) and idempotency keys need ~{needed / GIB:.2f} GiB, a node has "
            f"~{usable / GIB:.2f} GiB usable: Redis would evict or refuse writes"
        ]
    return []


# -- the commercial services, counted the way each one bills ----------------------------------------------------
def pusher_cost(
    profile: UsageProfile,
    prices: PriceBook,
    sends: float,
    reconnects: float,
    room: float,
    active_seconds: float,
) -> dict:
    """Pusher: each publish, each delivery (client events skip their sender), presence member_added/removed."""
    per_second = sends * (1 + max(room - 1, 0)) + reconnects * 2 * max(room - 1, 0)
    per_day = per_second * profile.hours_per_day * 3600
    peak = profile.peak_concurrent_users
    plans = sorted(prices.pusher["plans"], key=lambda plan: plan["price"])
    for plan in plans:
        if plan["messages_per_day"] >= per_day and plan["connections"] >= peak:
            return {
                "plan": plan["name"],
                "usd": float(plan["price"]),
                "messages_per_day": per_day,
                "messages_per_month": per_day * profile.days_per_month,
                "peak_connections": peak,
                "list_price": True,
                "basis": f"{plan['name']} plan",
            }
    largest = plans[-1]
    scale = max(per_day / largest["messages_per_day"], peak / largest["connections"])
    return {
        "plan": "Enterprise (no list price)",
        "usd": largest["price"] * scale,
        "messages_per_day": per_day,
        "messages_per_month": per_day * profile.days_per_month,
        "peak_connections": peak,
        "list_price": False,
        "basis": f"{per_day / 1e6:,.0f}M messages/day exceeds {largest['name']} ({largest['messages_per_day'] / 1e6:,.0f}M"
        f"/day, ${largest['price']:,}): extrapolated linearly, {scale:,.1f} x {largest['name']}",
    }


def ably_cost(
    profile: UsageProfile,
    prices: PriceBook,
    sends: float,
    reconnects: float,
    room: float,
    active_seconds: float,
    connections: float,
    missed: float,
) -> dict:
    """Ably: inbound publishes + outbound deliveries (echo to the publisher on by default), presence enter and
    leave (published + delivered), history replayed on reconnect; connection and channel minutes."""
    ably = prices.ably
    per_second = sends * (1 + room) + reconnects * (2 * (1 + max(room - 1, 0)) + missed)
    messages = per_second * active_seconds
    connection_minutes = connections * active_seconds / 60
    channel_minutes = profile.classrooms * profile.average_to_peak * active_seconds / 60
    peak_rate = per_second / profile.average_to_peak**2  # more members and more senders per room at the peak
    package = next(
        (
            pkg
            for pkg in ably["packages"]
            if pkg["connections"] >= profile.peak_concurrent_users
            and pkg["channels"] >= profile.classrooms
            and pkg["messages_per_second"] >= peak_rate
        ),
        None,
    )
    usage = (
        tiered(ably["message_tiers"], ably["message_tiers_per"], messages)
        + tiered(ably["minute_tiers"], ably["minute_tiers_per"], connection_minutes)
        + tiered(ably["minute_tiers"], ably["minute_tiers_per"], channel_minutes)
    )
    if package is not None:
        base, name, list_price = float(package["price"]), package["name"], True
    else:
        largest = ably["packages"][-1]
        base, name, list_price = float(largest["price"]), "Enterprise (base price not published)", False
    return {
        "plan": name,
        "usd": base + usage,
        "messages_per_month": messages,
        "connection_minutes": connection_minutes,
        "channel_minutes": channel_minutes,
        "peak_messages_per_second": peak_rate,
        "list_price": list_price,
        "basis": (
            f"{name}: ${base:,.0f} base + usage at list tiers"
            if list_price
            else f"peak ~{peak_rate:,.0f} messages/s exceeds Pro's {ably['packages'][-1]['messages_per_second']:,}/s: "
            f"Enterprise; usage at the published per-minute tiers + Pro's ${base:,.0f} base as a lower bound"
        ),
    }


# -- levers ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LeverResult:
    name: str
    change: str
    baseline: Estimate
    variant: Estimate

    @property
    def delta(self) -> float:
        return self.variant.total - self.baseline.total

    def changed_components(self) -> dict[str, float]:
        before, after = self.baseline.by_component(), self.variant.by_component()
        names = list(dict.fromkeys([*before, *after]))
        deltas = {n: after.get(n, 0.0) - before.get(n, 0.0) for n in names}
        return {n: d for n, d in deltas.items() if abs(d) > 1e-9}  # the table rounds; this must not


def levers(stack: StackFacts, profile: UsageProfile, prices: PriceBook) -> list[LeverResult]:
    base = estimate(stack, profile, prices)
    results = []
    logged = "cursor" in profile.logged_volatile
    cursor_profile = replace(
        profile,
        logged_volatile=tuple(n for n in profile.logged_volatile if n != "cursor")
        if logged
        else (*profile.logged_volatile, "cursor"),
    )
    results.append(
        LeverResult(
            "(a) cursors in the log",
            "logged (persistent)" if not logged else "kept out (volatile)",
            base,
            estimate(stack, cursor_profile, prices),
        )
    )
    factor = 4 if profile.stroke_coalescing_factor == 1 else 1
    results.append(
        LeverResult(
            "(b) stroke coalescing on the client",
            f"factor {profile.stroke_coalescing_factor} -> {factor}",
            base,
            estimate(stack, replace(profile, stroke_coalescing_factor=factor), prices),
        )
    )
    per_az = stack.nat_gateways >= stack.availability_zones
    nats = 1 if per_az else stack.availability_zones
    nat_stack = replace(stack, nat_gateways=nats, public_ipv4=stack.public_ipv4 - stack.nat_gateways + nats)
    results.append(
        LeverResult(
            "(c) NAT gateways",
            f"{'one per AZ' if per_az else 'single'} ({stack.nat_gateways}) -> "
            f"{'single' if per_az else 'one per AZ'} ({nats})",
            base,
            estimate(nat_stack, profile, prices),
        )
    )
    node = "cache.t4g.small" if stack.cache_node_type != "cache.t4g.small" else "cache.r7g.large"
    results.append(
        LeverResult(
            "(d) cache node size",
            f"{stack.cache_node_type} -> {node}",
            base,
            estimate(replace(stack, cache_node_type=node), profile, prices),
        )
    )
    return results


# -- output ----------------------------------------------------------------------------------------------------
def render_markdown(
    env: str,
    result: Estimate,
    lever_results: list[LeverResult],
    prices: PriceBook,
    profile_path: Path,
    chart_name: str,
) -> str:
    s, p = result.stack, result.profile
    out = [f"# Monthly cost: `{s.name}` with profile `{p.name}`", ""]
    out.append(
        f"{p.description}. Prices: on-demand list prices in {s.region} from `cost/prices.toml` (each with "
        f"its source and date); usage: `{_relative(profile_path)}`; stack: "
        f"`cdktf.out/stacks/{s.name}/cdk.tf.json`. Generated by `make cost ENV={env}`."
    )
    out += [
        "",
        "## The stack as synthesized",
        "",
        "| | |",
        "|---|---|",
        f"| availability zones | {s.availability_zones} |",
        f"| NAT gateways (Elastic IPs) | {s.nat_gateways} ({s.public_ipv4}) |",
        f"| cache | {s.cache_nodes} x {s.cache_node_type} |",
        "| Lambda | "
        + ", ".join(f"{f.role} {f.memory_mb} MB {f.architecture}" for f in s.functions.values())
        + " |",
        "| log retention (days) | "
        + ", ".join(
            [f"{f.role} {f.retention_days}" for f in s.functions.values()]
            + [f"access {s.access_log_retention_days}", f"flow logs {s.flow_log_retention_days}"]
        )
        + " |",
        f"| alarms, dashboards, KMS keys, secrets, flow logs | {s.alarm_metrics_standard + s.alarm_metrics_high_resolution}, "
        f"{s.dashboards}, {s.kms_keys}, {s.secrets}, {s.flow_logs} (aggregation {s.flow_log_interval_seconds} s) |",
        f"| classroom log retention | {s.log_max_events:,} events or {s.log_max_age_seconds // 3600} h |",
        "",
        "## Traffic",
        "",
        "| | per school-day second / month |",
        "|---|---|",
    ]
    out += [f"| {name} | {_count(value)} |" for name, value in result.traffic.items()]
    out += [
        "",
        "## Monthly cost by component",
        "",
        "| Component | Quantity | Unit price | Monthly USD |",
        "|---|---|---|---:|",
    ]
    for kind in (FIXED, VARIABLE):
        for line in sorted((x for x in result.lines if x.kind == kind), key=lambda x: -x.usd):
            out.append(
                f"| {line.component} ({kind}) | {_count(line.quantity)} {line.unit} | {line.unit_price} | "
                f"{_usd(line.usd)} |"
            )
    out += [
        f"| **Fixed** | | | **{_usd(result.subtotal(FIXED))}** |",
        f"| **Variable** | | | **{_usd(result.subtotal(VARIABLE))}** |",
        f"| **Total** | | | **{_usd(result.total)}** |",
        "",
    ]
    if result.warnings:
        out += ["**Warnings**", ""] + [f"- {w}" for w in result.warnings] + [""]
    out += [
        f"![monthly cost]({chart_name})",
        "",
        "## Against the commercial services (same profile)",
        "",
        "| Service | How it counts | Plan | Monthly USD | classwire / service |",
        "|---|---|---|---:|---:|",
        f"| classwire `{s.name}` | AWS list prices above | | {_usd(result.total)} | 1.00 |",
    ]
    for vendor, info in result.vendors.items():
        counted = (
            f"{_count(info['messages_per_day'])} messages/day, {_count(info['peak_connections'])} peak connections"
            if vendor.startswith("Pusher")
            else f"{_count(info['messages_per_month'])} messages, {_count(info['connection_minutes'])} connection-min, "
            f"{_count(info['channel_minutes'])} channel-min"
        )
        ratio = result.total / info["usd"] if info["usd"] else float("inf")
        out.append(
            f"| {vendor} | {counted} | {info['basis']} | {_usd(info['usd'])}{'' if info['list_price'] else ' *'} | "
            f"{ratio:.2f} |"
        )
    out += [
        "",
        "\\* no published list price covers this volume: the figure is an extrapolation from published "
        "prices (see the basis), a reference point rather than a quote.",
        "",
        f"- Pusher: {prices.pusher['counting_note']} ({prices.pusher['counting_source']}, read "
        f"{prices.pusher['counting_retrieved']}); plans: {prices.pusher['source']} ({prices.pusher['retrieved']}).",
        f"- Ably: {prices.ably['counting_note']} ({prices.ably['counting_source']}, read "
        f"{prices.ably['retrieved']}). {prices.ably['bandwidth_note']}",
        "",
        "## Levers",
        "",
        "Each lever recomputes the whole estimate with one thing changed.",
        "",
        "| Lever | Change | Monthly USD after | Delta | Components that change |",
        "|---|---|---:|---:|---|",
    ]
    for lever in lever_results:
        changed = "; ".join(
            f"{name} {_signed(d)}"
            for name, d in sorted(lever.changed_components().items(), key=lambda kv: -abs(kv[1]))
        )
        out.append(
            f"| {lever.name} | {lever.change} | {_usd(lever.variant.total)} | {_signed(lever.delta)} | "
            f"{changed or 'none'} |"
        )
        if lever.variant.warnings and not lever.baseline.warnings:
            out += [f"|  | warning: {w} | | | |" for w in lever.variant.warnings]
        elif lever.baseline.warnings and not lever.variant.warnings:
            out.append(f"|  | resolves the warning above: {lever.variant.stack.cache_node_type} fits | | | |")
    out += [
        "",
        "## Assumptions",
        "",
        "- Usage: every number in the profile, each explained in a comment there. Rates are school-day averages; "
        "outside school hours nothing is connected.",
        "- Every client frame is one inbound message and one `message` invocation; every delivery (the sender's "
        "own copy, its acknowledgement, included) is one outbound message and one `@connections` POST through "
        "the NAT; pong, sync and roster replies return through the route response (no NAT). `$connect` and "
        "`$disconnect` are not metered as messages; they invoke the authorizer, `connect` and `disconnect`.",
        "- NAT bytes per delivery: the frame plus the profile's HTTP request overhead (SigV4 headers, session "
        "token) and response. Traffic from the NAT to the in-region `execute-api` endpoint has no data-transfer-out "
        "charge; WebSocket messages to clients have no separate data-transfer charge (API Gateway WebSocket "
        "pricing is messages and connection minutes).",
        "- Lambda wall time: the profile's I/O waits plus CPU scaled by 1,769 MB / memory, rounded up to 1 ms.",
        "- Logs: 26 bytes per event added (CloudWatch's billing rule); storage is the steady state at each log "
        "group's retention, compressed by the profile's ratio.",
        "- Custom metrics: the metric names found in `lambdas/classwire` (one dimension set each) plus "
        "ColdStart per function; a per-classroom dimension would multiply this by the classrooms.",
        "- Not included: AWS Support, data transfer of the ElastiCache snapshots beyond the free allowance, SNS "
        "e-mails, Terraform state and the code bucket (S3, a few MB: under $0.01), free tiers, Savings Plans and "
        "reserved nodes.",
        "",
        "Prices whose stored page did not show the number itself are marked ASSUMED in `cost/prices.toml`:",
        "",
    ]
    for price in prices.aws.values():
        if "ASSUMED" in price.note:
            out.append(f"- `{price.key}` ({price.describe()}, {price.unit}): {price.note}")
    return "\n".join(out) + "\n"


def render_svg(result: Estimate) -> str:
    """A dependency-free bar chart: the components, then classwire against Pusher and Ably."""
    rows = [
        (line.component, line.usd) for line in sorted(result.lines, key=lambda x: -x.usd) if line.usd >= 0.5
    ]
    others = sum(line.usd for line in result.lines if line.usd < 0.5)
    if others:
        rows.append(("everything else", others))
    totals = [(f"classwire {result.stack.name}", result.total)] + [
        (f"{vendor}{'' if info['list_price'] else ' (extrapolated)'}", info["usd"])
        for vendor, info in result.vendors.items()
    ]
    left, width, bar_height, gap = 330, 420, 18, 6
    height = 70 + (len(rows) + len(totals)) * (bar_height + gap) + 40
    top = max(max(v for _, v in rows), max(v for _, v in totals)) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="22" font-size="15" font-weight="bold">{_xml(result.stack.name)} with '
        f"{_xml(result.profile.name)}: {_usd(result.total)} per month</text>",
    ]
    y = 44

    def bar(label: str, value: float, color: str) -> None:
        nonlocal y
        length = max(1.0, width * value / top)
        parts.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{_xml(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{bar_height}" fill="{color}"/>')
        parts.append(f'<text x="{left + length + 6:.1f}" y="{y + 13}">{_usd(value)}</text>')
        y += bar_height + gap

    for label, value in rows:
        bar(label, value, "#4e79a7")
    y += 16
    parts.append(f'<text x="10" y="{y}" font-weight="bold">Same profile, monthly total</text>')
    y += 8
    for (label, value), color in zip(totals, ("#4e79a7", "#e15759", "#f28e2b", "#76b7b2"), strict=False):
        bar(label, value, color)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_results(
    env: str,
    result: Estimate,
    lever_results: list[LeverResult],
    prices: PriceBook,
    profile_path: Path,
    out_dir: Path = RESULTS_DIR,
) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{env}-{result.profile.name}"
    markdown, svg = out_dir / f"{stem}.md", out_dir / f"{stem}.svg"
    svg.write_text(render_svg(result), encoding="utf-8")
    markdown.write_text(
        render_markdown(env, result, lever_results, prices, profile_path, svg.name), encoding="utf-8"
    )
    return markdown, svg


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "-") + _usd(abs(value))


def _num(value: float) -> str:
    if value >= 1:
        return f"{value:,.2f}"
    decimals = len(f"{value:.10f}".rstrip("0").split(".")[1])
    return f"{value:.{max(2, decimals)}f}"


def _short(value: float) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M")):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:,.0f}"


def _count(value: float) -> str:
    if value == int(value) and value < 1e6:
        return f"{int(value):,}"
    if value >= 1e9:
        return f"{value / 1e9:,.2f}B"
    if value >= 1e6:
        return f"{value / 1e6:,.2f}M"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", required=True, choices=("local", "dev", "staging", "prod"))
    parser.add_argument("--profile", default="", help=f"usage profile (default {_relative(DEFAULT_PROFILE)})")
    parser.add_argument("--prices", type=Path, default=DEFAULT_PRICES)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory (cost/results)")
    args = parser.parse_args(argv)
    profile_path = Path(args.profile) if args.profile else DEFAULT_PROFILE
    try:
        profile, prices = load_profile(profile_path), load_prices(args.prices)
        stack = load_stack(args.env)
        result = estimate(stack, profile, prices)
        lever_results = levers(stack, profile, prices)
    except (OSError, ValueError, KeyError, subprocess.CalledProcessError) as error:
        print(f"cost: {error}", file=sys.stderr)
        return 2
    markdown, svg = write_results(args.env, result, lever_results, prices, profile_path, args.out)
    print(markdown.read_text(encoding="utf-8"))
    print(f"wrote {_relative(markdown)} and {_relative(svg)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
