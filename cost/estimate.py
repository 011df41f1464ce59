"""The estimate: what the profile's classrooms make the stack do (frames, invocations, log bytes), then one
step per billed service, each returning its lines of the monthly bill."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from classwire.classroom import REPLY_ENVELOPE_BYTES
from classwire.event_types import DEFAULT_EVENT_TYPES
from classwire.metrics import declared as declared_metrics
from classwire.protocol import DEFAULT_SYNC_LIMIT
from classwire.settings import FRAME_LIMIT_BYTES, IDEMPOTENCY_WINDOW_SECONDS
from cost.batching import Batching, batching
from cost.frames import (
    access_log_line_bytes,
    client_send_bytes,
    event_frame_bytes,
    metered_units,
    ping_bytes,
    pong_bytes,
    roster_reply_bytes,
    sync_request_bytes,
    who_request_bytes,
)
from cost.prices import Price, PriceBook
from cost.profile import UsageProfile
from cost.stack_facts import StackFacts
from cost.vendors import VendorPrice, VendorTraffic, vendor_prices

# CloudWatch Logs bills each event's bytes plus this per-event overhead.
LOG_EVENT_OVERHEAD_BYTES = 26
GIB = 1024**3
DAYS_PER_MONTH = 365 / 12
# ElastiCache keeps 25% of a node's memory for itself by default (reserved-memory-percent).
CACHE_USABLE_MEMORY = 0.75
# Per logged event in Redis beyond its frame: stream/sorted-set entry, eid index, key overhead.
REDIS_BYTES_PER_LOGGED_EVENT = 120
# Per idempotency record (sender + client id -> seq) kept IDEMPOTENCY_WINDOW_SECONDS.
REDIS_BYTES_PER_IDEMPOTENCY_KEY = 110

FIXED, VARIABLE = "fixed", "variable"
NO_BATCHING = Batching(1.0, 1.0)


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
    vendors: list[VendorPrice]
    warnings: list[str] = field(default_factory=list)
    vendor_traffic: VendorTraffic | None = None  # the traffic as the managed services see it
    # The throttles and quotas the profile's peak needs raised (the price does not depend on them).
    capacity_notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(line.usd for line in self.lines)

    def by_component(self) -> dict[str, float]:
        return {line.component: line.usd for line in self.lines}

    def subtotal(self, kind: str) -> float:
        return sum(line.usd for line in self.lines if line.kind == kind)


def estimate(stack: StackFacts, profile: UsageProfile, prices: PriceBook) -> Estimate:
    """The monthly bill: what the classrooms make the stack do, then each billed service's lines (in the
    report's order), the cache fit and the vendors' prices for the same traffic."""
    t = client_traffic(profile, stack.fanout_linger_ms, Presence.of(stack))
    usage = lambda_usage(stack, profile, t)
    logs = log_volume(stack, profile, t, usage)
    lines = [
        *nat_gateway_lines(stack, prices),
        *elasticache_node_lines(stack, prices),
        *kms_lines(stack, profile, prices),
        *secrets_manager_lines(stack, profile, prices),
        *cloudwatch_lines(stack, prices),
        *api_gateway_lines(t, prices),
        *lambda_lines(usage, prices),
        *nat_data_lines(stack, t, prices),
        *redis_transfer_lines(stack, t, prices),
        *cloudwatch_logs_lines(stack, profile, logs, prices),
    ]
    result = Estimate(stack, profile, lines, traffic_table(stack, t, usage, logs), [])
    result.warnings.extend(
        _cache_fit(stack, profile, prices, t.persistent_events_per_room, t.average_persistent_frame, t.sends)
    )
    capacity = peak_capacity(profile, t)
    result.traffic.update(capacity)
    result.capacity_notes = _capacity_fit(stack, prices, capacity)
    result.vendor_traffic = vendor_traffic(profile, t)
    result.vendors = vendor_prices(profile, prices, result.vendor_traffic)
    return result


# -- what the classrooms do ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Presence:
    """What a reconnect and a class's joins cost in presence (README, "Presence")."""

    grace_seconds: int = 0
    live_max_users: int = 10**9

    @classmethod
    def of(cls, stack: StackFacts) -> Presence:
        return cls(stack.presence_grace_seconds, stack.presence_live_max_users)

    def announced(self, profile: UsageProfile, reconnects: float) -> float:
        """The reconnects that announce a leave and a join."""
        return reconnects * (1 - profile.reconnects_within_grace if self.grace_seconds > 0 else 1)

    def told(self, room: float) -> float:
        """The connections each join or leave goes to: the others, or in a crowded classroom the teacher."""
        return 1.0 if room > self.live_max_users else max(room - 1, 0)


