"""The price book (cost/prices.toml): AWS list prices, tier by tier, and the vendors' plans."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_PRICES = Path(__file__).resolve().parent / "prices.toml"


@dataclass(frozen=True)
class Price:
    key: str
    unit: str
    per: float
    tiers: tuple[tuple[float | None, float], ...]  # (up to, in `per` units, or None; price per `per`)
    source: str
    retrieved: str
    note: str = ""

    def discounted(self, discount: float) -> Price:
        """This price `discount` (a fraction) lower in every tier."""
        return replace(self, tiers=tuple((up_to, price * (1 - discount)) for up_to, price in self.tiers))

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
    appsync_events: dict
    pubnub: dict
    quotas: dict
    elasticache_discounts: dict

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
    return PriceBook(
        float(raw["meta"]["hours_per_month"]),
        aws,
        memory,
        raw["pusher"],
        raw["ably"],
        raw["appsync_events"],
        raw["pubnub"],
        raw["quotas"],
        raw["elasticache_discounts"],
    )


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
