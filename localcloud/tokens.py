"""Tokens for the local cloud: HS256 JWTs signed with the local environment's key.

The key is generated once per checkout (`.local/jwt-signing-key`, gitignored) and is what `make deploy`
stores in the emulator's Secrets Manager secret that the authorizer reads.

    python -m localcloud.tokens --user alice --classroom demo --role teacher   # prints the token last
"""

from __future__ import annotations

import argparse
import secrets
import time
from pathlib import Path

import jwt

from classwire.roles import ROLES, STUDENT
from classwire_infra.paths import ROOT

STATE_DIR = ROOT / ".local"
KEY_FILE = STATE_DIR / "jwt-signing-key"
TOKEN_LIFETIME_SECONDS = 8 * 3600


def signing_key(path: Path = KEY_FILE) -> str:
    """The local signing key, created on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def issue_token(
    user: str,
    classrooms: list[str],
    role: str,
    name: str = "",
    *,
    key: str | None = None,
    issuer: str = "",
    audience: str = "",
    lifetime_seconds: int = TOKEN_LIFETIME_SECONDS,
) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user,
        "role": role,
        "classrooms": classrooms,
        "iat": now,
        "exp": now + lifetime_seconds,
    }
    if name:
        claims["name"] = name
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, key or signing_key(), algorithm="HS256")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print a token for the local cloud (last line of output).")
    parser.add_argument("--user", required=True)
    parser.add_argument("--classroom", required=True)
    parser.add_argument("--role", choices=ROLES, default=STUDENT)
    parser.add_argument("--name", default="")
    args = parser.parse_args(argv)
    from classwire_infra.config import load

    jwt_config = load("local").jwt
    print(
        f"token for {args.user} ({args.role}) in classroom {args.classroom}, valid {TOKEN_LIFETIME_SECONDS // 3600} h:"
    )
    print(
        issue_token(
            args.user,
            [args.classroom],
            args.role,
            args.name,
            issuer=jwt_config.issuer,
            audience=jwt_config.audience,
        )
    )


if __name__ == "__main__":
    main()