@dataclass(frozen=True)
class Traffic:
    """What the profile's members send and receive, per second of the school day (rates are averages)."""

    active_seconds: float  # school-day seconds a month
    connections: float  # on average
    room: float  # members of a classroom, on average
    sends: float  # client frames
    deliveries: float  # event frames fanned out to members
    pings: float
    reconnects: float
    announced: float  # reconnects announcing a leave and a join (the others came back within the grace)
    told: float  # connections each of those goes to
    missed: float  # persistent events a reconnecting member missed
    sync_pages: int  # sync requests a reconnect takes to catch up
    inbound_units: float  # API Gateway messages (32 KB units), clients to the API
    outbound_units: float  # API Gateway messages (32 KB units), the API to clients
    nat_bytes: float  # the @connections posts through the NAT, requests and responses
    redis_bytes: float  # between the Lambdas and the Redis primary
    persistent_events_per_room: float
    average_persistent_frame: float  # bytes
    batching: Batching = NO_BATCHING  # API Gateway messages per delivered event, flushers per event
    volatile_sends: float = 0.0
    average_volatile_frame: float = 0.0  # bytes

    @property
    def messages_per_month(self) -> float:
        return (self.inbound_units + self.outbound_units) * self.active_seconds

    @property
    def nat_gb_per_month(self) -> float:
        return self.nat_bytes * self.active_seconds / GIB


@dataclass(frozen=True)
class _EventFrames:
    """The events' share of the traffic, per second: client frames and the deliveries they fan out to."""

    sends: float
    deliveries: float
    inbound_units: float
    outbound_units: float
    nat_bytes: float
    redis_bytes: float
    persistent_events_per_room: float
    persistent_bytes: float
    volatile_sends: float = 0.0
    volatile_bytes: float = 0.0


def _event_frames(profile: UsageProfile, connections: float, room: float, rounds: Batching) -> _EventFrames:
    """`rounds`: each member is posted once per round, which carries every event appended meanwhile."""
    p, ids, net = profile, profile.ids, profile.network
    registry = {t.name: t for t in DEFAULT_EVENT_TYPES}
    sends = deliveries = inbound_units = outbound_units = nat_bytes = redis_bytes = 0.0
    persistent_events_per_room = persistent_bytes = volatile_sends = volatile_bytes = 0.0
    per_post = net.post_request_overhead_bytes + net.post_response_bytes
    for name, rate in p.events.items():
        persistent = registry[name].persistent or name in p.logged_volatile
        factor = p.stroke_coalescing_factor if name == "stroke" else 1
        data = rate.fixed_data_bytes + rate.data_bytes * factor
        frames = rate.per_member_per_second / factor * connections
        frame_in, frame_out = (
            client_send_bytes(name, data, ids),
            event_frame_bytes(name, data, persistent, ids),
        )
        # A persistent event goes to everyone in the room, the sender included (its copy is its ack); a
        # volatile one to everyone but its sender.
        receivers = room if persistent else room - 1
        sends += frames
        deliveries += frames * receivers
        inbound_units += frames * metered_units(frame_in)
        # A round's events share one frame per member (far below the 32 KB unit at these sizes).
        outbound_units += frames * receivers * metered_units(frame_out) * rounds.messages_per_event
        nat_bytes += frames * receivers * (frame_out + per_post * rounds.messages_per_event)
        # The append, with the members in its reply; the settle of each round, with them again.
        redis_bytes += frames * (
            net.redis_request_overhead_bytes
            + data
            + frame_out
            + room * net.redis_reply_bytes_per_member * (1 + rounds.messages_per_event)
        )
        if persistent:
            persistent_events_per_room += frames / p.classrooms
            persistent_bytes += frames * frame_out
        else:
            volatile_sends += frames
            volatile_bytes += frames * frame_out
    return _EventFrames(
        sends,
        deliveries,
        inbound_units,
        outbound_units,
        nat_bytes,
        redis_bytes,
        persistent_events_per_room,
        persistent_bytes,
        volatile_sends,
        volatile_bytes,
    )


