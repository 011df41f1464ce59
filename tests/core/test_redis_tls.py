"""The rediss:// path: the runtime's Redis client talks TLS to a real TLS-only redis-server."""

from __future__ import annotations

import pytest
import redis

from classwire import runtime
from classwire.classroom_store import Member
from localcloud import free_port
from localcloud.cache import RedisServer
from tests.support.tls import write_certificates


@pytest.fixture
def tls_redis(tmp_path, monkeypatch):
    certs = write_certificates(tmp_path)
    tls_port = free_port()
    server = RedisServer(
        extra=[
            "port 0",  # no plaintext listener at all
            f"tls-port {tls_port}",
            f"tls-cert-file {certs['cert']}",
            f"tls-key-file {certs['key']}",
            f"tls-ca-cert-file {certs['ca']}",
            "tls-auth-clients no",
        ]
    )
    monkeypatch.setattr(
        server,
        "client",
        lambda: redis.Redis(host="127.0.0.1", port=tls_port, ssl=True, ssl_ca_certs=str(certs["ca"])),
    )
    with server:
        yield f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={certs['ca']}", certs


def test_runtime_client_speaks_tls(tls_redis, monkeypatch):
    url, _ = tls_redis
    monkeypatch.setenv("CLASSWIRE_REDIS_URL", url)
    monkeypatch.setenv("CLASSWIRE_JWT_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:jwt")
    runtime.reset()
    try:
        store = runtime.classroom_store()
        published = store.join(Member("c1", "room-1", "alice", "teacher"), 0)
        assert len(published.frames) == 1
        client = runtime.redis_client()
        assert isinstance(client, redis.Redis)  # not a cluster: CLASSWIRE_REDIS_CLUSTER is unset
        assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    finally:
        runtime.reset()


def test_plaintext_is_refused_by_a_tls_server(tls_redis):
    url, _ = tls_redis
    plain = redis.Redis.from_url(url.replace("rediss://", "redis://").split("?")[0], socket_timeout=2)
    with pytest.raises(redis.ConnectionError):
        plain.ping()
