"""What a classroom keeps in Redis, as tests compare it before and after: every key's dump, except the rate
buckets, which a refused frame is charged to and which expire by themselves."""

from __future__ import annotations

import re

import redis

RATE_BUCKET = re.compile(rb"^cw:\{[^}]*\}:(send|read|join):")


def stored_state(client: redis.Redis, match: str = "*") -> dict[bytes, bytes | None]:
    keys = (key for key in client.scan_iter(match=match) if not RATE_BUCKET.match(key))
    return {key: _dump(client, key) for key in sorted(keys)}


def _dump(client: redis.Redis, key: bytes) -> bytes | None:
    dump = client.dump(key)  # None for a key that expired since the scan
    assert dump is None or isinstance(dump, bytes)
    return dump
