"""The outputs every classwire stack has: the contract `terraform output` keeps with the pipeline
(scripts/stack_outputs.py, the smoke test) and with people. Without cdktf, so the pipeline's scripts
read it without starting jsii."""

from __future__ import annotations

REQUIRED_OUTPUTS = (
    "websocket_url",
    "management_endpoint",
    "api_id",
    "stage",
    "region",
    "function_names",
    "redis_endpoint",
    "jwt_secret_arn",
)