def room_batching(profile: UsageProfile, linger_ms: float) -> Batching:
    """Batching at the profile's average event rate per classroom (every event kind goes through rounds);
    a round takes one concurrent wave of posts and the settle after it."""
    p = profile
    connections = p.peak_concurrent_users * p.average_to_peak
    per_room = (
        sum(
            rate.per_member_per_second / (p.stroke_coalescing_factor if name == "stroke" else 1)
            for name, rate in p.events.items()
        )
        * connections
        / p.classrooms
    )
    timing = p.lambda_timing
    return batching(round(per_room, 6), timing.post_round_trip_ms + timing.redis_round_trip_ms, linger_ms)


def client_traffic(
    profile: UsageProfile, linger_ms: float = 0.0, presence: Presence | None = None
) -> Traffic:
    """The events, then the pings (each answered by a pong through the route response, not the NAT) and the
    reconnects (a join and a leave fanned out unless back within the grace, a sync of what was missed, a
    roster)."""
    p, ids, net = profile, profile.ids, profile.network
    active_seconds = p.hours_per_day * 3600 * p.days_per_month
    connections = p.peak_concurrent_users * p.average_to_peak
    room = connections / p.classrooms  # members of a classroom, on average
    rounds = room_batching(p, linger_ms)
    events = _event_frames(p, connections, room, rounds)
    persistent_events_per_room = events.persistent_events_per_room
    average_persistent_frame = events.persistent_bytes / (persistent_events_per_room * p.classrooms or 1)

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
    presence = presence or Presence()  # none: every reconnect announced to everyone
    announced, told = presence.announced(p, reconnects), presence.told(room)
    join_leave_deliveries = announced * 2 * told  # the joining/leaving connection itself excluded
    inbound_units = events.inbound_units + (
        pings * metered_units(ping_bytes())
        + reconnects * (sync_pages * metered_units(sync_request_bytes()) + metered_units(who_request_bytes()))
    )
    outbound_units = events.outbound_units + (
        pings * metered_units(pong_bytes())
        + join_leave_deliveries * metered_units(roster_frame)
        + reconnects * (sync_pages * metered_units(sync_reply) + metered_units(roster_reply_bytes(room, ids)))
    )
    nat_bytes = events.nat_bytes + join_leave_deliveries * (
        roster_frame + net.post_request_overhead_bytes + net.post_response_bytes
    )
    redis_bytes = events.redis_bytes + reconnects * (
        2 * (net.redis_request_overhead_bytes + roster_frame + room * net.redis_reply_bytes_per_member)
        + sync_pages * (net.redis_request_overhead_bytes + sync_reply)
    )
    return Traffic(
        active_seconds=active_seconds,
        connections=connections,
        room=room,
        sends=events.sends,
        deliveries=events.deliveries,
        pings=pings,
        reconnects=reconnects,
        announced=announced,
        told=told,
        missed=missed,
        sync_pages=sync_pages,
        inbound_units=inbound_units,
        outbound_units=outbound_units,
        nat_bytes=nat_bytes,
        redis_bytes=redis_bytes,
        persistent_events_per_room=persistent_events_per_room,
        average_persistent_frame=average_persistent_frame,
        batching=rounds,
        volatile_sends=events.volatile_sends,
        average_volatile_frame=events.volatile_bytes / (events.volatile_sends or 1),
    )


def vendor_traffic(profile: UsageProfile, t: Traffic) -> VendorTraffic:
    return VendorTraffic(
        active_seconds=t.active_seconds,
        connections=t.connections,
        channels=profile.classrooms * profile.average_to_peak,
        room=t.room,
        persistent=t.sends - t.volatile_sends,
        volatile=t.volatile_sends,
        persistent_bytes=t.average_persistent_frame,
        volatile_bytes=t.average_volatile_frame,
        reconnects=t.reconnects,
        missed=t.missed,
        announced=t.announced,
        told=t.told,
    )


@dataclass(frozen=True)
class LambdaUsage:
    invocations: dict[str, list[tuple[float, int]]]  # function -> [(per second, billed ms)]
    requests: float  # a month
    gb_seconds_by_arch: dict[str, float]  # a month
    concurrency: float  # on average


