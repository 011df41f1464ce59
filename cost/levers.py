"""Levers: the whole estimate recomputed with one thing changed (cursors in the log, stroke coalescing, NAT
gateways per AZ, the cache node size), and which components that changes."""

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
    return results
