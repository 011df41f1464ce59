"""send, sync, who, ping and $default: one function; the core dispatches on the frame's action."""

from __future__ import annotations

from classwire import runtime
from classwire.handlers.events import endpoint_parts, log_keys, member_of
from classwire.metrics import error_metric
from classwire.protocol import error_frame
from classwire.runtime import API_GATEWAY_REQUEST_ID

logger, metrics = runtime.logger, runtime.metrics


@logger.inject_lambda_context(correlation_id_path=API_GATEWAY_REQUEST_ID, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    member = member_of(event)
    logger.append_keys(**log_keys(member), routeKey=event["requestContext"].get("routeKey"))
    # A property of the EMF line, not a dimension: searchable in Logs Insights without one custom
    # metric per classroom.
    metrics.add_metadata(key="classroomId", value=member.classroom_id)
    service = runtime.classroom_service(*endpoint_parts(event))
    try:
        reply = service.handle(member, event.get("body"))
    except Exception:
        # The frame is answered either way; the stack trace goes to the log, not to the client.
        logger.exception("frame failed")
        metrics.add_metric(name=error_metric("internal"), unit="Count", value=1)
        reply = error_frame("internal", "the server failed to handle this frame; retry with the same id")
    # Two-way routes return the body to the caller; an empty reply sends nothing.
    return {"statusCode": 200, "body": reply} if reply else {"statusCode": 200}