def lambda_usage(stack: StackFacts, profile: UsageProfile, traffic: Traffic) -> LambdaUsage:
    """Invocations per second and wall time per invocation, per function."""
    timing, t = profile.lambda_timing, traffic

    def wall_ms(function: str, io_ms: float, cpu_ms: float) -> int:
        memory = stack.functions[function].memory_mb
        return math.ceil(io_ms + cpu_ms * max(1.0, timing.full_vcpu_memory_mb / memory))  # billed per 1 ms

    fan = timing.cpu_ms_per_delivery

    def fanning_out(function: str) -> int:
        """One frame's work that ends in a fan-out to the room: a Redis script and the posts."""
        return wall_ms(
            function,
            timing.redis_round_trip_ms + timing.post_round_trip_ms,
            timing.cpu_ms_per_frame + fan * t.room,
        )

    # A send's invocation appends; its share of the rounds (each a wave of posts and a settle) and of the
    # flushers' lingers is what batching leaves per event.
    rounds, linger_ms = t.batching, stack.fanout_linger_ms
    send_ms = wall_ms(
        "message",
        timing.redis_round_trip_ms
        + rounds.messages_per_event * (timing.post_round_trip_ms + timing.redis_round_trip_ms)
        + rounds.flushes_per_event * linger_ms,
        timing.cpu_ms_per_frame + fan * t.room * rounds.messages_per_event,
    )
    invocations = {
        "message": [
            (t.sends, send_ms),
            (t.pings, wall_ms("message", timing.redis_round_trip_ms, timing.cpu_ms_per_frame)),
            (
                t.reconnects * t.sync_pages,
                wall_ms(
                    "message",
                    timing.redis_round_trip_ms,
                    timing.cpu_ms_per_frame + fan * t.missed / t.sync_pages,
                ),
            ),
            (
                t.reconnects,
                wall_ms("message", timing.redis_round_trip_ms, timing.cpu_ms_per_frame + fan * t.room),
            ),
        ],
        "authorizer": [(t.reconnects, wall_ms("authorizer", 0.0, timing.authorizer_cpu_ms))],
        "connect": [(t.reconnects, fanning_out("connect"))],
        "disconnect": [(t.reconnects, fanning_out("disconnect"))],
    }
    requests = concurrency = 0.0
    gb_seconds_by_arch: dict[str, float] = {}
    for function, calls in invocations.items():
        facts = stack.functions[function]
        for per_second, billed_ms in calls:
            requests += per_second * t.active_seconds
            seconds = per_second * t.active_seconds * billed_ms / 1000
            gb = seconds * facts.memory_mb / 1024
            gb_seconds_by_arch[facts.architecture] = gb_seconds_by_arch.get(facts.architecture, 0.0) + gb
            concurrency += per_second * billed_ms / 1000
    return LambdaUsage(invocations, requests, gb_seconds_by_arch, concurrency)


@dataclass(frozen=True)
class LogVolume:
    """Bytes a month sent to CloudWatch Logs, each event's billed overhead included."""

    lambda_bytes: dict[str, float]  # per function: platform, EMF and application lines
    access_bytes: float  # the API's access log
    flow_bytes: float  # VPC flow log records

    @property
    def ingested_gb(self) -> float:
        return sum(self.lambda_bytes.values()) / GIB + self.access_bytes / GIB + self.flow_bytes / GIB


def log_volume(stack: StackFacts, profile: UsageProfile, traffic: Traffic, usage: LambdaUsage) -> LogVolume:
    p, logs, t = profile, profile.logs, traffic
    lambda_bytes: dict[str, float] = {}
    for function, calls in usage.invocations.items():
        per_second = sum(c for c, _ in calls)
        app = (
            logs.app_bytes_per_connect
            if function in ("connect", "disconnect")
            else (logs.app_bytes_per_message if function == "message" else 0)
        )
        # Start and report platform lines (unless the system log level is WARN), one EMF line, the app line.
        platform = stack.functions[function].platform_lines
        events = (2 if platform else 0) + 1 + (1 if app else 0)
        line_bytes = (
            (logs.platform_bytes_per_invocation if platform else 0) + logs.emf_bytes_per_invocation + app
        )
        lambda_bytes[function] = (
            per_second * t.active_seconds * (line_bytes + events * LOG_EVENT_OVERHEAD_BYTES)
        )
    access_lines = (
        t.sends + t.pings + t.reconnects * (t.sync_pages + 1) + 2 * t.reconnects
    ) * t.active_seconds
    access_bytes = access_lines * (
        access_log_line_bytes(stack.access_log_format, p.ids) + LOG_EVENT_OVERHEAD_BYTES
    )
    flows = (
        usage.concurrency
        * p.flow_logs.warm_environments_per_concurrent_execution
        * p.flow_logs.flows_per_environment
    )
    flow_records = (
        flows * p.flow_logs.records_per_flow * t.active_seconds / stack.flow_log_interval_seconds
        if stack.flow_logs
        else 0.0
    )
    flow_bytes = flow_records * (p.flow_logs.record_bytes + LOG_EVENT_OVERHEAD_BYTES)
    return LogVolume(lambda_bytes, access_bytes, flow_bytes)


