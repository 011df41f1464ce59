"""Token attacks on the authorizer: every forged, stale, mistyped or misplaced token is refused in the right
form (401: the `Unauthorized` error API Gateway turns into 401; 403: a Deny policy), nothing crashes, and
no log line holds the token or its signature.

Each attack runs through the real handler (`classwire.handlers.authorizer.handler`) with a REQUEST
authorizer event: HS256 with its key in Secrets Manager (moto), or RS256/ES256 with a JWKS served by a
real HTTP server on 127.0.0.1. The last test sends a few of them through the local gateway's handshake.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from moto import mock_aws
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from bench.events import LambdaContext, authorizer_event
from classwire import runtime
from classwire.handlers import authorizer
from tests.security.conftest import lambda_logs
from tests.support.jwks import JwksServer, public_jwk
from tests.support.signing_secret import store_signing_secret

SECRET = "hs256-attack-suite-key-0123456789abcdef0123456789"
ISSUER = "https://idp.test/"
AUDIENCE = "classwire"
ROOM = "room-1"


# -- keys and the JWKS servers --------------------------------------------------------------------------


@dataclass
class Keys:
    secret: str
    rsa: RSAPrivateKey
    rsa_public_pem: bytes
    ec: EllipticCurvePrivateKey
    attacker: RSAPrivateKey
    idp: JwksServer
    evil: JwksServer


@pytest.fixture(scope="module")
def keys():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    idp = JwksServer({"keys": [public_jwk(rsa_key, "rsa-1", "RS256"), public_jwk(ec_key, "ec-1", "ES256")]})
    evil = JwksServer(
        {"keys": [public_jwk(attacker, "rsa-1", "RS256"), public_jwk(attacker, "evil-1", "RS256")]}
    )
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    yield Keys(SECRET, rsa_key, pem, ec_key, attacker, idp, evil)
    idp.close()
    evil.close()


@pytest.fixture
def hs256(monkeypatch):
    """HS256 with the key in Secrets Manager, issuer and audience configured (as dev)."""
    with mock_aws():
        store_signing_secret(monkeypatch, SECRET)
        monkeypatch.setenv("CLASSWIRE_JWT_ISSUER", ISSUER)
        monkeypatch.setenv("CLASSWIRE_JWT_AUDIENCE", AUDIENCE)
        runtime.reset()
        yield
        runtime.reset()


@pytest.fixture
def jwks(monkeypatch, keys):
    """RS256/ES256 from the identity provider's JWKS over HTTP (as staging and prod)."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("CLASSWIRE_JWT_ALGORITHMS", "RS256,ES256")
    monkeypatch.setenv("CLASSWIRE_JWT_JWKS_URL", keys.idp.url)
    monkeypatch.delenv("CLASSWIRE_JWT_SECRET_ARN", raising=False)
    monkeypatch.setenv("CLASSWIRE_JWT_ISSUER", ISSUER)
    monkeypatch.setenv("CLASSWIRE_JWT_AUDIENCE", AUDIENCE)
    runtime.reset()
    yield
    runtime.reset()


# -- building tokens ------------------------------------------------------------------------------------


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {
        "sub": "bob",
        "role": "student",
        "classrooms": [ROOM, "room-2"],
        "name": "Bob",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segment(value: dict | str) -> str:
    """A JWT segment from a dict, or from raw JSON text (for what json.dumps cannot write)."""
    return b64((value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))).encode())


