"""REQUEST authorizer on $connect: JWT from the `token` query parameter, classroom from `classroom`.

401 is signalled by raising "Unauthorized" (API Gateway's contract); 403 by a Deny policy. The token
is never logged: only the reason it was refused.
"""

from __future__ import annotations

from classwire import runtime
from classwire.auth import (
    Forbidden,
    KeysUnavailable,
    Unauthenticated,
)
from classwire.metrics import AUTH_ALLOWED, AUTH_KEYS_UNAVAILABLE, AUTH_REFUSED_401, AUTH_REFUSED_403
from classwire.routes import CLASSROOM_QUERY_PARAMETER, TOKEN_QUERY_PARAMETER
from classwire.runtime import API_GATEWAY_REQUEST_ID

logger, metrics = runtime.logger, runtime.metrics


@logger.inject_lambda_context(correlation_id_path=API_GATEWAY_REQUEST_ID, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    params = event.get("queryStringParameters")
    params = params if isinstance(params, dict) else {}
    method_arn = _text(event.get("methodArn"))
    try:
        grant = runtime.token_verifier().verify(
            _text(params.get(TOKEN_QUERY_PARAMETER)), _text(params.get(CLASSROOM_QUERY_PARAMETER))
        )
    except Unauthenticated as refusal:
        logger.info("connection refused", extra={"status": 401, "reason": str(refusal)})
        metrics.add_metric(name=AUTH_REFUSED_401, unit="Count", value=1)
        raise Exception("Unauthorized") from None  # API Gateway's signal for 401
    except KeysUnavailable:
        # Not the caller's fault: failing the invocation makes API Gateway answer 500, and clients retry.
        logger.error("token keys unavailable")
        metrics.add_metric(name=AUTH_KEYS_UNAVAILABLE, unit="Count", value=1)
        raise
    except Forbidden as refusal:
        logger.info("connection refused", extra={"status": 403, "reason": str(refusal)})
        metrics.add_metric(name=AUTH_REFUSED_403, unit="Count", value=1)
        return _policy("anonymous", "Deny", method_arn)
    logger.info("connection allowed", extra={"userId": grant.user_id, "classroomId": grant.classroom_id})
    metrics.add_metric(name=AUTH_ALLOWED, unit="Count", value=1)
    return _policy(
        grant.user_id,
        "Allow",
        method_arn,
        context={
            "userId": grant.user_id,
            "role": grant.role,
            "classroomId": grant.classroom_id,
            "name": grant.name,
        },
    )


def _text(value: object) -> str:
    """A query parameter or ARN as API Gateway sends it (a string); anything else counts as absent."""
    return value if isinstance(value, str) else ""


def _policy(principal: str, effect: str, resource: str, context: dict | None = None) -> dict:
    response: dict = {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }
    if context is not None:
        response["context"] = context
    return response