# -- the lines of the bill, one step per billed service ----------------------------------------------------------
def _line(
    component: str,
    kind: str,
    quantity: float,
    unit: str,
    price: Price,
    usd: float | None = None,
    unit_price: str | None = None,
) -> Line:
    return Line(
        component,
        kind,
        quantity,
        unit,
        unit_price or price.describe(),
        price.cost(quantity) if usd is None else usd,
    )


def _cross_az_line(component: str, gb: float, prices: PriceBook) -> Line:
    """Data between availability zones, billed on both sides."""
    price = prices["cross_az_data"]
    return _line(
        component,
        VARIABLE,
        gb,
        "GB",
        price,
        usd=price.cost(gb) * 2,
        unit_price=f"{price.describe()} each way (x2)",
    )


def nat_gateway_lines(stack: StackFacts, prices: PriceBook) -> list[Line]:
    """The NAT gateways' hours and their Elastic IPs."""
    hours = prices.hours_per_month
    return [
        _line(
            "NAT gateway hours",
            FIXED,
            stack.nat_gateways * hours,
            "NAT gateway-hours",
            prices["nat_gateway_hour"],
        ),
        _line(
            "Public IPv4 addresses (NAT Elastic IPs)",
            FIXED,
            stack.public_ipv4 * hours,
            "address-hours",
            prices["public_ipv4_hour"],
        ),
    ]


def elasticache_node_lines(stack: StackFacts, prices: PriceBook) -> list[Line]:
    # Valkey nodes cost less than Redis OSS ones (prices.toml, [elasticache_discounts]).
    valkey = stack.cache_engine == "valkey"
    price = prices[f"elasticache_node_hour:{stack.cache_node_type}"]
    return [
        _line(
            "ElastiCache nodes",
            FIXED,
            stack.cache_nodes * prices.hours_per_month,
            f"node-hours ({stack.cache_nodes} x {stack.cache_node_type}{', Valkey' if valkey else ''})",
            price.discounted(prices.elasticache_discounts["valkey_per_node"]) if valkey else price,
        )
    ]


def kms_lines(stack: StackFacts, profile: UsageProfile, prices: PriceBook) -> list[Line]:
    return [
        _line("KMS keys", FIXED, stack.kms_keys, "keys", prices["kms_key_month"]),
        _line(
            "KMS requests",
            FIXED,
            profile.monthly_requests.kms if stack.kms_keys else 0,
            "requests",
            prices["kms_requests"],
        ),
    ]


def secrets_manager_lines(stack: StackFacts, profile: UsageProfile, prices: PriceBook) -> list[Line]:
    return [
        _line(
            "Secrets Manager secrets", FIXED, stack.secrets, "secrets", prices["secrets_manager_secret_month"]
        ),
        _line(
            "Secrets Manager API calls",
            FIXED,
            profile.monthly_requests.secrets_manager if stack.secrets else 0,
            "calls",
            prices["secrets_manager_api_calls"],
        ),
    ]


def cloudwatch_lines(stack: StackFacts, prices: PriceBook) -> list[Line]:
    """Alarms (by resolution), dashboards and the handlers' custom metrics."""
    lines = [
        _line(
            "CloudWatch alarms",
            FIXED,
            stack.alarm_metrics_standard,
            "alarm metrics",
            prices["cloudwatch_alarm_standard"],
        )
    ]
    if stack.alarm_metrics_high_resolution:
        lines.append(
            _line(
                "CloudWatch alarms (high resolution)",
                FIXED,
                stack.alarm_metrics_high_resolution,
                "alarm metrics",
                prices["cloudwatch_alarm_high_resolution"],
            )
        )
    lines.append(
        _line("CloudWatch dashboards", FIXED, stack.dashboards, "dashboards", prices["cloudwatch_dashboard"])
    )
    metrics = custom_metric_count(len(stack.functions))
    lines.append(
        _line(
            "CloudWatch custom metrics (EMF)", FIXED, metrics, "metrics", prices["cloudwatch_custom_metrics"]
        )
    )
    return lines


