"""Every log line a handler writes carries its invocation: the Lambda request id, cold start, the API
Gateway request id (correlation_id) and the member it serves; nothing of one invocation leaks into the next."""

from __future__ import annotations

from bench.events import Caller, LambdaContext, disconnect_event
from classwire.handlers import disconnect
from tests.support.handler_calls import join

TEACHER = Caller("T1cOnn3ct10nId=", "tina", "teacher", "room-1", "Tina")
STUDENT = Caller("S1cOnn3ct10nId=", "sam", "student", "room-1", "Sam")


def test_every_line_names_its_invocation_and_keys_do_not_outlive_it(stub, log_lines):
    join(TEACHER)
    disconnect.handler(disconnect_event(TEACHER), LambdaContext())
    lines = log_lines()
    assert lines, "the handlers log"
    for line in lines:
        assert line["function_request_id"] == LambdaContext.aws_request_id
        assert isinstance(line["cold_start"], bool)
        assert line["correlation_id"], line
    assert {line["userId"] for line in lines if "userId" in line} == {"tina"}

    join(STUDENT)
    last = log_lines()[len(lines) :]
    assert last and all(line.get("userId") in (None, "sam") for line in last)


def test_reset_forgets_every_builder_the_runtime_caches():
    from classwire import runtime

    cached = {value for value in vars(runtime).values() if hasattr(value, "cache_clear")}
    assert cached == set(runtime.CACHED)
