"""ElastiCache IAM auth tokens: a SigV4-presigned `connect` request for the cache, reused until near expiry."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from classwire.redis_iam import TOKEN_REUSE_SECONDS, IamAuthTokenProvider


def test_token_is_a_presigned_connect_request(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")
    now = [1000.0]
    provider = IamAuthTokenProvider(
        "classwire-app", "classwire-prod", region="eu-west-1", clock=lambda: now[0]
    )
    user, token = provider.get_credentials()
    assert user == "classwire-app"
    assert not token.startswith("http")
    parts = urlsplit(f"https://{token}")
    query = parse_qs(parts.query)
    assert parts.netloc == "classwire-prod" and parts.path == "/"
    assert query["Action"] == ["connect"] and query["User"] == ["classwire-app"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["900"]
    assert query["X-Amz-Credential"][0].endswith("/eu-west-1/elasticache/aws4_request")
    assert query["X-Amz-Security-Token"] == ["session-token"]
    assert len(query["X-Amz-Signature"][0]) == 64
    now[0] += TOKEN_REUSE_SECONDS - 1
    assert provider.get_credentials()[1] == token
    now[0] += 2
    provider.get_credentials()
    assert provider._issued_at == now[0]  # re-signed once the reuse window passed
