"""The commercial services, for the same profile, counted the way each one bills: Pusher Channels (messages
per day and peak connections, by plan) and Ably (messages, connection and channel minutes, by tier)."""

from __future__ import annotations

from cost.prices import PriceBook, tiered
from cost.profile import UsageProfile


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
