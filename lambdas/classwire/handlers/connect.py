"""$connect: register the connection in its classroom and announce the join."""

from __future__ import annotations

from classwire import runtime
from classwire.handlers.events import batches, connected_at_of, endpoint_parts, log_keys, member_of, reopens
from classwire.metrics import CONNECTS
from classwire.runtime import API_GATEWAY_REQUEST_ID

logger, metrics = runtime.logger, runtime.metrics


@logger.inject_lambda_context(correlation_id_path=API_GATEWAY_REQUEST_ID, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    member = member_of(event)
    logger.append_keys(**log_keys(member))
    metrics.add_metadata(key="classroomId", value=member.classroom_id)  # a property, not a dimension
    connected_at = connected_at_of(event)
    service = runtime.classroom_service(*endpoint_parts(event))
    refused = service.connect(member, connected_at, reopens(event), batches(event))
    if refused is not None:
        # A non-2xx answer from the $connect integration rejects the upgrade with that status.
        status, reason = refused
        logger.info("connection refused", extra={"status": status, "reason": reason})
        return {"statusCode": status, "body": reason}
    metrics.add_metric(name=CONNECTS, unit="Count", value=1)
    logger.info("connected")
    return {"statusCode": 200}
