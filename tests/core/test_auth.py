"""Token verification: what is allowed, what is 401 and what is 403."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from classwire.auth import Forbidden, Grant, JwksKeys, KeysUnavailable, TokenVerifier, Unauthenticated
from classwire.settings import JwtSettings
from tests.support.jwks import JwksServer, public_jwk

SECRET = "s3cret-for-tests-only-0123456789abcdef"
HS = JwtSettings(
    algorithms=("HS256",), secret_arn="arn:test", issuer="https://idp.test", audience="classwire"
)


def claims(**overrides):
    base = {
        "sub": "alice",
        "role": "teacher",
        "classrooms": ["room-1", "room-2"],
        "name": "Alice",
        "iss": "https://idp.test",
        "aud": "classwire",
        "exp": int(time.time()) + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs_token(**overrides) -> str:
    return jwt.encode(claims(**overrides), SECRET, algorithm="HS256")


def hs_verifier(settings: JwtSettings = HS) -> TokenVerifier:
    return TokenVerifier(settings, lambda token: SECRET)


def test_valid_token_for_a_granted_classroom_is_allowed():
    assert hs_verifier().verify(hs_token(), "room-2") == Grant("alice", "teacher", "room-2", "Alice")


def test_classroom_not_granted_is_forbidden():
    with pytest.raises(Forbidden):
        hs_verifier().verify(hs_token(), "room-9")
    with pytest.raises(Forbidden):
        hs_verifier().verify(hs_token(), None)
    with pytest.raises(Forbidden):
        hs_verifier().verify(hs_token(), "../etc")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned(payload: dict, alg: str = "none") -> str:
    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(payload)}."


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "not-a-jwt",
        "a.b.c",
        hs_token(exp=int(time.time()) - 3600),
        hs_token(aud="someone-else"),
        hs_token(iss="https://evil.test"),
        hs_token(sub=None),
        hs_token(role=None),
        hs_token(role="admin"),
        hs_token(classrooms=None),
        hs_token(classrooms="room-1"),
        hs_token(exp=None),
        hs_token(nbf=int(time.time()) + 3600),
        jwt.encode(claims(), "wrong-secret-wrong-secret-wrong-secret", algorithm="HS256"),
        _unsigned(claims()),
        "x" * 9000,
    ],
    ids=[
        "missing",
        "empty",
        "garbage",
        "bad-base64",
        "expired",
        "wrong-aud",
        "wrong-iss",
        "no-sub",
        "no-role",
        "unknown-role",
        "no-classrooms",
        "classrooms-not-list",
        "no-exp",
        "nbf-future",
        "wrong-key",
        "alg-none",
        "oversized",
    ],
)
def test_bad_tokens_are_unauthenticated(token):
    with pytest.raises(Unauthenticated):
        hs_verifier().verify(token, "room-1")


def test_tampered_payload_is_rejected():
    header, _payload, signature = hs_token().split(".")
    forged = (
        base64.urlsafe_b64encode(json.dumps(claims(classrooms=["room-9"])).encode()).rstrip(b"=").decode()
    )
    with pytest.raises(Unauthenticated):
        hs_verifier().verify(f"{header}.{forged}.{signature}", "room-9")


def test_rs256_and_algorithm_confusion():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = JwtSettings(algorithms=("RS256", "ES256"), jwks_url="https://idp.test/jwks")
    verifier = TokenVerifier(settings, lambda token: key.public_key())
    good = jwt.encode(claims(), key, algorithm="RS256")
    assert verifier.verify(good, "room-1").user_id == "alice"
    # HS256 "signed" with the RSA public key as the HMAC secret: the classic confusion attack.
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    body = _b64url(json.dumps(claims()).encode())
    mac = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    confused = f"{header}.{body}.{_b64url(mac)}"
    with pytest.raises(Unauthenticated, match="not allowed"):
        verifier.verify(confused, "room-1")


def test_es256_through_the_key_source():
    key = ec.generate_private_key(ec.SECP256R1())
    settings = JwtSettings(algorithms=("ES256",), jwks_url="https://idp.test/jwks")
    token = jwt.encode(claims(), key, algorithm="ES256")
    assert TokenVerifier(settings, lambda t: key.public_key()).verify(token, "room-1").role == "teacher"


def test_leeway_accepts_small_clock_skew():
    token = hs_token(exp=int(time.time()) - 10)
    assert hs_verifier().verify(token, "room-1").user_id == "alice"


def test_a_key_removed_from_the_jwks_is_refused_within_the_lifespan_and_a_new_kid_works_at_once():
    old, new = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP256R1()),
    )
    idp = JwksServer({"keys": [public_jwk(old, "old", "RS256")]})
    try:
        settings = JwtSettings(algorithms=("RS256", "ES256"), jwks_url=idp.url)
        keys = JwksKeys(idp.url, lifespan_seconds=1, refresh_cooldown_seconds=0.2)
        verifier = TokenVerifier(settings, keys)
        signed_by_old = jwt.encode(claims(iss=None, aud=None), old, algorithm="RS256", headers={"kid": "old"})
        assert verifier.verify(signed_by_old, "room-1").user_id == "alice"
        # The identity provider rotates: the old key is revoked, a new one published.
        idp.document = {"keys": [public_jwk(new, "new", "ES256")]}
        time.sleep(0.3)
        signed_by_new = jwt.encode(claims(iss=None, aud=None), new, algorithm="ES256", headers={"kid": "new"})
        assert verifier.verify(signed_by_new, "room-1").user_id == "alice"  # an unknown kid refetches
        time.sleep(1.1)
        with pytest.raises(Unauthenticated):
            verifier.verify(signed_by_old, "room-1")
        # Made-up kids do not make the authorizer hammer the identity provider.
        fetches = len(idp.hits)
        for n in range(20):
            forged = jwt.encode(claims(iss=None, aud=None), old, algorithm="RS256", headers={"kid": f"x{n}"})
            with pytest.raises(Unauthenticated):
                verifier.verify(forged, "room-1")
        assert len(idp.hits) - fetches <= 1
    finally:
        idp.close()


def test_while_the_jwks_cannot_be_fetched_recent_keys_verify_and_then_it_is_a_server_error():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    idp = JwksServer({"keys": [public_jwk(key, "k1", "RS256")]})
    now = [0.0]
    keys = JwksKeys(
        idp.url, lifespan_seconds=1, refresh_cooldown_seconds=0, stale_seconds=60, clock=lambda: now[0]
    )
    verifier = TokenVerifier(JwtSettings(algorithms=("RS256",), jwks_url=idp.url), keys)
    token = jwt.encode(claims(iss=None, aud=None), key, algorithm="RS256", headers={"kid": "k1"})
    assert verifier.verify(token, "room-1").user_id == "alice"
    idp.close()  # the identity provider is down
    time.sleep(1.1)  # the cached JWKS has lapsed
    now[0] = 30.0
    assert verifier.verify(token, "room-1").user_id == "alice"  # a valid token is not refused as 401
    now[0] = 120.0
    with pytest.raises(KeysUnavailable):
        verifier.verify(token, "room-1")


def test_a_revoked_key_stays_refused_when_the_jwks_goes_down_afterwards():
    old, new = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP256R1()),
    )
    idp = JwksServer({"keys": [public_jwk(old, "old", "RS256"), public_jwk(new, "new", "ES256")]})
    keys = JwksKeys(idp.url, lifespan_seconds=1, refresh_cooldown_seconds=0, stale_seconds=3600)
    verifier = TokenVerifier(JwtSettings(algorithms=("RS256", "ES256"), jwks_url=idp.url), keys)
    by_old = jwt.encode(claims(iss=None, aud=None), old, algorithm="RS256", headers={"kid": "old"})
    by_new = jwt.encode(claims(iss=None, aud=None), new, algorithm="ES256", headers={"kid": "new"})
    assert verifier.verify(by_old, "room-1") and verifier.verify(by_new, "room-1")
    idp.document = {"keys": [public_jwk(new, "new", "ES256")]}  # "old" revoked
    time.sleep(1.1)
    assert verifier.verify(by_new, "room-1")  # this fetch no longer lists "old"
    idp.close()
    time.sleep(1.1)
    with pytest.raises((Unauthenticated, KeysUnavailable)):
        verifier.verify(by_old, "room-1")
    assert verifier.verify(by_new, "room-1")
