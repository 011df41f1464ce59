"""A REQUEST authorizer's side of `$connect`: its identity sources and its IAM policy result, read as
API Gateway reads them. The call itself is the data plane's (`Gateway._authorize`)."""

from __future__ import annotations

import fnmatch
import json

from websockets.datastructures import Headers

AUTHORIZER_RESULT_LIMIT = 8 * 1024


def identity_value(source: str, headers: Headers, query: dict[str, list[str]]) -> str:
    kind, _, name = source.removeprefix("route.request.").partition(".")
    if kind == "querystring":
        return (query.get(name) or [""])[-1]
    if kind == "header":
        return headers.get(name, "")
    raise ValueError(f"unsupported identity source {source!r}")


def evaluate_authorizer_result(result: object, method_arn: str) -> tuple[bool, dict]:
    """(allowed, requestContext.authorizer) from a REQUEST authorizer's IAM policy result."""
    if not isinstance(result, dict):
        raise ValueError("result is not an object")
    if len(json.dumps(result)) > AUTHORIZER_RESULT_LIMIT:
        raise ValueError("result is larger than 8 KB")
    principal = result.get("principalId")
    statements = (result.get("policyDocument") or {}).get("Statement")
    if principal is None or not isinstance(statements, list):
        raise ValueError("result needs principalId and policyDocument.Statement")
    context = {}
    for key, value in (result.get("context") or {}).items():
        if isinstance(value, (dict, list)):
            raise ValueError(f"context value {key!r} is an object or array")
        # API Gateway hands every context value on as a string.
        context[key] = value if value is None or isinstance(value, str) else json.dumps(value)
    decisions = [
        statement.get("Effect")
        for statement in statements
        if _matches(statement.get("Action"), "execute-api:invoke", fold_case=True)
        and _matches(statement.get("Resource"), method_arn)
    ]
    allowed = "Allow" in decisions and "Deny" not in decisions
    return allowed, {**context, "principalId": principal}


def _matches(patterns: object, value: str, fold_case: bool = False) -> bool:
    """IAM's wildcards: `*` and `?` (actions compare case-insensitively, resources exactly)."""
    if isinstance(patterns, str):
        candidates = [patterns]
    elif isinstance(patterns, list):
        candidates = patterns
    elif not patterns:
        candidates = []
    else:
        raise ValueError(f"policy Action/Resource {patterns!r} is neither a string nor a list")
    fold = str.lower if fold_case else str
    return any(fnmatch.fnmatchcase(value, fold(pattern).replace("[", "[[]")) for pattern in candidates)
