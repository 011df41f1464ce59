"""Token verification for $connect: who the caller is and whether they may join the classroom.

`verify` raises `Unauthenticated` (API Gateway answers 401) for a missing or invalid token, and
`Forbidden` (403) for a valid token that does not grant the requested classroom. Error messages name
the reason, never the token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import jwt

if TYPE_CHECKING:
    from jwt.algorithms import AllowedPublicKeys

from classwire.roles import ROLES
from classwire.settings import JwtSettings

MAX_TOKEN_CHARS = 8192
# What a token is verified with: the shared secret (HS256), the JWKS's key for the token's kid, or a
# public key object (PyJWT's own union of them, named only for type checkers).
VerificationKey = Union[str, jwt.PyJWK, "AllowedPublicKeys"]
CLASSROOM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_USER_ID_CHARS = 128
MAX_NAME_CHARS = 64
REQUIRED_CLAIMS = ("exp", "sub", "role", "classrooms")


class Unauthenticated(Exception):
    """No valid token: the caller is not known."""


class Forbidden(Exception):
    """A valid token that does not allow this classroom."""


@dataclass(frozen=True)
class Grant:
    user_id: str
    role: str
    classroom_id: str
    name: str


class TokenVerifier:
    """Verifies JWTs with an explicit algorithm allow-list and a key source.

    `key_for(token)` returns the verification key: the HMAC secret, or the JWKS key matching the
    token's `kid`. It is injected so the core never touches Secrets Manager or HTTP itself.
    """

    def __init__(self, settings: JwtSettings, key_for: Callable[[str], VerificationKey]):
        self._settings = settings
        self._key_for = key_for

    def verify(self, token: str | None, classroom: str | None) -> Grant:
        if not token:
            raise Unauthenticated("missing token")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("token too long")
        if not token.isascii():  # a JWS compact token is base64url and dots; PyJWT would fail to encode it
            raise Unauthenticated("malformed token: not ASCII")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"malformed token: {type(exc).__name__}") from None
        if header.get("alg") not in self._settings.algorithms:
            raise Unauthenticated(f"algorithm {str(header.get('alg'))[:16]!r} is not allowed")
        try:
            key = self._key_for(token)
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(self._settings.algorithms),
                audience=self._settings.audience or None,
                issuer=self._settings.issuer or None,
                leeway=self._settings.leeway_seconds,
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "verify_aud": bool(self._settings.audience),
                    "verify_iss": bool(self._settings.issuer),
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {type(exc).__name__}") from None
        user_id, role, classrooms, name = _identity(claims)
        # fullmatch: `$` in `match` also accepts a trailing newline ("room-1\n").
        if not classroom or not CLASSROOM_ID.fullmatch(classroom):
            raise Forbidden("missing or malformed classroom parameter")
        if classroom not in classrooms:
            raise Forbidden("classroom not granted by the token")
        return Grant(user_id=user_id, role=role, classroom_id=classroom, name=name)


def _identity(claims: dict) -> tuple[str, str, list[str], str]:
    for time_claim in ("exp", "nbf", "iat"):
        # PyJWT takes int("1700000000") for a NumericDate; RFC 7519 (and the README) want a JSON number.
        value = claims.get(time_claim, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Unauthenticated(f"claim {time_claim!r} must be a number")
    user_id, role = claims.get("sub"), claims.get("role")
    classrooms, name = claims.get("classrooms"), claims.get("name", "")
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= MAX_USER_ID_CHARS:
        raise Unauthenticated("claim 'sub' must be a non-empty string")
    if role not in ROLES:
        raise Unauthenticated(f"claim 'role' must be one of {', '.join(ROLES)}")
    if not isinstance(classrooms, list) or not all(isinstance(c, str) for c in classrooms):
        raise Unauthenticated("claim 'classrooms' must be a list of strings")
    if not isinstance(name, str):
        raise Unauthenticated("claim 'name' must be a string")
    return user_id, role, classrooms, name[:MAX_NAME_CHARS]


class CachedSecret:
    """A secret fetched on first use and refreshed after `ttl_seconds` (rotation), shared per process."""

    def __init__(self, fetch: Callable[[], str], ttl_seconds: float = 300.0, clock=time.monotonic):
        self._fetch = fetch
        self._ttl = ttl_seconds
        self._clock = clock
        self._value: str | None = None
        self._fetched_at = 0.0

    def __call__(self, _token: str = "") -> str:
        now = self._clock()
        if self._value is None or now - self._fetched_at > self._ttl:
            self._value = self._fetch()
            self._fetched_at = now
        return self._value


class KeysUnavailable(Exception):
    """The key source cannot be reached and holds nothing recent enough: not the caller's fault, so API
    Gateway answers 500 (the client retries) rather than 401 (its token is bad)."""


class JwksKeys:
    """Public keys from a JWKS URL (RS256/ES256).

    Only the fetched key set is cached, for `lifespan_seconds`: a key removed from the JWKS is refused once
    that passes. PyJWT's per-key cache (`cache_keys=True`) is an lru_cache with no expiry, which would trust
    a revoked key until the process is recycled. A token with an unknown `kid` refetches the set, at most
    once per `refresh_cooldown_seconds`, so a new key works without a cold start and a flood of made-up
    kids cannot hammer the identity provider. While the JWKS cannot be fetched, a key it served within
    `stale_seconds` still verifies (revocation needs the identity provider to answer); past that,
    `KeysUnavailable`.
    """

    def __init__(
        self,
        url: str,
        lifespan_seconds: int = 300,
        refresh_cooldown_seconds: float = 10.0,
        stale_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._client = jwt.PyJWKClient(
            url,
            cache_keys=False,
            cache_jwk_set=True,
            lifespan=lifespan_seconds,
            cooldown_duration=refresh_cooldown_seconds,
            timeout=5,
        )
        self._stale = stale_seconds
        self._clock = clock
        self._served: dict[
            str | None, tuple[jwt.PyJWK, float]
        ] = {}  # kid -> (key, when the JWKS last served it)

    def __call__(self, token: str) -> jwt.PyJWK:
        kid = jwt.get_unverified_header(token).get("kid")
        try:
            # The PyJWK, not its bare key: PyJWT then verifies with the key's own algorithm and refuses a
            # token whose `alg` differs (an ES256 header on an RSA key crashed `prepare_key` with TypeError).
            key = self._client.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            served = self._served.get(kid)
            if served is not None and self._clock() - served[1] <= self._stale:
                return served[0]
            raise KeysUnavailable("the JWKS cannot be fetched") from None
        self._remember(kid, key)
        return key

    def _remember(self, kid: str | None, key: jwt.PyJWK) -> None:
        """Keeps the keys the JWKS lists now, stamped now; a key it no longer lists is forgotten, so an
        outage never brings a revoked key back."""
        now = self._clock()
        listed = {jwk.key_id for jwk in self._client.get_jwk_set().keys}
        self._served = {k: (v, now) for k, (v, _) in self._served.items() if k in listed}
        self._served[kid] = (key, now)
