"""The local API Gateway WebSocket data plane, driven by real WebSocket clients.

The functions are stand-ins (tests/localcloud/fake_functions) that record the events they get, so each
test can check what API Gateway would have delivered and how the client is answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from localcloud.gateway import GatewayProcess, GatewayQuotas, GatewayThread
from localcloud.manifest import AuthorizerSpec, FunctionSpec, Manifest, RouteSpec

FAKE_FUNCTIONS = Path(__file__).resolve().parent / "fake_functions"
TWO_WAY = ("echo", "whoami", "sleep", "crash", "fail", "post", "delete", "env", "$default")


def make_manifest(
    record_dir: Path,
    code: Path = FAKE_FUNCTIONS,
    *,
    default_route: bool = True,
    message_timeout: float = 10.0,
) -> Manifest:
    def function(name: str, timeout: float = 10.0) -> FunctionSpec:
        return FunctionSpec(
            name, f"fake_handlers.{name}", str(code), {"RECORD_DIR": str(record_dir)}, timeout
        )

    routes = [
        RouteSpec("$connect", "connect", authorized=True),
        RouteSpec("$disconnect", "disconnect"),
        RouteSpec("record", "message", two_way=False),
        *(RouteSpec(key, "message", two_way=True) for key in TWO_WAY if default_route or key != "$default"),
    ]
    return Manifest(
        functions={
            "authorizer": function("authorizer"),
            "connect": function("connect"),
            "disconnect": function("disconnect"),
            "message": function("message", message_timeout),
        },
        routes=tuple(routes),
        authorizer=AuthorizerSpec("authorizer", ("route.request.querystring.token",)),
        api_id="testapi001",
        stage="test",
    )


def records(record_dir: Path, function: str) -> list[dict]:
    path = record_dir / f"{function}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def disconnect_of(record_dir: Path, connection_id: str) -> dict:
    def find():
        events = [r["event"] for r in records(record_dir, "disconnect")]
        return next((e for e in events if e["requestContext"]["connectionId"] == connection_id), None)

    return wait_for(find)


class Client:
    """A WebSocket client of the gateway under test."""

    record_dir: Path  # where the stand-in functions record what they got (set by `client()`)

    def __init__(
        self, gateway, token: str | None = "user-alice", classroom: str | None = "room-1", **options
    ):
        query = "&".join(f"{k}={v}" for k, v in (("token", token), ("classroom", classroom)) if v is not None)
        self.ws = ws_connect(f"{gateway.websocket_url}?{query}", open_timeout=20, **options)

    def ask(self, message: dict | str, timeout: float = 10.0) -> str:
        self.ws.send(message if isinstance(message, str) else json.dumps(message))
        reply = self.ws.recv(timeout)
        assert isinstance(reply, str), reply  # API Gateway answers in text frames
        return reply

    def ask_json(self, message: dict | str, timeout: float = 10.0) -> dict:
        return json.loads(self.ask(message, timeout))

    def last_message_event(self) -> dict:
        return records(self.record_dir, "message")[-1]["event"]

    def close_code(self, timeout: float = 10.0) -> int:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                self.ws.recv(timeout)
        return closed.value.rcvd.code if closed.value.rcvd else 1006


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("records")


@pytest.fixture(scope="module")
def gateway(record_dir, tmp_path_factory):
    with GatewayThread(make_manifest(record_dir), log_dir=tmp_path_factory.mktemp("logs")) as gateway:
        yield gateway


@pytest.fixture
def start_gateway(tmp_path):
    """A gateway of the test's own (other quotas or routes), stopped when the test ends."""
    threads = []

    def start(manifest: Manifest | None = None, **options):
        record = tmp_path / "records"
        record.mkdir(exist_ok=True)
        thread = GatewayThread(manifest or make_manifest(record), log_dir=tmp_path / "logs", **options)
        threads.append(thread)
        gateway = thread.start()
        gateway.record_dir = record  # type: ignore[attr-defined]  # the test's own tag on a Gateway
        return gateway

    yield start
    for thread in threads:
        thread.stop()


def client(gateway, record_dir, **options) -> Client:
    c = Client(gateway, **options)
    c.record_dir = record_dir
    return c


def rejected_status(gateway, **options) -> int:
    with pytest.raises(InvalidStatus) as rejected:
        Client(gateway, **options)
    return rejected.value.response.status_code


