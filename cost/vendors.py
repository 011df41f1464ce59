"""The managed services, for the same profile with the same features, each counted the way it bills.

The same features everywhere: the sender is not sent its own events (classwire acknowledges with the
sender's copy of a persistent event; the services acknowledge a publish in their protocol, so echo is off
where it can be, and counted where it cannot), persistent events are kept for a reconnecting client's
catch-up where the service can keep them, and presence costs what it costs classwire: a reconnect back
within the grace announces nothing, the others a leave and a join, told to the room (to the teacher alone in
a crowded one), which an application can arrange on any of them.
What a service cannot do at any price is in `missing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cost.prices import PriceBook, tiered
from cost.profile import UsageProfile


@dataclass(frozen=True)
class VendorTraffic:
    """The profile's traffic as the services see it: per second of the school day, on average."""

    active_seconds: float  # a month
    connections: float
    channels: float  # classrooms with members
    room: float
    persistent: float  # publishes
    volatile: float
    persistent_bytes: float  # an average frame
    volatile_bytes: float
    reconnects: float
    missed: float  # persistent events a reconnect catches up on
    # Presence as classwire does it, which an application on any of them can do too (the like-for-like
    # choice): reconnects announcing a leave and a join, and the connections each goes to.
    announced: float = 0.0
    told: float = 0.0

    @property
    def publishes(self) -> float:
        return self.persistent + self.volatile

    @property
    def connection_minutes(self) -> float:
        return self.connections * self.active_seconds / 60

    @property
    def channel_minutes(self) -> float:
        return self.channels * self.active_seconds / 60


@dataclass(frozen=True)
class VendorPrice:
    service: str
    usd: float | None  # None: no published price (a quote)
    plan: str
    counted: str  # what the service bills for this traffic
    list_price: bool  # False: extrapolated beyond the published prices
    missing: str = ""  # what classwire does that the service does not, at this price


def vendor_prices(profile: UsageProfile, prices: PriceBook, t: VendorTraffic) -> list[VendorPrice]:
    return [
        pusher(profile, prices, t),
        ably_per_minute(profile, prices, t),
        ably_mau(profile, prices, t),
        appsync_events(prices, t),
        pubnub_transactions(prices, t),
        pubnub_mau(profile, prices),
    ]


def pusher(profile: UsageProfile, prices: PriceBook, t: VendorTraffic) -> VendorPrice:
    """Each publish (a client event), each delivery (client events skip their sender), presence
    member_added/removed to the others; a plan is a daily message cap and a connection cap."""
    others = max(t.room - 1, 0)
    per_second = t.publishes * (1 + others) + t.announced * 2 * t.told
    per_day = per_second * profile.hours_per_day * 3600
    peak = profile.peak_concurrent_users
    counted = f"{per_day / 1e6:,.1f}M messages/day, {peak:,} peak connections"
    missing = "no history: a reconnecting client cannot catch up"
    plans = sorted(prices.pusher["plans"], key=lambda plan: plan["price"])
    for plan in plans:
        if plan["messages_per_day"] >= per_day and plan["connections"] >= peak:
            return VendorPrice(
                "Pusher Channels", float(plan["price"]), f"{plan['name']} plan", counted, True, missing
            )
    largest = plans[-1]
    scale = max(per_day / largest["messages_per_day"], peak / largest["connections"])
    return VendorPrice(
        "Pusher Channels",
        largest["price"] * scale,
        f"Enterprise: {scale:,.1f} x {largest['name']} (${largest['price']:,}, "
        f"{largest['messages_per_day'] / 1e6:,.0f}M/day, {largest['connections']:,} connections), extrapolated",
        counted,
        False,
        missing,
    )


def _ably_messages(t: VendorTraffic) -> float:
    """A month's Ably messages with echo off: each publish and its deliveries to the others, one more per
    stored (persistent) message, presence enter and leave on each reconnect, the history it replays."""
    others = max(t.room - 1, 0)
    per_second = (
        t.publishes * (1 + others) + t.persistent + t.announced * 2 * (1 + t.told) + t.reconnects * t.missed
    )
    return per_second * t.active_seconds


def _ably_package(profile: UsageProfile, prices: PriceBook, t: VendorTraffic) -> tuple[float, str, bool]:
    ably = prices.ably
    peak_rate = t.publishes * t.room / profile.average_to_peak**2  # more members and senders at the peak
    for package in ably["packages"]:
        if (
            package["connections"] >= profile.peak_concurrent_users
            and package["channels"] >= profile.classrooms
            and package["messages_per_second"] >= peak_rate
        ):
            return float(package["price"]), package["name"], True
    largest = ably["packages"][-1]
    return (
        float(largest["price"]),
        f"Enterprise (past {largest['name']}'s limits; its base as a lower bound)",
        False,
    )