def custom_metric_count(functions: int) -> int:
    """EMF metrics the handlers publish (one dimension set, `service`): the names declared in
    `classwire.metrics`, plus Powertools' ColdStart per function."""
    return len(declared_metrics()) + functions


def api_gateway_lines(traffic: Traffic, prices: PriceBook) -> list[Line]:
    """Messages, in 32 KB units, both ways; and the minutes connections stay open."""
    return [
        _line(
            "API Gateway messages",
            VARIABLE,
            traffic.messages_per_month,
            "messages (32 KB units)",
            prices["api_gateway_messages"],
        ),
        _line(
            "API Gateway connection minutes",
            VARIABLE,
            traffic.connections * traffic.active_seconds / 60,
            "connection-minutes",
            prices["api_gateway_connection_minutes"],
        ),
    ]


def lambda_lines(usage: LambdaUsage, prices: PriceBook) -> list[Line]:
    """Requests, and duration per architecture."""
    lines = [_line("Lambda requests", VARIABLE, usage.requests, "requests", prices["lambda_requests"])]
    for arch, gb in sorted(usage.gb_seconds_by_arch.items()):
        lines.append(
            _line(f"Lambda duration ({arch})", VARIABLE, gb, "GB-seconds", prices[f"lambda_duration_{arch}"])
        )
    return lines


def nat_data_lines(stack: StackFacts, traffic: Traffic, prices: PriceBook) -> list[Line]:
    """The fan-out's bytes through the NAT, and across AZs to it where an AZ has no NAT of its own."""
    nat_gb = traffic.nat_gb_per_month
    nat_cross_az = max(0, stack.availability_zones - stack.nat_gateways) / stack.availability_zones
    return [
        _line(
            "NAT data processing (fan-out to @connections)",
            VARIABLE,
            nat_gb,
            "GB",
            prices["nat_gateway_data"],
        ),
        _cross_az_line("Cross-AZ transfer: Lambda to NAT", nat_gb * nat_cross_az, prices),
    ]


def redis_transfer_lines(stack: StackFacts, traffic: Traffic, prices: PriceBook) -> list[Line]:
    """The Lambdas' Redis traffic from the AZs the primary is not in."""
    az_share = (
        stack.availability_zones - 1
    ) / stack.availability_zones  # of traffic whose other end is in one AZ
    redis_gb = traffic.redis_bytes * traffic.active_seconds / GIB * az_share
    return [_cross_az_line("Cross-AZ transfer: Lambda to Redis primary", redis_gb, prices)]


def cloudwatch_logs_lines(
    stack: StackFacts, profile: UsageProfile, logs: LogVolume, prices: PriceBook
) -> list[Line]:
    """Ingestion (Lambda, the access log, flow logs as vended logs) and storage at each group's retention."""

    def stored_gb(monthly_bytes: float, retention_days: int | None) -> float:
        months = (retention_days or 3653) / DAYS_PER_MONTH
        return monthly_bytes / GIB * profile.logs.compression_ratio * months

    stored = sum(stored_gb(b, stack.functions[f].retention_days) for f, b in logs.lambda_bytes.items())
    stored += stored_gb(logs.access_bytes, stack.access_log_retention_days)
    stored += stored_gb(logs.flow_bytes, stack.flow_log_retention_days)
    return [
        _line(
            "CloudWatch Logs ingestion: Lambda",
            VARIABLE,
            sum(logs.lambda_bytes.values()) / GIB,
            "GB",
            prices["cloudwatch_logs_ingestion"],
        ),
        _line(
            "CloudWatch Logs ingestion: API access log",
            VARIABLE,
            logs.access_bytes / GIB,
            "GB",
            prices["cloudwatch_logs_ingestion"],
        ),
        _line(
            "VPC flow logs (vended logs)",
            VARIABLE,
            logs.flow_bytes / GIB,
            "GB",
            prices["vended_logs_ingestion"],
        ),
        _line(
            "CloudWatch Logs storage (steady state at retention)",
            VARIABLE,
            stored,
            "GB-month (compressed)",
            prices["cloudwatch_logs_storage"],
        ),
    ]