# --- the manifest -----------------------------------------------------------------------------------


def test_manifest_from_route_table_mirrors_classwire_routes(tmp_path):
    from classwire import routes

    manifest = Manifest.from_route_table("dist/lambda.zip", {"CLASSWIRE_REDIS_URL": "redis://127.0.0.1:1/0"})

    assert [r.key for r in manifest.routes] == [r.key for r in routes.ROUTES]
    send = manifest.route("send")
    assert send is not None
    assert send.two_way and manifest.functions[send.function].handler == routes.MESSAGE.handler
    connect_route = manifest.route("$connect")
    assert connect_route is not None and connect_route.authorized
    assert manifest.authorizer is not None
    assert manifest.authorizer.identity_source == (routes.AUTHORIZER_IDENTITY_SOURCE,)
    assert manifest.route_selection_expression == routes.ROUTE_SELECTION_EXPRESSION
    assert all(fn.environment["CLASSWIRE_REDIS_URL"] for fn in manifest.functions.values())

    loaded = Manifest.load(manifest.dump(tmp_path / "manifest.json"))
    assert loaded.routes == manifest.routes and loaded.authorizer == manifest.authorizer
    # A relative code path is resolved against the manifest's directory.
    assert loaded.functions[send.function].code == str(tmp_path / "dist/lambda.zip")


def test_manifest_rejects_routes_to_unknown_functions():
    with pytest.raises(ValueError, match="does not define"):
        Manifest(functions={}, routes=(RouteSpec("$default", "message"),))


# --- $connect: authorizer and integration ----------------------------------------------------------


def test_missing_or_empty_token_is_401_without_invoking_the_authorizer(gateway, record_dir):
    before = len(records(record_dir, "authorizer"))
    assert rejected_status(gateway, token=None) == 401
    assert rejected_status(gateway, token="") == 401
    assert len(records(record_dir, "authorizer")) == before


def test_authorizer_raising_unauthorized_is_401(gateway):
    assert rejected_status(gateway, token="raise") == 401


def test_deny_policy_or_policy_for_another_route_is_403(gateway):
    assert rejected_status(gateway, token="deny") == 403
    assert rejected_status(gateway, token="other-route") == 403


def test_authorizer_failure_or_invalid_context_is_500(gateway):
    assert rejected_status(gateway, token="boom") == 500
    assert rejected_status(gateway, token="nested") == 500


def test_connect_integration_status_rejects_the_upgrade(gateway, record_dir):
    assert rejected_status(gateway, classroom="full") == 429
    assert rejected_status(gateway, classroom="crash") == 502
    # Neither became a connection: no $disconnect for them.
    rejected = {r["event"]["requestContext"]["connectionId"] for r in records(record_dir, "connect")[-2:]}
    time.sleep(0.2)
    assert not rejected & {
        r["event"]["requestContext"]["connectionId"] for r in records(record_dir, "disconnect")
    }


def test_the_connection_is_gone_until_connect_returns(gateway, record_dir):
    c = client(gateway, record_dir, classroom="post-self")
    assert records(record_dir, "connect")[-1]["event"] == {"post_self": [410, ""]}
    assert c.ask_json({"action": "echo"})["route"] == "echo"  # and nothing "too early" arrived
    c.ws.close()


def test_authorizer_and_connect_events_are_shaped_like_api_gateways(gateway, record_dir):
    c = client(gateway, record_dir, token="user-bob", classroom="room-9")
    authorizer_event = records(record_dir, "authorizer")[-1]["event"]
    connect_event = records(record_dir, "connect")[-1]["event"]
    c.ws.close()

    assert authorizer_event["type"] == "REQUEST"
    assert (
        authorizer_event["methodArn"] == "arn:aws:execute-api:us-east-1:123456789012:testapi001/test/$connect"
    )
    assert authorizer_event["queryStringParameters"] == {"token": "user-bob", "classroom": "room-9"}
    assert authorizer_event["multiValueQueryStringParameters"]["classroom"] == ["room-9"]
    assert authorizer_event["headers"]["Upgrade"] == "websocket"
    assert authorizer_event["multiValueHeaders"]["Sec-WebSocket-Version"] == ["13"]
    assert authorizer_event["requestContext"]["eventType"] == "CONNECT"

    context = connect_event["requestContext"]
    assert context["routeKey"] == "$connect" and context["eventType"] == "CONNECT"
    assert context["domainName"] == f"127.0.0.1:{gateway.port}"
    assert context["stage"] == "test" and context["apiId"] == "testapi001"
    assert context["connectionId"] == authorizer_event["requestContext"]["connectionId"]
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert abs(context["connectedAt"] - time.time() * 1000) < 60_000
    # Context values arrive stringified, with principalId and integrationLatency added.
    authorizer = context["authorizer"]
    assert authorizer["principalId"] == "bob" and authorizer["userId"] == "bob"
    assert authorizer["classroomId"] == "room-9"
    assert authorizer["seats"] == "30" and authorizer["teacher"] == "true"
    assert isinstance(authorizer["integrationLatency"], int)
    assert connect_event["queryStringParameters"]["classroom"] == "room-9"
    assert "Upgrade" not in connect_event["headers"]