def ably_per_minute(profile: UsageProfile, prices: PriceBook, t: VendorTraffic) -> VendorPrice:
    ably = prices.ably
    messages = _ably_messages(t)
    base, package, list_price = _ably_package(profile, prices, t)
    usage = (
        tiered(ably["message_tiers"], ably["message_tiers_per"], messages)
        + tiered(ably["minute_tiers"], ably["minute_tiers_per"], t.connection_minutes)
        + tiered(ably["minute_tiers"], ably["minute_tiers_per"], t.channel_minutes)
    )
    return VendorPrice(
        "Ably (per minute: accounts before MAU pricing)",
        base + usage,
        f"{package}: ${base:,.0f} base + messages, connection and channel minutes at the list tiers",
        f"{messages / 1e6:,.0f}M messages, {t.connection_minutes / 1e6:,.1f}M connection-min, "
        f"{t.channel_minutes / 1e6:,.2f}M channel-min",
        list_price,
    )


def ably_mau(profile: UsageProfile, prices: PriceBook, t: VendorTraffic) -> VendorPrice:
    ably = prices.ably
    mau = profile.monthly_active_users
    messages = _ably_messages(t)
    base, package, list_price = _ably_package(profile, prices, t)
    over_messages = max(0.0, messages - ably["mau_messages"] * mau)
    over_minutes = max(0.0, t.connection_minutes - ably["mau_connection_minutes"] * mau)
    usd = (
        base
        + mau * ably["mau_price"]
        + over_messages / 1e6 * ably["mau_overage_per_million_messages"]
        + over_minutes / 1e6 * ably["mau_overage_per_million_minutes"]
    )
    return VendorPrice(
        "Ably (MAU: new accounts)",
        usd,
        f"{package}: ${base:,.0f} base + {mau:,} MAU x ${ably['mau_price']}"
        + (f" + {over_messages / 1e6:,.0f}M messages past fair use" if over_messages else ""),
        f"{mau:,} MAU; {messages / 1e6:,.0f}M messages (fair use {ably['mau_messages'] * mau / 1e6:,.0f}M)",
        list_price,
    )


def appsync_events(prices: PriceBook, t: VendorTraffic) -> VendorPrice:
    """Each publish and each delivery is an operation per 5 KB; every subscriber of the channel gets an event,
    its publisher included (no option to leave it out is shown); presence is the application's own join and
    leave events; a reconnect is a connect and a subscribe."""
    appsync = prices.appsync_events
    unit = appsync["operation_unit_bytes"]

    def ops(frame_bytes: float) -> int:
        return max(1, math.ceil(frame_bytes / unit))

    per_second = (
        t.persistent * ops(t.persistent_bytes) * (1 + t.room)
        + t.volatile * ops(t.volatile_bytes) * (1 + t.room)
        + t.announced * 2 * (2 + t.told)
        + t.reconnects * 2
    )
    operations = per_second * t.active_seconds
    usd = (
        operations / 1e6 * appsync["per_million_operations"]
        + t.connection_minutes / 1e6 * appsync["per_million_connection_minutes"]
    )
    return VendorPrice(
        "AWS AppSync Events",
        usd,
        "pay per use",
        f"{operations / 1e6:,.0f}M operations, {t.connection_minutes / 1e6:,.1f}M connection-min",
        True,
        appsync["missing"],
    )


def pubnub_transactions(prices: PriceBook, t: VendorTraffic) -> VendorPrice:
    """A replicated transaction per publish and presence event, an edge one per delivery (the publisher's
    own included, as subscribers of the channel) and per history call, each per 2 KiB; persistence by GB."""
    pubnub = prices.pubnub
    unit = pubnub["transaction_bytes"]

    def units(frame_bytes: float) -> int:
        return max(1, math.ceil(frame_bytes / unit))

    replicated = (
        t.persistent * units(t.persistent_bytes) + t.volatile * units(t.volatile_bytes) + 2 * t.announced
    ) * t.active_seconds
    history_calls = max(1, math.ceil(t.missed * t.persistent_bytes / 32_768))
    edge = (
        t.persistent * units(t.persistent_bytes) * t.room
        + t.volatile * units(t.volatile_bytes) * t.room
        + t.announced * 2 * t.told
        + t.reconnects * history_calls
    ) * t.active_seconds
    stored_gb = t.persistent * t.persistent_bytes * t.active_seconds / 1024**3  # a month kept
    usd = (
        replicated * pubnub["replicated"]
        + edge * pubnub["edge"]
        + stored_gb * pubnub["persistence_per_gb_month"]
    )
    return VendorPrice(
        "PubNub (transactions)",
        usd,
        "transaction pricing (through PubNub support)",
        f"{replicated / 1e6:,.0f}M replicated + {edge / 1e6:,.0f}M edge transactions, {stored_gb:,.1f} GB stored",
        True,
        pubnub["missing"],
    )


def pubnub_mau(profile: UsageProfile, prices: PriceBook) -> VendorPrice:
    mau = profile.monthly_active_users
    for plan in prices.pubnub["mau_plans"]:
        if plan["mau"] >= mau:
            return VendorPrice(
                "PubNub (MAU plans)",
                float(plan["price"]),
                f"{plan['name']} (ASSUMED price)",
                f"{mau:,} MAU",
                True,
            )
    largest = prices.pubnub["mau_plans"][-1]
    return VendorPrice(
        "PubNub (MAU plans)",
        None,
        f"quote (past {largest['name']}'s {largest['mau']:,} MAU)",
        f"{mau:,} MAU",
        False,
    )