def hs_signed(header: dict | str, payload: dict | str, key: bytes | str = SECRET) -> str:
    """HMAC-SHA256 over exactly these segments: lets a test sign what PyJWT would refuse to encode."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    key = key.encode() if isinstance(key, str) else key
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def hs(**overrides) -> str:
    return jwt.encode(claims(**overrides), SECRET, algorithm="HS256")


def rs(k: Keys, kid: str = "rsa-1", key=None, headers: dict | None = None, **overrides) -> str:
    return jwt.encode(
        claims(**overrides), key or k.rsa, algorithm="RS256", headers={"kid": kid, **(headers or {})}
    )


def replace_segment(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


def flip_last_char(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


# -- the attacks ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    id: str
    setup: str  # "hs256" or "jwks"
    token: Callable[[Keys], str | None]
    status: int  # 401, 403, or 200 for the controls
    classroom: str | None = ROOM
    # where the token travels: the `token` query parameter, another parameter, or a header
    place: str = "token"


def _attacker_jwk(k: Keys) -> dict:
    return public_jwk(k.attacker, "evil-1", "RS256")


ATTACKS: tuple[Attack, ...] = (
    # controls: the setups accept a good token, so every refusal below is the attack's doing
    Attack("control-hs256-valid", "hs256", lambda k: hs(), 200),
    Attack("control-rs256-valid", "jwks", lambda k: rs(k), 200),
    Attack(
        "control-es256-valid",
        "jwks",
        lambda k: jwt.encode(claims(), k.ec, "ES256", headers={"kid": "ec-1"}),
        200,
    ),
    # unsigned and algorithm games
    Attack(
        "alg-none", "hs256", lambda k: f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims())}.", 401
    ),
    Attack("alg-None-mixed-case", "hs256", lambda k: f"{segment({'alg': 'None'})}.{segment(claims())}.", 401),
    Attack(
        "alg-NONE-upper",
        "jwks",
        lambda k: f"{segment({'alg': 'NONE', 'kid': 'rsa-1'})}.{segment(claims())}.",
        401,
    ),
    Attack(
        "alg-none-with-a-real-signature-kept",
        "hs256",
        lambda k: replace_segment(hs(), 0, segment({"alg": "none", "typ": "JWT"})),
        401,
    ),
    Attack("alg-missing", "hs256", lambda k: hs_signed({"typ": "JWT"}, claims()), 401),
    Attack("alg-not-a-string", "hs256", lambda k: hs_signed({"alg": ["HS256"]}, claims()), 401),
    Attack("alg-hs512-not-allowed", "hs256", lambda k: jwt.encode(claims(), SECRET, algorithm="HS512"), 401),
    Attack("alg-rs256-into-hs256-setup", "hs256", lambda k: rs(k), 401),
    Attack(
        "alg-confusion-hs256-signed-with-rs256-public-key",
        "jwks",
        lambda k: hs_signed({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(), k.rsa_public_pem),
        401,
    ),
    Attack(
        "alg-confusion-es256-header-on-rsa-kid",
        "jwks",
        lambda k: jwt.encode(claims(), k.ec, "ES256", headers={"kid": "rsa-1"}),
        401,
    ),
    # time
    Attack("expired", "hs256", lambda k: hs(exp=int(time.time()) - 3600), 401),
    Attack("expired-just-past-the-leeway", "hs256", lambda k: hs(exp=int(time.time()) - 45), 401),
    Attack("nbf-in-the-future", "hs256", lambda k: hs(nbf=int(time.time()) + 3600), 401),
    Attack("iat-in-the-future", "hs256", lambda k: hs(iat=int(time.time()) + 3600), 401),
    Attack("exp-missing", "hs256", lambda k: hs(exp=_DROP), 401),
    Attack("exp-as-a-string", "hs256", lambda k: hs(exp=str(int(time.time()) + 600)), 401),
    Attack("exp-as-a-boolean", "hs256", lambda k: hs(exp=True), 401),
    Attack(
        "exp-huge-float-overflows-to-infinity",
        "hs256",
        lambda k: hs_signed({"alg": "HS256"}, json.dumps(claims(exp=0)).replace('"exp": 0', '"exp": 1e999')),
        401,
    ),
    Attack(
        "exp-NaN-literal",
        "hs256",
        lambda k: hs_signed({"alg": "HS256"}, json.dumps(claims(exp=0)).replace('"exp": 0', '"exp": NaN')),
        401,
    ),
    Attack(
        "exp-5000-digit-integer",
        "hs256",
        lambda k: hs_signed(
            {"alg": "HS256"}, json.dumps(claims(exp=0)).replace('"exp": 0', '"exp": ' + "9" * 5000)
        ),
        401,
    ),
    Attack("nbf-as-a-string", "hs256", lambda k: hs(nbf="0"), 401),
    # issuer and audience
    Attack("wrong-iss", "hs256", lambda k: hs(iss="https://evil.test/"), 401),
    Attack("missing-iss", "hs256", lambda k: hs(iss=_DROP), 401),
    Attack("wrong-aud", "hs256", lambda k: hs(aud="someone-else"), 401),
    Attack("missing-aud", "hs256", lambda k: hs(aud=_DROP), 401),
    Attack("aud-list-without-ours", "hs256", lambda k: hs(aud=["a", "b"]), 401),
    Attack("wrong-iss-rs256", "jwks", lambda k: rs(k, iss="https://evil.test/"), 401),
    # tampering and keys
    Attack(
        "tampered-payload-classrooms",
        "hs256",
        lambda k: replace_segment(hs(), 1, segment(claims(classrooms=["room-9"]))),
        401,
        classroom="room-9",
    ),
    Attack(
        "tampered-payload-role",
        "hs256",
        lambda k: replace_segment(hs(), 1, segment(claims(role="teacher"))),
        401,
    ),
    Attack(
        "tampered-payload-rs256",
        "jwks",
        lambda k: replace_segment(rs(k), 1, segment(claims(sub="mallory"))),
        401,
    ),
    Attack(
        "tampered-header",
        "hs256",
        lambda k: replace_segment(hs(), 0, segment({"alg": "HS256", "typ": "JWT", "kid": "other"})),
        401,
    ),
    Attack("tampered-signature", "hs256", lambda k: flip_last_char(hs()), 401),
    Attack("signature-stripped", "hs256", lambda k: hs().rsplit(".", 1)[0] + ".", 401),
    Attack("wrong-key", "hs256", lambda k: jwt.encode(claims(), "wrong-" + SECRET, algorithm="HS256"), 401),
    Attack("empty-hmac-key", "hs256", lambda k: hs_signed({"alg": "HS256"}, claims(), b""), 401),
    Attack("wrong-key-rs256-with-the-real-kid", "jwks", lambda k: rs(k, key=k.attacker), 401),
    Attack("kid-unknown", "jwks", lambda k: rs(k, kid="no-such-key", key=k.attacker), 401),
    Attack("kid-path-traversal", "jwks", lambda k: rs(k, kid="../../../../etc/passwd", key=k.attacker), 401),
    Attack("kid-missing", "jwks", lambda k: jwt.encode(claims(), k.rsa, algorithm="RS256"), 401),
    Attack(
        "jku-header-injection",
        "jwks",
        lambda k: rs(k, kid="evil-1", key=k.attacker, headers={"jku": k.evil.url}),
        401,
    ),
    Attack(
        "x5u-header-injection",
        "jwks",
        lambda k: rs(k, kid="evil-1", key=k.attacker, headers={"x5u": k.evil.url}),
        401,
    ),
    Attack(
        "jwk-header-embeds-the-attackers-key",
        "jwks",
        lambda k: rs(k, kid="evil-1", key=k.attacker, headers={"jwk": _attacker_jwk(k)}),
        401,
    ),
    Attack(
        "crit-header-unknown-extension", "jwks", lambda k: rs(k, headers={"crit": ["x-must-understand"]}), 401
    ),
    Attack(
        "crit-header-unknown-extension-hs256",
        "hs256",
        lambda k: jwt.encode(claims(), SECRET, "HS256", headers={"crit": ["exp"]}),
        401,
    ),
    # claims
    Attack("missing-sub", "hs256", lambda k: hs(sub=_DROP), 401),
    Attack("sub-not-a-string", "hs256", lambda k: hs(sub=42), 401),
    Attack("sub-empty", "hs256", lambda k: hs(sub=""), 401),
    Attack("sub-too-long", "hs256", lambda k: hs(sub="u" * 129), 401),
    Attack("missing-role", "hs256", lambda k: hs(role=_DROP), 401),
    Attack("unknown-role", "hs256", lambda k: hs(role="admin"), 401),
    Attack("role-case-variant", "hs256", lambda k: hs(role="Teacher"), 401),
    Attack("role-as-a-list", "hs256", lambda k: hs(role=["teacher"]), 401),
    Attack("missing-classrooms", "hs256", lambda k: hs(classrooms=_DROP), 401),
    Attack("classrooms-a-string-containing-the-id", "hs256", lambda k: hs(classrooms=f"{ROOM},room-2"), 401),
    Attack("classrooms-an-object-keyed-by-the-id", "hs256", lambda k: hs(classrooms={ROOM: True}), 401),
    Attack("classrooms-nested-list", "hs256", lambda k: hs(classrooms=[[ROOM]]), 401),
    Attack("name-not-a-string", "hs256", lambda k: hs(name={"first": "Bob"}), 401),
    Attack("payload-not-an-object", "hs256", lambda k: hs_signed({"alg": "HS256"}, "[1,2,3]"), 401),
    Attack("header-not-an-object", "hs256", lambda k: hs_signed('["HS256"]', claims()), 401),
    # the classroom grant: a valid token, so 403 (a Deny policy), not 401
    Attack("classroom-not-granted", "hs256", lambda k: hs(), 403, classroom="room-9"),
    Attack("classroom-not-granted-rs256", "jwks", lambda k: rs(k), 403, classroom="room-9"),
    Attack("classroom-substring-of-a-grant", "hs256", lambda k: hs(), 403, classroom="room"),
    Attack("classroom-superstring-of-a-grant", "hs256", lambda k: hs(), 403, classroom="room-10"),
    Attack("classroom-case-variant", "hs256", lambda k: hs(), 403, classroom="ROOM-1"),
    Attack("classroom-missing", "hs256", lambda k: hs(), 403, classroom=None),
    Attack(
        "classroom-path-traversal",
        "hs256",
        lambda k: hs(classrooms=["../room-1"]),
        403,
        classroom="../room-1",
    ),
    Attack(
        "classroom-with-newline", "hs256", lambda k: hs(classrooms=["room-1\n"]), 403, classroom="room-1\n"
    ),
    # malformed
    Attack("malformed-base64-header", "hs256", lambda k: "!!!." + hs().split(".", 1)[1], 401),
    Attack("malformed-base64-payload", "hs256", lambda k: replace_segment(hs(), 1, "***not-base64***"), 401),
    Attack("malformed-two-segments", "hs256", lambda k: hs().rsplit(".", 1)[0], 401),
    Attack("malformed-four-segments", "hs256", lambda k: hs() + ".extra", 401),
    Attack("malformed-garbage", "hs256", lambda k: "not-a-jwt-at-all-0123456789", 401),
    Attack("malformed-non-ascii", "hs256", lambda k: "é" * 20 + "." + "ü" * 20 + "." + "ß" * 20, 401),
    Attack("malformed-nul-bytes", "hs256", lambda k: hs().replace(".", "\x00.", 1), 401),
    # size and presence
    Attack("oversized-64kb-validly-signed", "hs256", lambda k: hs(pad="x" * 64 * 1024), 401),
    Attack("oversized-just-over-the-limit", "hs256", lambda k: "e" * 8193, 401),
    Attack("empty-token", "hs256", lambda k: "", 401),
    Attack("missing-token", "hs256", lambda k: None, 401),
    Attack("no-query-string-at-all", "hs256", lambda k: hs(), 401, place="no-query-string"),
    # the token where the authorizer does not look
    Attack("token-in-access_token-parameter", "hs256", lambda k: hs(), 401, place="access_token"),
    Attack("token-in-TOKEN-parameter", "hs256", lambda k: hs(), 401, place="TOKEN"),
    Attack("token-in-authorization-header", "hs256", lambda k: hs(), 401, place="Authorization"),
    Attack(
        "token-in-sec-websocket-protocol-header", "hs256", lambda k: hs(), 401, place="Sec-WebSocket-Protocol"
    ),
)

ATTACK_KINDS = [a for a in ATTACKS if not a.id.startswith("control-")]


def build_event(attack: Attack, token: str | None) -> dict:
    if attack.place == "token":
        return authorizer_event(token, attack.classroom)
    event = authorizer_event(None, attack.classroom)
    if attack.place == "no-query-string":
        event["queryStringParameters"] = None
        event["multiValueQueryStringParameters"] = None
    elif attack.place in ("access_token", "TOKEN"):
        event["queryStringParameters"][attack.place] = token
        event["multiValueQueryStringParameters"][attack.place] = [token]
    else:
        value = f"Bearer {token}" if attack.place == "Authorization" else token
        event["headers"][attack.place] = value
        event["multiValueHeaders"][attack.place] = [value]
    return event


def secret_parts(token: str | None) -> list[str]:
    """The token and the parts of it that must never be logged: signature and payload."""
    if not token:
        return []
    parts = [token]
    pieces = token.split(".")
    if len(pieces) >= 3 and len(pieces[2]) >= 8:
        parts.append(pieces[2])
    if len(pieces) >= 2 and len(pieces[1]) >= 16:
        parts.append(pieces[1])
    return parts


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
def test_token_attack_is_refused_in_the_right_form_without_leaking_the_token(
    attack, keys, request, log_lines, capfd, caplog
):
    request.getfixturevalue(attack.setup)
    token = attack.token(keys)
    event = build_event(attack, token)
    evil_hits = len(keys.evil.hits)
    caplog.set_level("DEBUG")

    response, raised = None, None
    try:
        response = authorizer.handler(event, LambdaContext())
    except Exception as error:  # noqa: BLE001 - the form of the error is what is under test
        raised = error

    if attack.status == 401:
        # API Gateway answers 401 only for exactly this error; anything else is a 500.
        assert raised is not None and type(raised) is Exception and str(raised) == "Unauthorized", (
            response,
            raised,
        )
    else:
        assert raised is None, f"unhandled {type(raised).__name__}: {raised}"
        assert response is not None
        statement = response["policyDocument"]["Statement"]
        assert statement == [
            {
                "Action": "execute-api:Invoke",
                "Effect": "Allow" if attack.status == 200 else "Deny",
                "Resource": event["methodArn"],
            }
        ]
        if attack.status == 403:
            assert "context" not in response and response["principalId"] == "anonymous"
        else:
            assert response["context"]["classroomId"] == attack.classroom

    # The attacker's key URL is never fetched, whatever the header says.
    assert len(keys.evil.hits) == evil_hits
    # The refusal is logged with its status and a reason, never with the token.
    if attack.status != 200:
        refusals = [line for line in log_lines() if line.get("message") == "connection refused"]
        assert [line["status"] for line in refusals] == [attack.status], log_lines()
        assert refusals[0]["reason"]
    captured = capfd.readouterr()
    everything = "\n".join((log_lines.text(), captured.out, captured.err, caplog.text))
    for part in secret_parts(token):
        assert part not in everything, f"{attack.id}: the token (or a part of it) was logged"


def test_the_suite_covers_at_least_15_attack_kinds(report):
    report(
        f"token attacks: {len(ATTACK_KINDS)} kinds ({sum(a.status == 401 for a in ATTACK_KINDS)} x 401, "
        f"{sum(a.status == 403 for a in ATTACK_KINDS)} x 403) and {len(ATTACKS) - len(ATTACK_KINDS)} controls"
    )
    assert len(ATTACK_KINDS) >= 15


# -- over the real gateway: the handshake is refused with the status -----------------------------------


def test_refused_handshakes_over_the_local_gateway(system, report):
    room = f"sec-{int(time.time() * 1000) % 10**8}"
    good = system.token("gina", room, "student")
    header, payload, signature = good.split(".")
    forged_payload = segment(
        json.loads(base64.urlsafe_b64decode(payload + "==")) | {"classrooms": ["x", room]}
    )
    cases = {
        "alg-none": (f"{segment({'alg': 'none'})}.{payload}.", {}, 401),
        "expired": (system.token("gina", room, lifetime_seconds=-3600), {}, 401),
        "wrong-key": (
            jwt.encode(json.loads(base64.urlsafe_b64decode(payload + "==")), "not-the-key-" * 4, "HS256"),
            {},
            401,
        ),
        "tampered-payload": (f"{header}.{forged_payload}.{signature}", {}, 401),
        "unknown-role": (system.token("gina", room, "admin"), {}, 401),
        "empty-token": ("", {}, 401),
        "token-only-in-authorization-header": (None, {"Authorization": f"Bearer {good}"}, 401),
        "classroom-not-granted": (system.token("gina", "another-room"), {}, 403),
    }

    async def handshake(token: str | None, headers: dict) -> int:
        query = f"classroom={room}" + ("" if token is None else f"&token={token}")
        try:
            async with connect(
                f"{system.websocket_url}?{query}", additional_headers=headers, open_timeout=30
            ):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    async def scenario():
        statuses = {name: await handshake(token, headers) for name, (token, headers, _) in cases.items()}
        statuses["control-valid"] = await handshake(good, {})
        return statuses

    statuses = asyncio.run(asyncio.wait_for(scenario(), 120))
    report(f"handshake statuses over the local gateway: {statuses}")
    assert statuses == {**{name: status for name, (_, _, status) in cases.items()}, "control-valid": 101}
    logs = lambda_logs(system)
    assert "connection refused" in logs  # the authorizer's own log lines are in these files
    for name, (token, _, _) in cases.items():
        for part in secret_parts(token):
            assert part not in logs, f"{name}: the token (or a part of it) reached the Lambda logs"
    for part in secret_parts(good):
        assert part not in logs