# --- frames and routes -----------------------------------------------------------------------------


def test_routes_are_selected_by_action_with_default_fallback(gateway, record_dir):
    c = client(gateway, record_dir)
    assert c.ask_json({"action": "echo", "n": 1}) == {"route": "echo", "body": '{"action": "echo", "n": 1}'}
    assert c.ask_json({"action": "nope"})["route"] == "$default"
    assert c.ask_json({"no": "action"})["route"] == "$default"
    assert c.ask_json("not json {")["route"] == "$default"
    assert c.ask_json("[1, 2]")["route"] == "$default"
    assert c.ask_json({"action": "$connect"})["route"] == "$default"
    c.ws.close()


def test_message_events_carry_the_request_context_and_authorizer_on_every_route(gateway, record_dir):
    c = client(gateway, record_dir, token="user-carol")
    authorizer = c.ask_json({"action": "whoami"})
    assert authorizer["principalId"] == "carol" and authorizer["userId"] == "carol"
    c.ask_json({"action": "elsewhere"})
    for event in [r["event"] for r in records(record_dir, "message")[-2:]]:
        context = event["requestContext"]
        assert context["eventType"] == "MESSAGE" and context["messageDirection"] == "IN"
        assert context["authorizer"]["userId"] == "carol"
        for key in (
            "messageId",
            "requestId",
            "connectionId",
            "connectedAt",
            "requestTimeEpoch",
            "requestTime",
            "domainName",
            "stage",
            "apiId",
            "identity",
            "extendedRequestId",
        ):
            assert context[key], key
        assert event["isBase64Encoded"] is False and isinstance(event["body"], str)
    c.ws.close()


def test_one_way_routes_send_nothing_back(gateway, record_dir):
    c = client(gateway, record_dir)
    c.ws.send(json.dumps({"action": "record"}))
    assert c.ask_json({"action": "echo"})["route"] == "echo"
    wait_for(
        lambda: any(
            r["event"]["requestContext"]["routeKey"] == "record" for r in records(record_dir, "message")
        )
    )
    with pytest.raises(TimeoutError):
        c.ws.recv(0.3)
    c.ws.close()


def test_without_a_default_route_unmatched_frames_get_forbidden(start_gateway, tmp_path):
    gateway = start_gateway(make_manifest(tmp_path / "records", default_route=False))
    c = client(gateway, gateway.record_dir)
    reply = c.ask("hello")
    error = json.loads(reply)
    assert error["message"] == "Forbidden" and error["connectionId"] and error["requestId"]
    assert reply.startswith('{"message": "Forbidden", "connectionId":"')
    assert c.ask_json({"action": "echo"})["route"] == "echo"
    c.ws.close()


def test_a_failing_handler_gets_internal_server_error(gateway, record_dir):
    c = client(gateway, record_dir)
    error = c.ask_json({"action": "fail"})
    assert error["message"] == "Internal server error"
    assert (
        error["connectionId"] == records(record_dir, "message")[-1]["event"]["requestContext"]["connectionId"]
    )
    assert error["requestId"]
    c.ws.close()


def test_client_close_sends_disconnect_with_code_and_reason(gateway, record_dir):
    c = client(gateway, record_dir, token="user-dave")
    c.ask_json({"action": "echo"})
    connection_id = c.last_message_event()["requestContext"]["connectionId"]
    c.ws.close(1000, "bye")
    event = disconnect_of(record_dir, connection_id)
    context = event["requestContext"]
    assert context["routeKey"] == "$disconnect" and context["eventType"] == "DISCONNECT"
    assert context["disconnectStatusCode"] == 1000 and context["disconnectReason"] == "bye"
    assert context["authorizer"]["userId"] == "dave"
    assert event["headers"]["Host"] == f"127.0.0.1:{gateway.port}"


