"""The HS256 signing key as the authorizer finds it in AWS: a Secrets Manager secret named by
CLASSWIRE_JWT_SECRET_ARN. Call inside `mock_aws()`."""

from __future__ import annotations

import boto3
import pytest

REGION = "eu-west-1"


def store_signing_secret(env: pytest.MonkeyPatch, secret: str, name: str = "classwire/jwt") -> str:
    """Puts `secret` in (moto's) Secrets Manager and points the authorizer at it, HS256 only; returns its ARN."""
    env.setenv("AWS_DEFAULT_REGION", REGION)
    env.setenv("AWS_REGION", REGION)
    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(Name=name, SecretString=secret)[
        "ARN"
    ]
    env.setenv("CLASSWIRE_JWT_ALGORITHMS", "HS256")
    env.setenv("CLASSWIRE_JWT_SECRET_ARN", arn)
    env.delenv("CLASSWIRE_JWT_JWKS_URL", raising=False)
    return arn
