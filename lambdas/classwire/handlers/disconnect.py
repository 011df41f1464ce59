"""$disconnect (best effort in AWS; fan-out and TTL prune what it misses): remove and announce the leave."""

from __future__ import annotations

from classwire import runtime
from classwire.handlers.events import endpoint_parts, log_keys, member_of
from classwire.metrics import DISCONNECTS
from classwire.runtime import API_GATEWAY_REQUEST_ID

logger, metrics = runtime.logger, runtime.metrics


@logger.inject_lambda_context(correlation_id_path=API_GATEWAY_REQUEST_ID, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    member = member_of(event)
    logger.append_keys(**log_keys(member))
    metrics.add_metadata(key="classroomId", value=member.classroom_id)  # a property, not a dimension
    runtime.classroom_service(*endpoint_parts(event)).disconnect(member)
    metrics.add_metric(name=DISCONNECTS, unit="Count", value=1)
    logger.info("disconnected")
    return {"statusCode": 200}