# --- the @connections management API ----------------------------------------------------------------


def test_connections_api_post_get_delete_and_gone(gateway, record_dir):
    alice = client(gateway, record_dir)
    alice.ask_json({"action": "echo"})
    alice_id = alice.last_message_event()["requestContext"]["connectionId"]
    bob = client(gateway, record_dir, token="user-bob")

    # Bob's handler posts to Alice, then reads her connection.
    result = bob.ask_json({"action": "post", "to": alice_id, "data": "hi alice"})
    assert result["post"] == [200, ""]
    assert alice.ws.recv(5) == "hi alice"
    status, body = result["get"]
    info = json.loads(body)
    assert status == 200 and info["identity"]["sourceIp"] == "127.0.0.1"
    assert info["connectedAt"].endswith("Z") and info["lastActiveAt"] >= info["connectedAt"]

    # Posting to yourself works too (the reply comes after the pushed frame).
    assert bob.ask('{"action": "post", "data": "to myself"}') == "to myself"
    bob.ws.recv(5)

    # Unsigned calls are refused the way API Gateway refuses them.
    assert bob.ask_json({"action": "post", "to": alice_id, "signed": False})["post"][0] == 403

    assert bob.ask_json({"action": "delete", "to": alice_id})["delete"] == [204, ""]
    assert alice.close_code() == 1000
    context = disconnect_of(record_dir, alice_id)["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (
        1000,
        "Connection Closed Normally",
    )

    gone = bob.ask_json({"action": "post", "to": alice_id})
    assert gone["post"][0] == 410 and gone["get"][0] == 410
    assert bob.ask_json({"action": "delete", "to": alice_id})["delete"][0] == 410
    bob.ws.close()


def test_connections_api_speaks_boto3(gateway, record_dir):
    management = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=gateway.management_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )
    c = client(gateway, record_dir)
    c.ask_json({"action": "echo"})
    connection_id = c.last_message_event()["requestContext"]["connectionId"]

    management.post_to_connection(ConnectionId=connection_id, Data=b"from boto3")
    assert c.ws.recv(5) == "from boto3"
    info = management.get_connection(ConnectionId=connection_id)
    assert info["Identity"]["SourceIp"] == "127.0.0.1" and info["ConnectedAt"].tzinfo is not None

    # Over the frame limit the message is split into frames; the client reassembles it.
    big = "é" * 20_000  # 40,000 bytes of UTF-8
    management.post_to_connection(ConnectionId=connection_id, Data=big.encode())
    assert c.ws.recv(5) == big
    with pytest.raises(management.exceptions.PayloadTooLargeException):
        management.post_to_connection(ConnectionId=connection_id, Data=b"x" * (128 * 1024 + 1))

    management.delete_connection(ConnectionId=connection_id)
    assert c.close_code() == 1000
    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId=connection_id, Data=b"late")
    with pytest.raises(management.exceptions.GoneException):
        management.get_connection(ConnectionId=connection_id)


# --- quotas -------------------------------------------------------------------------------------------


def test_frames_over_32_kb_and_binary_frames_close_the_connection(gateway, record_dir):
    c = client(gateway, record_dir)
    # A 40 KB message in 20 KB frames is within the quotas.
    c.ws.send(iter(['{"action": "echo", "pad": "', "x" * 20_000, "y" * 20_000, '"}']))
    assert c.ws.recv(5)
    c.ws.send(json.dumps({"action": "echo", "pad": "x" * (32 * 1024)}))
    assert c.close_code() == 1009

    c = client(gateway, record_dir)
    c.ws.send(b"\x00\x01")
    assert c.close_code() == 1003


def test_messages_over_128_kb_close_with_1009(gateway, record_dir):
    c = client(gateway, record_dir)
    c.ask_json({"action": "echo"})
    connection_id = c.last_message_event()["requestContext"]["connectionId"]
    # 150 KB in frames under 32 KB; the gateway may close before the client has sent the last fragments.
    with contextlib.suppress(ConnectionClosed):
        c.ws.send(iter(["x" * 30_000] * 5))
    assert c.close_code() == 1009
    assert disconnect_of(record_dir, connection_id)["requestContext"]["disconnectStatusCode"] == 1009


