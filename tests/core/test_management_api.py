"""The lean @connections client, over real HTTP against bench/connections_stub.py.

The contract tests send the same calls through botocore's `apigatewaymanagementapi` client and through
ours, at the same frozen time, and compare what arrived byte for byte.
"""

from __future__ import annotations

import datetime
import ssl
import subprocess
import sys
import time

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse, HTTPHeaders
from botocore.config import Config

from bench.connections_stub import TEST_REGION, ManagementStub
from classwire.classroom import ClassroomService
from classwire.management_api import (
    CONNECTION_ERROR,
    TIMEOUT,
    Credentials,
    ManagementApi,
    canonical_path,
    encode_label,
    environment_credentials,
)
from classwire.settings import Limits
from tests.support.tls import write_certificates

ACCESS_KEY, SECRET_KEY, TOKEN = (
    "AKIDEXAMPLE",
    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "FwoGZXIvYXdzEBYaDH==",
)
FROZEN = datetime.datetime(2026, 3, 1, 23, 59, 58, tzinfo=datetime.UTC)
CONNECTION_ID = "L0SM9cOFvHcCIhw="  # API Gateway's shape: base64, with `=`
# What a request is, for the contract: everything but botocore's own User-Agent and SDK bookkeeping.
CONTRACT_HEADERS = ("host", "x-amz-date", "x-amz-security-token", "authorization", "content-length")


@pytest.fixture
def stub():
    with ManagementStub(verify=(ACCESS_KEY, SECRET_KEY), region=TEST_REGION) as stub:
        yield stub


def make_api(endpoint: str, token: str | None = TOKEN, **options) -> ManagementApi:
    credentials = Credentials(ACCESS_KEY, SECRET_KEY, token)
    return ManagementApi(endpoint, TEST_REGION, lambda: credentials, **options)


def botocore_client(endpoint: str, token: str | None):
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name=TEST_REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=token,
        config=Config(retries={"max_attempts": 1}),
    )


def contract_view(request) -> tuple:
    headers = {k.lower(): v for k, v in request.headers}
    return (
        request.method,
        request.target,
        {k: headers[k] for k in CONTRACT_HEADERS if k in headers},
        request.body,
    )


def call_botocore(client, operation: str, connection_id: str, data: bytes):
    if operation == "post":
        client.post_to_connection(ConnectionId=connection_id, Data=data)
    elif operation == "delete":
        client.delete_connection(ConnectionId=connection_id)
    else:
        client.get_connection(ConnectionId=connection_id)


def call_lean(api: ManagementApi, operation: str, connection_id: str, data: bytes):
    if operation == "post":
        assert api.post_many([connection_id], data).delivered == (connection_id,)
    elif operation == "delete":
        assert api.delete(connection_id).ok
    else:
        info = api.get(connection_id)
        assert info is not None and info["identity"]["sourceIp"] == "127.0.0.1"


# -- the contract with botocore ------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["post", "delete", "get"])
@pytest.mark.parametrize("token", [TOKEN, None], ids=["session-token", "no-token"])
def test_requests_match_botocore_byte_for_byte(stub, monkeypatch, operation, token):
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: FROZEN.replace(tzinfo=None))
    data = '{"type":"event","text":"héllo"}'.encode()

    call_botocore(botocore_client(stub.endpoint, token), operation, CONNECTION_ID, data)
    theirs = stub.requests[-1]
    stub.gone.discard(CONNECTION_ID)  # the delete above
    call_lean(make_api(stub.endpoint, token, clock=lambda: FROZEN), operation, CONNECTION_ID, data)
    ours = stub.requests[-1]

    assert contract_view(ours) == contract_view(theirs)
    assert ours.target == "/dev/@connections/L0SM9cOFvHcCIhw%3D"
    assert stub.signature_failures == 0
    # Nothing else is sent: no User-Agent, no SDK bookkeeping, no Content-Type.
    assert {k.lower() for k, _ in ours.headers} <= set(CONTRACT_HEADERS)


class _Capture:
    """botocore's final request, caught by a `before-send` hook and answered without a network."""

    def __init__(self, client):
        self.request: AWSPreparedRequest | None = None
        client.meta.events.register("before-send", self)

    def __call__(self, request, **kwargs):
        self.request = request

        class Raw:
            def stream(self, **kwargs):
                yield b"{}"

        return AWSResponse(request.url, 200, HTTPHeaders(), Raw())


