"""Stand-in Lambda handlers for the gateway tests (not classwire's): they record what they were given.

Every handler appends the event it got to $RECORD_DIR/<function>.jsonl, so a test can read back exactly
what API Gateway would have delivered. The message handler's actions exercise the gateway: echo,
sleep, crash, fail, and calls to the @connections API with urllib.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

COLD_START_AT = time.time()
# A signature the gateway does not verify; its scheme is what makes the call look signed.
SIGNED = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/execute-api/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=0000"
}


def _record(event, context):
    path = os.path.join(os.environ["RECORD_DIR"], f"{context.function_name}.jsonl")
    with open(path, "a") as log:
        log.write(
            json.dumps({"event": event, "request_id": context.aws_request_id, "pid": os.getpid()}) + "\n"
        )


def authorizer(event, context):
    _record(event, context)
    token = event["queryStringParameters"].get("token", "")
    allow = {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}
    if token == "raise":
        raise Exception("Unauthorized")
    if token == "boom":
        raise RuntimeError("boom")
    if token == "deny":
        return {
            "principalId": "x",
            "policyDocument": {"Version": "2012-10-17", "Statement": [{**allow, "Effect": "Deny"}]},
        }
    if token == "other-route":
        return {
            "principalId": "x",
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{**allow, "Resource": event["methodArn"].replace("$connect", "send")}],
            },
        }
    if token == "nested":
        return {
            "principalId": "x",
            "policyDocument": {"Version": "2012-10-17", "Statement": [allow]},
            "context": {"claims": {"a": 1}},
        }
    user = token.removeprefix("user-")
    wildcard = {**allow, "Resource": event["methodArn"].rsplit("/", 2)[0] + "/*"}
    return {
        "principalId": user,
        "policyDocument": {"Version": "2012-10-17", "Statement": [wildcard]},
        "context": {
            "userId": user,
            "classroomId": event["queryStringParameters"].get("classroom", ""),
            "seats": 30,
            "teacher": True,
        },
    }


def connect(event, context):
    _record(event, context)
    classroom = (event.get("queryStringParameters") or {}).get("classroom")
    if classroom == "full":
        return {"statusCode": 429, "body": "classroom is full"}
    if classroom == "crash":
        raise RuntimeError("connect failed")
    if classroom == "post-self":
        # The connection does not exist until $connect returns: API Gateway answers 410.
        status = _management(event, "POST", event["requestContext"]["connectionId"], b"too early")
        _record({"post_self": status}, context)
    return {"statusCode": 200}


def disconnect(event, context):
    _record(event, context)
    return {"statusCode": 200}


def _management(event, method, connection_id, data=None, signed=True):
    endpoint = f"http://{event['requestContext']['domainName']}/{event['requestContext']['stage']}"
    request = urllib.request.Request(
        f"{endpoint}/@connections/{urllib.parse.quote(connection_id, safe='')}",
        data=data,
        method=method,
        headers=SIGNED if signed else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def message(event, context):
    _record(event, context)
    ctx = event["requestContext"]
    try:
        request = json.loads(event["body"])
    except ValueError:
        request = {}
    action = ctx["routeKey"]
    if action == "sleep":
        started = time.time()
        time.sleep(request.get("seconds", 1))
        return {
            "statusCode": 200,
            "body": json.dumps({"pid": os.getpid(), "started": started, "ended": time.time()}),
        }
    if action == "crash":
        os._exit(3)
    if action == "fail":
        raise ValueError("handler failed")
    if action == "whoami":
        return {"statusCode": 200, "body": json.dumps(ctx.get("authorizer"))}
    if action == "env":
        return {
            "statusCode": 200,
            "body": json.dumps(
                {
                    "environ": dict(os.environ),
                    "sys_path_0": sys.path[0],
                    "function_name": context.function_name,
                    "memory": context.memory_limit_in_mb,
                    "arn": context.invoked_function_arn,
                    "remaining_ms": context.get_remaining_time_in_millis(),
                    "cold_start_at": COLD_START_AT,
                    "pid": os.getpid(),
                }
            ),
        }
    if action == "post":
        # Send to a connection (this one by default), then read it and report the statuses.
        target = request.get("to", ctx["connectionId"])
        sent = _management(
            event, "POST", target, request.get("data", "pushed").encode(), signed=request.get("signed", True)
        )
        got = _management(event, "GET", target)
        return {"statusCode": 200, "body": json.dumps({"post": sent, "get": got})}
    if action == "delete":
        return {
            "statusCode": 200,
            "body": json.dumps({"delete": _management(event, "DELETE", request["to"])}),
        }
    if action == "record":
        return {"statusCode": 200, "body": "one-way routes send nothing back"}
    return {"statusCode": 200, "body": json.dumps({"route": action, "body": event["body"]})}