def test_idle_connections_close_after_the_idle_timeout_and_pings_do_not_count(start_gateway):
    gateway = start_gateway(quotas=GatewayQuotas(idle_timeout=1.0))
    active = client(gateway, gateway.record_dir)
    idle = client(gateway, gateway.record_dir, ping_interval=None)
    idle.ask_json({"action": "echo"})
    idle_id = idle.last_message_event()["requestContext"]["connectionId"]
    started = time.monotonic()

    stop = threading.Event()

    def ping_forever():
        while not stop.is_set():
            try:
                idle.ws.ping().wait(1)  # answered with a pong, but not activity
            except ConnectionClosed:
                return
            time.sleep(0.2)

    pinger = threading.Thread(target=ping_forever, daemon=True)
    pinger.start()
    for _ in range(4):  # 1.6 s of traffic keeps the other one open
        assert active.ask_json({"action": "echo"})["route"] == "echo"
        time.sleep(0.4)
    stop.set()
    pinger.join()
    assert idle.close_code() == 1001
    assert 0.9 < time.monotonic() - started < 4
    context = disconnect_of(gateway.record_dir, idle_id)["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (1001, "Going away")
    assert active.ask_json({"action": "echo"})["route"] == "echo"
    active.ws.close()


def test_connections_close_at_the_maximum_duration_even_when_active(start_gateway):
    gateway = start_gateway(quotas=GatewayQuotas(max_duration=1.2))
    started = time.monotonic()  # before connecting: the maximum counts from the connection's start
    c = client(gateway, gateway.record_dir)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            c.ask_json({"action": "echo"})
            time.sleep(0.1)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert 1.1 < time.monotonic() - started < 4


# --- Lambda execution environments -------------------------------------------------------------------


def test_handler_timeout_kills_and_replaces_the_worker(start_gateway, tmp_path):
    gateway = start_gateway(make_manifest(tmp_path / "records", message_timeout=1.0))
    c = client(gateway, gateway.record_dir)
    before = c.ask_json({"action": "env"})["pid"]
    started = time.monotonic()
    assert c.ask_json({"action": "sleep", "seconds": 5})["message"] == "Internal server error"
    assert time.monotonic() - started < 3
    after = c.ask_json({"action": "env"})
    assert after["pid"] != before
    with pytest.raises(ProcessLookupError):
        os.kill(before, 0)
    c.ws.close()


def test_api_gateway_gives_up_after_the_integration_timeout(start_gateway):
    gateway = start_gateway(quotas=GatewayQuotas(integration_timeout=0.5))
    c = client(gateway, gateway.record_dir)
    c.ask_json({"action": "echo"})
    started = time.monotonic()
    assert c.ask_json({"action": "sleep", "seconds": 2})["message"] == "Internal server error"
    assert time.monotonic() - started < 1.5
    # The Lambda itself runs on; another frame meanwhile gets an execution environment of its own.
    assert c.ask_json({"action": "echo"})["route"] == "echo"
    c.ws.close()


def test_a_crashed_worker_is_replaced(gateway, record_dir):
    c = client(gateway, record_dir)
    # One request at a time: the warmest worker serves each, so the crash hits the one that said env.
    crashed = c.ask_json({"action": "env"})["pid"]
    assert c.ask_json({"action": "crash"})["message"] == "Internal server error"
    with pytest.raises(ProcessLookupError):
        os.kill(crashed, 0)
    assert c.ask_json({"action": "env"})["pid"] != crashed
    assert c.ask_json({"action": "echo"})["route"] == "echo"
    c.ws.close()


def test_frames_of_one_connection_are_handled_in_parallel(gateway, record_dir):
    c = client(gateway, record_dir)
    started = time.monotonic()
    for _ in range(2):
        c.ws.send(json.dumps({"action": "sleep", "seconds": 1}))
    replies = [json.loads(c.ws.recv(10)) for _ in range(2)]
    elapsed = time.monotonic() - started
    assert len({r["pid"] for r in replies}) == 2
    # Both ran at once: each started before the other ended.
    first, second = sorted(replies, key=lambda r: r["started"])
    assert second["started"] < first["ended"]
    assert elapsed < 2.5
    c.ws.close()


def test_functions_run_warm_with_their_environment_and_a_lambda_context(start_gateway, tmp_path):
    # The code comes from a zip, as deployed.
    archive = tmp_path / "lambda.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(FAKE_FUNCTIONS / "fake_handlers.py", "fake_handlers.py")
    gateway = start_gateway(make_manifest(tmp_path / "records", code=archive), environment={"EXTRA": "yes"})
    c = client(gateway, gateway.record_dir)
    first = c.ask_json({"action": "env"})
    second = c.ask_json({"action": "env"})

    assert first["pid"] == second["pid"] and first["cold_start_at"] == second["cold_start_at"]
    env = first["environ"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "message" and env["AWS_REGION"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"] == "testing" and env["_HANDLER"] == "fake_handlers.message"
    assert env["RECORD_DIR"] == str(gateway.record_dir) and env["EXTRA"] == "yes"
    assert "PYTHONPATH" not in env
    assert first["sys_path_0"] == env["LAMBDA_TASK_ROOT"] != str(FAKE_FUNCTIONS)
    assert first["function_name"] == "message" and first["memory"] == 256
    assert first["arn"] == "arn:aws:lambda:us-east-1:123456789012:function:message"
    assert 0 < first["remaining_ms"] <= 10_000
    c.ws.close()


def test_stopping_the_gateway_disconnects_clients_and_stops_workers(tmp_path):
    record = tmp_path / "records"
    record.mkdir()
    thread = GatewayThread(make_manifest(record), log_dir=tmp_path / "logs")
    gateway = thread.start()
    c = client(gateway, record)
    pid = c.ask_json({"action": "env"})["pid"]
    connection_id = c.last_message_event()["requestContext"]["connectionId"]
    thread.stop()
    assert c.close_code() == 1001
    assert disconnect_of(record, connection_id)["requestContext"]["disconnectStatusCode"] == 1001
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_command_line_serves_until_interrupted(tmp_path):
    record = tmp_path / "records"
    record.mkdir()
    manifest = make_manifest(record).dump(tmp_path / "manifest.json")
    from localcloud import free_port

    port = free_port()
    env = dict(os.environ)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localcloud.gateway",
            "--manifest",
            str(manifest),
            "--port",
            str(port),
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert f"ws://127.0.0.1:{port}/test" in process.stdout.readline()

        class Target:
            websocket_url = f"ws://127.0.0.1:{port}/test"

        c = client(Target, record)
        assert c.ask_json({"action": "echo"})["route"] == "echo"
        connection_id = c.last_message_event()["requestContext"]["connectionId"]
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
        assert c.close_code() == 1001
        assert disconnect_of(record, connection_id)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_gateway_process_enforces_every_quota_it_is_given(tmp_path):
    """The child process gets the whole GatewayQuotas, not only its timeouts."""
    record = tmp_path / "records"
    record.mkdir()
    quotas = GatewayQuotas(frame_bytes=1024, message_bytes=4096, integration_timeout=2.0)
    with GatewayProcess(make_manifest(record), work_dir=tmp_path / "gateway", quotas=quotas) as gateway:
        management = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=gateway.management_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}),
        )
        c = client(gateway, record)
        # 3 KB in 1 KB frames is within both; the 3 KB echo comes back in 1 KB frames.
        c.ws.send(iter(['{"action": "echo", "pad": "', "x" * 1000, "y" * 1000, "z" * 1000, '"}']))
        assert json.loads(c.ws.recv(5))["route"] == "echo"
        connection_id = c.last_message_event()["requestContext"]["connectionId"]

        # The message quota holds for @connections too.
        management.post_to_connection(ConnectionId=connection_id, Data=b"x" * 4096)
        assert c.ws.recv(5) == "x" * 4096
        with pytest.raises(management.exceptions.PayloadTooLargeException):
            management.post_to_connection(ConnectionId=connection_id, Data=b"x" * 4097)

        # API Gateway gives up on the integration after 2 s, not 29.
        started = time.monotonic()
        assert c.ask_json({"action": "sleep", "seconds": 6})["message"] == "Internal server error"
        assert time.monotonic() - started < 5

        # One frame over 1 KB closes the connection.
        c.ws.send(json.dumps({"action": "echo", "pad": "x" * 1024}))
        assert c.close_code() == 1009

        # So does a message over 4 KB, however small its frames.
        c = client(gateway, record)
        with contextlib.suppress(ConnectionClosed):
            c.ws.send(iter(["x" * 1000] * 5))
        assert c.close_code() == 1009
