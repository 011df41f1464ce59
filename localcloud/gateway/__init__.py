"""API Gateway's WebSocket data plane on 127.0.0.1, serving one stage of a deployment manifest.

Clients connect to `ws://127.0.0.1:PORT/STAGE?token=...`; the `@connections` management API answers on
the same host and port under `/STAGE/@connections/{id}`, so `http://127.0.0.1:PORT/STAGE` is the endpoint
the handlers' boto3 calls use. Lambda handlers run in warm worker processes (`lambda_runtime`).

What it does the way API Gateway does it:
- `$connect`: a missing or empty identity source is 401 without invoking the authorizer; the REQUEST
  authorizer's `Unauthorized` error is 401, a policy that does not allow `execute-api:Invoke` on the
  methodArn (`.../STAGE/$connect`) is 403, any other failure (error, malformed response, context value
  that is an object or array, result over 8 KB) is 500. Context values reach the integrations
  stringified, with `principalId` and `integrationLatency`. The `$connect` integration's non-2xx
  `statusCode` rejects the upgrade with that status; its failure is 502. Only then is the connection open.
- Frames: the route comes from the route selection expression (`$request.body.action`); a frame that is
  not JSON, or names no known route, goes to `$default`; with no `$default` the caller gets
  `{"message": "Forbidden", ...}`. Integrations run concurrently, even for one connection. A failed or
  timed-out integration (29 s) sends `{"message": "Internal server error", "connectionId", "requestId"}`.
  Two-way routes send the handler's `body` back.
- Quotas (`GatewayQuotas`): a frame over 32 KB or a message over 128 KB closes with 1009, a binary frame
  with 1003; no data frame in either direction for 10 minutes closes with 1001 (pings do not count), as
  does reaching the 2-hour maximum. Outgoing messages over 32 KB are split into 32 KB frames.
- `$disconnect` gets `disconnectStatusCode`/`disconnectReason` after the connection is gone (a POST to
  it is then 410).
- `@connections`: POST (200; 410 gone; 413 over 128 KB), GET (connectedAt, identity, lastActiveAt),
  DELETE (204, closes with 1000); a request without a SigV4 `Authorization` header is 403 Missing
  Authentication Token. Signatures are not verified.

The modules, by role:
- `data_plane`: `Gateway`, the front door on the port, the upgrade, routes and integrations;
- `authorizer`: a REQUEST authorizer's identity sources and IAM policy result;
- `connections_api`: the `@connections` HTTP API (and `PostFaults`, its fault injection);
- `connection`: one open connection, shared by the two;
- `quotas`: `GatewayQuotas`, API Gateway's service quotas the gateway enforces;
- `runners`: `GatewayThread` and `GatewayProcess`;
- `__main__`: the command line, `python -m localcloud.gateway --manifest FILE` (see --help).
"""

from __future__ import annotations

from localcloud.gateway.connections_api import PostFaults
from localcloud.gateway.data_plane import HOST, Gateway
from localcloud.gateway.quotas import GatewayQuotas
from localcloud.gateway.runners import GatewayProcess, GatewayThread

__all__ = ["HOST", "Gateway", "GatewayProcess", "GatewayQuotas", "GatewayThread", "PostFaults"]
