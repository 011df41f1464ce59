"""Fuzzing client frames (hypothesis): every input gets a request or a precise error frame, never a crash.

The example count is small in `make test` and large under `make prove` (HYPOTHESIS_PROFILE=prove).
"""

from __future__ import annotations

import json
from typing import get_args

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classwire.protocol import ERROR_CODES, ProtocolError, Request, parse_request
from classwire.settings import FRAME_LIMIT_BYTES

ROOM = "room-1"
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
actions = st.sampled_from(["send", "sync", "who", "ping", "dance", "", "SEND"]) | st.text(max_size=10)
frames = st.fixed_dictionaries(
    {"action": actions | json_values},
    optional={
        "id": st.text(max_size=80) | json_values,
        "event": st.sampled_from(["chat", "stroke", "clear", "end", "join"]) | json_values,
        "data": json_values,
        "since": st.integers(min_value=-5, max_value=10**20) | json_values,
        "sinceEid": json_values,
        "limit": st.integers() | json_values,
        "classroom": st.sampled_from([ROOM, "other"]) | json_values,
        "after": json_values,
        "seq": json_values,
        "lagMs": json_values,
    },
)
unicode_edges = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from(["\u0000", "\ufeff", "\u202e", "\U0001f600"]),
    max_size=200,
)
# JSON escapes that decode to unpaired surrogates, which cannot be stored or sent as UTF-8.
surrogates = st.sampled_from(["\\ud800", "\\udfff", "\\ud83d"]).map(
    lambda s: f'{{"action":"send","id":"a","event":"chat","data":"{s}"}}'
)
raw_bodies = (
    st.builds(json.dumps, frames)
    | st.builds(json.dumps, json_values)
    | unicode_edges
    | surrogates
    | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
    | st.integers(min_value=1, max_value=50_000).map(lambda n: "[" * n + "]" * n)
    | st.integers(min_value=1, max_value=200_000).map(
        lambda n: json.dumps({"action": "send", "id": "a", "event": "chat", "data": "x" * n})
    )
)


def check(body: str) -> None:
    try:
        request = parse_request(body, ROOM, 16 * 1024)
    except ProtocolError as error:
        assert error.code in ERROR_CODES
        frame = json.loads(error.frame())
        assert frame["type"] == "error" and frame["message"]
        assert len(error.frame().encode()) < FRAME_LIMIT_BYTES
        return
    assert isinstance(request, get_args(Request))


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], deadline=None)
@given(raw_bodies)
def test_any_frame_gets_a_request_or_a_precise_error(body):
    check(body)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(frames)
def test_structured_frames(frame):
    check(json.dumps(frame))
