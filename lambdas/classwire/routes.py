"""The WebSocket API's route table: the one place that says which function serves which route.

terraform/ builds the API's routes, integrations, permissions and IAM from this module;
the local gateway routes frames with it; the message handler dispatches on the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass

# API Gateway picks the route from this field of each JSON frame.
ROUTE_SELECTION_EXPRESSION = "$request.body.action"
# Browsers cannot set headers on a WebSocket, so the JWT travels in the query string.
TOKEN_QUERY_PARAMETER = "token"
CLASSROOM_QUERY_PARAMETER = "classroom"
# `reopen=1` on a teacher's $connect reopens an ended class (its own reconnects never do).
REOPEN_QUERY_PARAMETER = "reopen"
# `batch=1` on $connect: the connection takes `events` frames (several events in one message).
BATCH_QUERY_PARAMETER = "batch"
AUTHORIZER_IDENTITY_SOURCE = f"route.request.querystring.{TOKEN_QUERY_PARAMETER}"


@dataclass(frozen=True)
class Function:
    """One Lambda function: its handler and what it may do to the API's connections."""

    name: str
    handler: str
    description: str
    # HTTP verbs this function sends to the @connections management API (IAM ManageConnections).
    manages_connections: tuple[str, ...] = ()
    uses_redis: bool = True
    reads_jwt_secret: bool = False


AUTHORIZER = Function(
    name="authorizer",
    handler="classwire.handlers.authorizer.handler",
    description="REQUEST authorizer on $connect: verifies the JWT and the classroom grant",
    uses_redis=False,
    reads_jwt_secret=True,
)
# Every function that appends may find itself posting a classroom's round (README, "Batching"), the round that
# carries an `end` included: DELETE closes the classroom's connections after it.
CONNECT = Function(
    name="connect",
    handler="classwire.handlers.connect.handler",
    description="$connect: registers the connection and announces the join",
    manages_connections=("POST", "DELETE"),
)
DISCONNECT = Function(
    name="disconnect",
    handler="classwire.handlers.disconnect.handler",
    description="$disconnect: removes the connection and announces the leave",
    manages_connections=("POST", "DELETE"),
)
MESSAGE = Function(
    name="message",
    handler="classwire.handlers.message.handler",
    description="send/sync/who/ping/$default: the classroom protocol",
    manages_connections=("POST", "DELETE"),
)

FUNCTIONS: tuple[Function, ...] = (AUTHORIZER, CONNECT, DISCONNECT, MESSAGE)


@dataclass(frozen=True)
class Route:
    key: str
    function: Function
    # Two-way routes send the handler's returned body back to the caller (a `$default` route response).
    two_way: bool
    authorized: bool = False


ROUTES: tuple[Route, ...] = (
    Route("$connect", CONNECT, two_way=False, authorized=True),
    Route("$disconnect", DISCONNECT, two_way=False),
    Route("send", MESSAGE, two_way=True),
    Route("sync", MESSAGE, two_way=True),
    Route("who", MESSAGE, two_way=True),
    Route("ping", MESSAGE, two_way=True),
    Route("$default", MESSAGE, two_way=True),
)

MESSAGE_ACTIONS: tuple[str, ...] = tuple(
    r.key for r in ROUTES if r.function is MESSAGE and r.key != "$default"
)


def route_for(key: str) -> Route:
    """The route API Gateway selects for a route key (unknown keys fall back to `$default`)."""
    for route in ROUTES:
        if route.key == key:
            return route
    return next(r for r in ROUTES if r.key == "$default")
