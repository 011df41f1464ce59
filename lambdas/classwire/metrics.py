"""The names of the custom metrics the handlers publish (EMF, in the `metrics_namespace` under the one
dimension `service`), each written once here: the code emits these, and the cost model counts them (each
name is one billed custom metric). Powertools' own ColdStart metric (one per function) is not listed."""

from __future__ import annotations

from classwire.protocol import ERROR_CODES

# The authorizer
AUTH_ALLOWED = "AuthAllowed"
AUTH_REFUSED_401 = "AuthRefused401"
AUTH_REFUSED_403 = "AuthRefused403"
AUTH_KEYS_UNAVAILABLE = "AuthKeysUnavailable"
# $connect and $disconnect
CONNECTS = "Connects"
DISCONNECTS = "Disconnects"
# The classroom core
EVENTS_PUBLISHED = "EventsPublished"
RESENDS = "Resends"
SYNC_RESETS = "SyncResets"
SYNC_EVENTS = "SyncEvents"
REPLAYS = "Replays"
MEMBER_LAG_MS = "MemberLagMs"
MEMBERS_BEHIND = "MembersBehind"
FANOUT_MS = "FanoutMs"
DELIVERIES = "Deliveries"
DELIVERY_FAILURES = "DeliveryFailures"
GONE_PRUNED = "GonePruned"
CONNECTIONS_CLOSED = "ConnectionsClosed"
CONNECTIONS_CLOSED_FOR_FLOODING = "ConnectionsClosedForFlooding"
STRANGERS_CLOSED = "StrangersClosed"

NAMES = (
    AUTH_ALLOWED,
    AUTH_REFUSED_401,
    AUTH_REFUSED_403,
    AUTH_KEYS_UNAVAILABLE,
    CONNECTS,
    DISCONNECTS,
    EVENTS_PUBLISHED,
    RESENDS,
    SYNC_RESETS,
    SYNC_EVENTS,
    REPLAYS,
    MEMBER_LAG_MS,
    MEMBERS_BEHIND,
    FANOUT_MS,
    DELIVERIES,
    DELIVERY_FAILURES,
    GONE_PRUNED,
    CONNECTIONS_CLOSED,
    CONNECTIONS_CLOSED_FOR_FLOODING,
    STRANGERS_CLOSED,
)


def error_metric(code: str) -> str:
    """A frame refused with this protocol error code (one of `classwire.protocol.ERROR_CODES`)."""
    return f"Error_{code}"


def refusal_metric(reason: str) -> str:
    """A $connect refused for this reason (one of `classwire.classroom.REFUSALS`)."""
    return f"ConnectRefused_{reason}"


def declared() -> tuple[str, ...]:
    """Every metric name the handlers can emit: the names above, one per error code, one per refusal."""
    from classwire.classroom import REFUSALS  # classroom emits through this module, so not at the top

    return (
        *NAMES,
        *(error_metric(code) for code in ERROR_CODES),
        *(refusal_metric(reason) for reason in REFUSALS),
    )