@pytest.mark.parametrize(
    "connection_id", [CONNECTION_ID, "a/b c+d~e_f.g-h", "x=y&z?#%41", "é☃", "L0SM9cOFvHcCIhw%3D"]
)
@pytest.mark.parametrize("operation", ["post", "delete", "get"])
def test_https_requests_match_botocore_for_awkward_ids(monkeypatch, connection_id, operation):
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: FROZEN.replace(tzinfo=None))
    endpoint = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
    client = botocore_client(endpoint, TOKEN)
    capture = _Capture(client)
    data = b'{"n":1}' if operation == "post" else b""
    call_botocore(client, operation, connection_id, data)
    theirs = capture.request
    assert theirs is not None

    method = {"post": "POST", "delete": "DELETE", "get": "GET"}[operation]
    raw = make_api(endpoint, clock=lambda: FROZEN).render(method, connection_id, data)
    head, _, body = raw.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode().split("\r\n")
    ours = dict(line.split(": ", 1) for line in header_lines)

    assert (
        request_line
        == f"{theirs.method} {theirs.url.removeprefix('https://abc123.execute-api.eu-west-1.amazonaws.com')} HTTP/1.1"
    )
    assert ours.pop("Host") == "abc123.execute-api.eu-west-1.amazonaws.com"
    expected = {k: v.decode() if isinstance(v, bytes) else v for k, v in theirs.headers.items()}
    for key in ("X-Amz-Date", "X-Amz-Security-Token", "Authorization"):
        assert ours.pop(key) == expected[key], key
    if operation == "get":
        assert "Content-Length" not in ours and "Content-Length" not in expected
    else:
        assert ours.pop("Content-Length") == expected["Content-Length"]
    assert ours == {}
    assert body == (theirs.body or b"")


@pytest.mark.parametrize("value", ["L0SM9cOFvHcCIhw=", "a/b c+d", "~._-", "\x00\x7f!*'()", "é☃𝄞", ""])
def test_paths_are_encoded_and_canonicalized_as_botocore_does(value):
    from urllib.parse import quote

    from botocore.utils import percent_encode

    assert encode_label(value) == percent_encode(value, safe="~")
    path = f"/prod/@connections/{encode_label(value)}"
    assert canonical_path(path) == quote(path, safe="/~")


# -- outcomes ------------------------------------------------------------------------------------------


def test_fanout_sorts_connections_into_delivered_gone_and_failed(stub):
    stub.gone.add("gone=")
    stub.errors.update({"forbidden=": (403, "ForbiddenException"), "broken=": (500, "InternalServerError")})
    ids = [f"member{i}=" for i in range(20)] + ["gone=", "forbidden=", "broken="]

    report = make_api(stub.endpoint).post_many(ids, b'{"hello":1}')

    assert set(report.delivered) == {f"member{i}=" for i in range(20)}
    assert report.gone == ("gone=",)
    failed = {f.connection_id: (f.status, f.error) for f in report.failed}
    assert failed == {"forbidden=": (403, "ForbiddenException"), "broken=": (500, "InternalServerError")}
    assert sorted(stub.posts) == sorted((f"member{i}=", b'{"hello":1}') for i in range(20))
    # A 500 is retried once; a 403 and a 410 are not.
    attempts = [r.connection_id for r in stub.requests]
    assert (
        attempts.count("broken=") == 2 and attempts.count("forbidden=") == 1 and attempts.count("gone=") == 1
    )
    assert stub.signature_failures == 0


@pytest.mark.parametrize(("status", "error"), [(429, "LimitExceededException"), (503, "ServiceUnavailable")])
def test_throttling_and_server_errors_are_retried_once(stub, status, error):
    stub.fail_status = (status, error)
    stub.fail_first = {"flaky=": 1, "down=": 5}
    report = make_api(stub.endpoint).post_many(["flaky=", "down="], b"x")
    assert report.delivered == ("flaky=",)
    assert [(f.connection_id, f.status, f.error) for f in report.failed] == [("down=", status, error)]


def test_a_connection_that_never_answers_times_out_and_fails_alone(stub):
    stub.hang.add("hung=")
    api = make_api(stub.endpoint, read_timeout=0.3)
    started = time.monotonic()
    report = api.post_many(["hung=", "ok1=", "ok2="], b"x")
    assert time.monotonic() - started < 2
    assert set(report.delivered) == {"ok1=", "ok2="}
    assert [(f.connection_id, f.status, f.error) for f in report.failed] == [("hung=", None, TIMEOUT)]


def test_an_unreachable_endpoint_fails_every_post_quickly_without_raising():
    with ManagementStub() as stub:
        endpoint = stub.endpoint  # the port is closed once the stub stops
    api = make_api(endpoint, connect_timeout=0.3)
    started = time.monotonic()
    report = api.post_many(["a=", "b="], b"x")
    assert time.monotonic() - started < 2
    assert {(f.connection_id, f.error) for f in report.failed} == {
        ("a=", CONNECTION_ERROR),
        ("b=", CONNECTION_ERROR),
    }


def test_a_connect_that_hangs_times_out():
    # 10.255.255.1 is not routed: a SYN goes nowhere, like a Lambda in a VPC without NAT.
    api = make_api("https://10.255.255.1/prod", connect_timeout=0.3)
    started = time.monotonic()
    report = api.post_many(["a="], b"x")
    assert time.monotonic() - started < 2.5
    assert report.failed[0].status is None and report.failed[0].error in (TIMEOUT, CONNECTION_ERROR)


# -- connections ---------------------------------------------------------------------------------------


