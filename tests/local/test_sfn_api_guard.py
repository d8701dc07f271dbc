"""`isrflow local serve` refuses what a web page could send it: requests addressed to another host
name (DNS rebinding), oversized bodies, and (with a token) requests without the token. The real
server on an ephemeral port of 127.0.0.1, over a stub runtime with one state machine."""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ClientError

from isrflow.local.sfn_api import LocalStepFunctionsServer

MACHINE = SimpleNamespace(
    arn="arn:aws:states:local:000000000000:stateMachine:Demo", name="Demo", type="STANDARD"
)
LIST = {"X-Amz-Target": "AWSStepFunctions.ListStateMachines", "Content-Type": "application/x-amz-json-1.0"}


def _server(**kwargs) -> LocalStepFunctionsServer:
    runtime = SimpleNamespace(app=SimpleNamespace(state_machines={"Demo": MACHINE}))
    return LocalStepFunctionsServer(runtime, 0, **kwargs).start()


@pytest.fixture
def server() -> Iterator[LocalStepFunctionsServer]:
    srv = _server(max_body_bytes=64)
    yield srv
    srv.stop()


def _post(server, body: bytes = b"{}", headers: dict | None = None, host: str | None = "default"):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest("POST", "/", skip_host=True)
        if host == "default":
            host = f"127.0.0.1:{server.port}"
        if host is not None:
            conn.putheader("Host", host)
        for key, value in {**LIST, "Content-Length": str(len(body)), **(headers or {})}.items():
            conn.putheader(key, value)
        conn.endheaders(body)
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read() or b"{}"), reply.getheader("Connection")
    finally:
        conn.close()


def test_requests_addressed_to_this_machine_are_served(server):
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "localhost", "LOCALHOST:80"):
        status, answer, _ = _post(server, host=host)
        assert status == 200, (host, answer)
        assert [m["name"] for m in answer["stateMachines"]] == ["Demo"]


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1.evil.example",
        "localhost.evil.example:80",
        "127.0.0.1:80@evil",
        "",
        None,
    ],
)
def test_any_other_host_header_is_forbidden(server, host):
    if host is not None:
        host = host.replace("{port}", str(server.port))
    status, answer, connection = _post(server, host=host)
    assert status == 403 and answer["__type"] == "AccessDeniedException"
    assert "Host header" in answer["message"] and connection == "close"


def test_a_body_over_the_limit_is_refused_unread(server):
    fits = b"{}" + b" " * 62
    assert len(fits) == server.max_body_bytes
    assert _post(server, fits)[0] == 200
    status, answer, connection = _post(server, fits + b" ")
    assert status == 413 and answer["__type"] == "RequestEntityTooLargeException"
    assert "65 bytes exceeds 64" in answer["message"] and connection == "close"
    # a claimed length alone is enough: nothing is read
    status, _, _ = _post(server, b"{}", headers={"Content-Length": str(10**9)})
    assert status == 413


def test_the_default_limit_is_one_mebibyte():
    srv = _server()
    try:
        assert srv.max_body_bytes == 1024 * 1024
        assert _post(srv, b"{}" + b" " * (1024 * 1024 - 2))[0] == 200
        assert _post(srv, b"", headers={"Content-Length": str(1024 * 1024 + 1)})[0] == 413
    finally:
        srv.stop()


def test_with_a_token_only_requests_carrying_it_are_served(monkeypatch):
    srv = _server(token="s3cret-token")
    try:
        assert _post(srv)[0] == 403
        assert _post(srv, headers={"X-Isrflow-Token": "wrong"})[0] == 403
        assert _post(srv, headers={"X-Isrflow-Token": "s3cret-token"})[0] == 200
        for key in [k for k in list(os.environ) if k.startswith("AWS_")]:
            monkeypatch.delenv(key)

        def client(key_id: str):
            return boto3.client(
                "stepfunctions",
                endpoint_url=srv.endpoint,
                region_name="us-east-1",
                aws_access_key_id=key_id,
                aws_secret_access_key="anything",
            )

        # the aws CLI / boto3 way: the token as the access key id of the signed request
        names = [m["name"] for m in client("s3cret-token").list_state_machines()["stateMachines"]]
        assert names == ["Demo"]
        with pytest.raises(ClientError, match="AccessDeniedException"):
            client("AKIAWRONG").list_state_machines()
    finally:
        srv.stop()
