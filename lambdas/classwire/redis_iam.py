"""ElastiCache IAM authentication: the Redis password is a short-lived SigV4-presigned token, so no
secret exists anywhere (see the ElastiCache "Authenticating with IAM" guide)."""

from __future__ import annotations

import os
import time
from urllib.parse import urlencode

from redis.credentials import CredentialProvider

TOKEN_LIFETIME_SECONDS = 900
# Renew well before expiry; a token only has to be valid when a connection authenticates.
TOKEN_REUSE_SECONDS = 600


class IamAuthTokenProvider(CredentialProvider):
    def __init__(self, user_id: str, cache_name: str, region: str | None = None, clock=time.monotonic):
        import botocore.session
        from botocore.model import ServiceId
        from botocore.signers import RequestSigner

        self._user_id = user_id
        self._cache_name = cache_name
        self._region = region or os.environ.get("AWS_REGION", "us-east-1")
        session = botocore.session.get_session()
        credentials = session.get_credentials()
        if credentials is None:
            raise RuntimeError("no AWS credentials to sign the Redis IAM auth token with")
        self._signer = RequestSigner(
            ServiceId("elasticache"),
            self._region,
            "elasticache",
            "v4",
            credentials,
            session.get_component("event_emitter"),
        )
        self._clock = clock
        self._token = ""
        self._issued_at = -float("inf")

    def get_credentials(self) -> tuple[str, str]:
        if self._clock() - self._issued_at > TOKEN_REUSE_SECONDS:
            self._token = self._presign()
            self._issued_at = self._clock()
        return self._user_id, self._token

    def _presign(self) -> str:
        query = urlencode({"Action": "connect", "User": self._user_id})
        request = {
            "method": "GET",
            "url": f"https://{self._cache_name}/?{query}",
            "body": {},
            "headers": {},
            "context": {},
        }
        signed = self._signer.generate_presigned_url(
            request, operation_name="connect", expires_in=TOKEN_LIFETIME_SECONDS, region_name=self._region
        )
        return signed.removeprefix("https://")