def test_concurrency_is_bounded_and_connections_are_kept_alive(stub):
    stub.latency_ms = 20
    api = make_api(stub.endpoint, concurrency=8)
    ids = [f"m{i}=" for i in range(60)]
    for _ in range(2):
        assert len(api.post_many(ids, b"x").delivered) == 60
    assert stub.max_in_flight == 8
    # Two batches of 60 posts over the same 8 sockets.
    assert stub.connections_accepted == api.connections_opened == 8
    assert len(stub.posts) == 120


def test_sockets_the_server_closed_while_idle_are_replaced_transparently(stub):
    api = make_api(stub.endpoint, concurrency=4)
    ids = [f"m{i}=" for i in range(12)]
    assert len(api.post_many(ids, b"x").delivered) == 12
    stub.close_idle_connections()
    time.sleep(0.05)
    report = api.post_many(ids, b"y")
    assert len(report.delivered) == 12 and not report.failed
    assert stub.connections_accepted == 8
    assert [r.connection_id for r in stub.requests].count("m0=") == 2  # no request was sent twice


def test_https_with_a_verified_certificate(tmp_path):
    paths = write_certificates(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(paths["cert"], paths["key"])
    client_context = ssl.create_default_context(cafile=str(paths["ca"]))
    with ManagementStub(ssl_context=server_context, gone={"gone="}, verify=(ACCESS_KEY, SECRET_KEY)) as stub:
        api = make_api(stub.endpoint, concurrency=4, ssl_context=client_context)
        ids = [f"m{i}=" for i in range(10)] + ["gone="]
        for _ in range(2):
            report = api.post_many(ids, b"over tls")
            assert len(report.delivered) == 10 and report.gone == ("gone=",) and not report.failed
        assert stub.connections_accepted == 4 and stub.signature_failures == 0

    with ManagementStub(ssl_context=server_context) as stub:
        report = make_api(stub.endpoint).post_many(["m="], b"x")
        assert report.failed[0].error == CONNECTION_ERROR  # a certificate from an unknown CA is refused


def test_http_endpoint_with_a_trailing_slash(stub):
    api = make_api(stub.endpoint + "/")
    assert api.post_many([CONNECTION_ID], b"x").delivered == (CONNECTION_ID,)
    assert stub.requests[-1].target == "/dev/@connections/L0SM9cOFvHcCIhw%3D"


# -- delete and get ------------------------------------------------------------------------------------


def test_delete_get_and_delete_many_treat_gone_as_closed(stub):
    api = make_api(stub.endpoint)
    info = api.get("c1=")
    assert info is not None and info["connectedAt"].endswith("Z")
    assert api.delete("c1=").status == 204
    assert api.get("c1=") is None
    again = api.delete("c1=")
    assert again.gone and not again.ok

    stub.errors["stuck="] = (403, "ForbiddenException")
    report = api.delete_many(["c1=", "c2=", "c3=", "stuck="])
    assert set(report.closed) == {"c1=", "c2=", "c3="}
    assert [(f.connection_id, f.error) for f in report.failed] == [("stuck=", "ForbiddenException")]


def test_close_connections_deletes_every_connection_of_the_classroom(stub):
    metrics = []
    service = ClassroomService(
        store=None,  # type: ignore[arg-type]  # closing connections needs no store
        connections=make_api(stub.endpoint),
        limits=Limits(),
        metric=lambda *m: metrics.append(m),
    )
    stub.gone.add("c2=")
    service.close_connections("room-1", ["c1=", "c2=", "c3="])
    assert sorted((r.method, r.connection_id) for r in stub.requests) == [
        ("DELETE", "c1="),
        ("DELETE", "c2="),
        ("DELETE", "c3="),
    ]
    assert metrics == [("ConnectionsClosed", "Count", 3)]


# -- signing key and credentials -----------------------------------------------------------------------


def test_the_signing_key_is_derived_once_a_day(stub):
    now = [FROZEN - datetime.timedelta(seconds=30)]
    api = make_api(stub.endpoint, clock=lambda: now[0])
    for _ in range(3):
        api.post_many(["a=", "b="], b"x")
        now[0] += datetime.timedelta(seconds=5)
    assert api.signer.keys_derived == 1
    now[0] = FROZEN + datetime.timedelta(seconds=5)  # past midnight UTC
    api.post_many(["a="], b"x")
    assert api.signer.keys_derived == 2
    assert stub.signature_failures == 0 and len(stub.posts) == 7
    dates = {r.header("X-Amz-Date")[:8] for r in stub.requests}
    assert dates == {"20260301", "20260302"}


def test_lambda_credentials_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    assert environment_credentials()() == Credentials("AKIDENV", "secret", "token")


def test_without_environment_keys_botocores_chain_is_asked_every_batch(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    shared = tmp_path / "credentials"
    shared.write_text("[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = filesecret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    source = environment_credentials()
    assert source() == Credentials("AKIDFILE", "filesecret", None)


def test_importing_the_client_imports_neither_boto3_nor_botocore():
    code = (
        "import sys, classwire.management_api as m; "
        "m.ManagementApi.from_environment('http://127.0.0.1:9/dev'); "
        "assert not {'boto3', 'botocore'} & set(sys.modules), sorted(sys.modules)"
    )
    env = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