def traffic_table(
    stack: StackFacts, traffic: Traffic, usage: LambdaUsage, logs: LogVolume
) -> dict[str, float]:
    """The report's traffic table."""
    t = traffic
    return {
        "average connections": t.connections,
        "members per classroom (average)": t.room,
        "client frames per second (sends)": t.sends,
        "deliveries per second": t.deliveries,
        "API Gateway messages per delivered event (batching)": t.batching.messages_per_event,
        "pings per second": t.pings,
        "reconnects per second": t.reconnects,
        "API Gateway messages per month": t.messages_per_month,
        "Lambda invocations per month": usage.requests,
        "Lambda concurrency (average)": usage.concurrency,
        "NAT GB per month": t.nat_gb_per_month,
        "log GB ingested per month": logs.ingested_gb,
        "minutes of a classroom its log holds": min(
            stack.log_max_events / (t.persistent_events_per_room or 1e-9), stack.log_max_age_seconds
        )
        / 60,
    }


PEAK_INBOUND, PEAK_POSTS, PEAK_CONNECTS = (
    "peak requests/s from the clients",
    "peak @connections posts/s",
    "peak new connections/s",
)


def peak_capacity(profile: UsageProfile, t: Traffic) -> dict[str, float]:
    """At the peak every rate scales with the members connected (the average is average_to_peak of it)."""
    scale = 1 / profile.average_to_peak
    inbound = (t.inbound_units + t.reconnects) * scale  # frames, and each $connect
    posts = t.deliveries * t.batching.messages_per_event * scale
    return {PEAK_INBOUND: inbound, PEAK_POSTS: posts, PEAK_CONNECTS: t.reconnects * scale}


def _capacity_fit(stack: StackFacts, prices: PriceBook, capacity: dict[str, float]) -> list[str]:
    """The stage's throttle and the account's quotas the peak needs (README, "Cost": quota increases)."""
    quotas, warnings = prices.quotas, []
    inbound, posts = capacity[PEAK_INBOUND], capacity[PEAK_POSTS]
    if stack.stage_rate_limit and inbound > stack.stage_rate_limit:
        warnings.append(
            f"the stage throttle ({stack.stage_rate_limit:,.0f} requests/s) is below the peak's {inbound:,.0f} "
            "requests/s from the clients: raise `throttling_rate_limit` (and the burst) in the environment config"
        )
    account = quotas["account_requests_per_second"]
    if inbound + posts > account:
        warnings.append(
            f"the account's API Gateway throttle ({account:,} requests/s, shared with the @connections posts) is "
            f"below the peak's {inbound:,.0f} client requests + {posts:,.0f} posts a second: request a Service "
            f"Quotas increase of the Region's API Gateway throttle rate to at least {math.ceil((inbound + posts) * 1.25 / 1000) * 1000:,}/s"
        )
    if capacity[PEAK_CONNECTS] > quotas["new_connections_per_second"]:
        warnings.append(
            f"the peak's {capacity[PEAK_CONNECTS]:,.0f} new connections/s exceed the account's "
            f"{quotas['new_connections_per_second']:,}/s: request an increase"
        )
    return warnings


def _cache_fit(
    stack: StackFacts,
    profile: UsageProfile,
    prices: PriceBook,
    events_per_room: float,
    frame_bytes: float,
    sends: float,
) -> list[str]:
    """Whether every classroom's retained log fits the shards' primaries (each replica holds a full copy of
    its shard; classrooms spread evenly over the shards)."""
    per_day = events_per_room * profile.hours_per_day * 3600
    retained = min(stack.log_max_events, per_day, events_per_room * stack.log_max_age_seconds)
    needed = (
        profile.classrooms * retained * (frame_bytes + REDIS_BYTES_PER_LOGGED_EVENT)
        + sends * IDEMPOTENCY_WINDOW_SECONDS * REDIS_BYTES_PER_IDEMPOTENCY_KEY
    )
    memory = prices.node_memory_gib.get(stack.cache_node_type)
    if memory is None:
        return [f"no memory size known for {stack.cache_node_type}; the cache fit was not checked"]
    usable = memory * GIB * CACHE_USABLE_MEMORY * stack.cache_shards
    if needed > usable:
        return [
            f"{stack.cache_node_type} does not fit this profile: the classroom logs ({profile.classrooms} x "
            f"{retained:,.0f} events) and idempotency keys need ~{needed / GIB:.2f} GiB, a node has "
            f"~{usable / GIB:.2f} GiB usable: Redis would evict or refuse writes"
        ]
    return []
