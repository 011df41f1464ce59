"""Levers: the whole estimate recomputed with one thing changed (cursors in the log, stroke coalescing, NAT
gateways per AZ, the cache node size, the flusher's linger, a small deployment's shape, presence as before),
and which components that changes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from cost.estimate import Estimate, estimate
from cost.prices import PriceBook
from cost.profile import UsageProfile
from cost.stack_facts import StackFacts


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
    for linger in (50, 200):
        if linger != stack.fanout_linger_ms:
            results.append(
                LeverResult(
                    f"(e) batching linger {linger} ms",
                    f"fanout_linger_ms {stack.fanout_linger_ms} -> {linger} (up to {linger} ms more latency)",
                    base,
                    estimate(replace(stack, fanout_linger_ms=linger), profile, prices),
                )
            )
    if profile.ping_interval_seconds < IDLE_PING_SECONDS:
        results.append(
            LeverResult(
                "(g) pings every 5 minutes",
                f"ping_interval_seconds {profile.ping_interval_seconds:g} -> {IDLE_PING_SECONDS} (telemetry "
                "every 5 minutes, or off: bare keep-alives)",
                base,
                estimate(stack, replace(profile, ping_interval_seconds=IDLE_PING_SECONDS), prices),
            )
        )
    if stack.presence_grace_seconds or stack.presence_live_max_users < 10**9:
        results.append(
            LeverResult(
                "(h) presence as before",
                f"no grace (was {stack.presence_grace_seconds} s) and never crowded (was above "
                f"{stack.presence_live_max_users} users): every reconnect's leave and join to everyone",
                base,
                estimate(
                    replace(stack, presence_grace_seconds=0, presence_live_max_users=10**9), profile, prices
                ),
            )
        )
    if stack.cache_engine != "valkey":
        results.append(
            LeverResult(
                "(i) Valkey instead of Redis OSS",
                f"engine {stack.cache_engine} -> valkey (up to "
                f"{prices.elasticache_discounts['valkey_per_node']:.0%} less per node; the scripts are Redis 7.2 Lua)",
                base,
                estimate(replace(stack, cache_engine="valkey"), profile, prices),
            )
        )
    reserved = prices.elasticache_discounts["reserved_max"]
    results.append(
        LeverResult(
            "(j) reserved cache nodes",
            f"on demand -> reserved, up to {reserved:.0%} less (3 years, all upfront)",
            base,
            estimate(stack, profile, reserved_prices(prices, reserved)),
        )
    )
    if (stack.availability_zones, stack.nat_gateways, stack.cache_node_type) != SMALL_SHAPE:
        small = small_shape(stack)
        results.append(
            LeverResult(
                "(f) a small deployment's shape",
                f"{stack.availability_zones} AZs, {stack.nat_gateways} NAT, {stack.cache_nodes} x "
                f"{stack.cache_node_type} -> {SMALL_SHAPE_TEXT}",
                base,
                estimate(small, profile, prices),
            )
        )
    return results


# What the clients ping at with telemetry off (keeping API Gateway's 10-minute idle timeout away).
IDLE_PING_SECONDS = 300
# Two AZs (a replica in the other), one NAT gateway, small burstable cache nodes (3 GiB: a few hundred
# classrooms' logs): `availability_zones`, `nat_mode="single"` and `redis_node_type` in the environment config.
SMALL_SHAPE = (2, 1, "cache.t4g.medium")
SMALL_SHAPE_TEXT = (
    f"{SMALL_SHAPE[0]} AZs, {SMALL_SHAPE[1]} NAT gateway, 2 x {SMALL_SHAPE[2]} (primary + replica)"
)


def reserved_prices(prices: PriceBook, discount: float) -> PriceBook:
    """The price book with every cache node hour `discount` cheaper."""
    nodes = {
        key: price.discounted(discount)
        for key, price in prices.aws.items()
        if key.startswith("elasticache_node_hour:")
    }
    return replace(prices, aws={**prices.aws, **nodes})


def small_shape(stack: StackFacts) -> StackFacts:
    azs, nats, node = SMALL_SHAPE
    return replace(
        stack,
        availability_zones=azs,
        nat_gateways=nats,
        public_ipv4=nats,
        cache_node_type=node,
        cache_nodes=2,
        cache_shards=1,
    )
