"""The parts of the containers mode that need no Docker: stale engine pid files, the TCP forwarder
to the registry, the SQS event source (moto), the Invoke API client's error mapping, and the
stand-in's REPORT lines."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading

import boto3
import pytest
from moto import mock_aws

from isrflow.local.containers import engine
from isrflow.local.containers.invoke_api import InvokeApiLambdas, SqsEventSource
from isrflow.local.containers.sam import parse_reports
from isrflow.local.containers.services import TcpForwarder
from isrflow.local.lambdas import LambdaError
from tests.fake_aws import use_fake_aws


def test_stale_pid_files_are_removed_and_live_ones_kept(tmp_path, monkeypatch):
    stale, live, junk = tmp_path / "stale.pid", tmp_path / "live.pid", tmp_path / "junk.pid"
    stale.write_text("999999999")
    live.write_text(str(os.getpid()))
    junk.write_text("not a pid")
    monkeypatch.setattr(engine, "STALE_PID_FILES", (stale, live, junk, tmp_path / "absent.pid"))
    engine._remove_stale_pid_files()
    assert not stale.exists() and live.exists() and junk.exists()


def test_forwarder_relays_both_ways():
    server = socket.create_server(("127.0.0.1", 0))

    def echo():
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data.upper())

    threading.Thread(target=echo, daemon=True).start()
    forwarder = TcpForwarder("127.0.0.1", server.getsockname()[:2])
    try:
        with socket.create_connection(forwarder.address, timeout=5) as client:
            client.sendall(b"registry bytes")
            got = b""
            while len(got) < 14:
                got += client.recv(1024)
        assert got == b"REGISTRY BYTES"
    finally:
        forwarder.close()
        server.close()


@pytest.fixture
def sqs(monkeypatch):
    use_fake_aws(monkeypatch)
    with mock_aws():
        client = boto3.client("sqs")
        url = client.create_queue(QueueName="registry", Attributes={"VisibilityTimeout": "900"})["QueueUrl"]
        yield client, url


def test_event_source_batches_and_deletes_only_what_the_writer_took(sqs):
    client, url = sqs
    for i in range(25):
        client.send_message(QueueUrl=url, MessageBody=json.dumps({"n": i}))
    batches = []

    def writer(event):
        batches.append(event)
        assert {r["eventSourceARN"] for r in event["Records"]} == {
            "arn:aws:sqs:us-east-1:123456789012:registry"
        }
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]}
                for r in event["Records"]
                if json.loads(r["body"])["n"] % 5 == 0
            ]
        }

    source = SqsEventSource(client, url, "arn:aws:sqs:us-east-1:123456789012:registry", writer, batch_size=20)
    assert source.poll_once() == 20 and source.poll_once() == 5 and source.poll_once() == 0
    assert [len(b["Records"]) for b in batches] == [20, 5]
    attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    # the 5 returned items stay in flight (back after the visibility timeout), the 20 others are gone
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == (
        "0",
        "5",
    )


def test_event_source_keeps_the_batch_when_the_writer_fails(sqs):
    client, url = sqs
    client.send_message(QueueUrl=url, MessageBody="{}")

    def writer(event):
        raise LambdaError("RegistryUnavailableError", "database down")

    source = SqsEventSource(client, url, "arn:aws:sqs:us-east-1:123456789012:registry", writer)
    assert source.poll_once() == 1 and source.errors == [
        "LambdaError: RegistryUnavailableError: database down"
    ]
    attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"


class _InvokeApi(http.server.BaseHTTPRequestHandler):
    """The Lambda Invoke API as sam local start-lambda serves it: one function that fails."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        fails = "/functions/Broken/" in self.path
        answer = (
            {"errorType": "IsrInputError", "errorMessage": "raw.fits: truncated", "stackTrace": ["x"]}
            if fails
            else {"echo": body}
        )
        data = json.dumps(answer).encode()
        self.send_response(200)
        if fails:
            self.send_header("X-Amz-Function-Error", "Unhandled")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_invoke_api_answers_and_function_errors():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _InvokeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lambdas = InvokeApiLambdas(
            f"http://127.0.0.1:{server.server_address[1]}",
            {"isrflow-fine": "Fine", "isrflow-broken": "Broken"},
        )

        class Fn:
            def __init__(self, name):
                self.name = name

        seen = []
        assert lambdas.invoke(Fn("isrflow-fine"), {"a": 1}, on_done=lambda s, ok: seen.append(ok)) == {
            "echo": {"a": 1}
        }
        with pytest.raises(LambdaError) as err:
            lambdas.invoke(Fn("isrflow-broken"), {}, on_done=lambda s, ok: seen.append(ok))
        assert (err.value.error, err.value.message) == ("IsrInputError", "raw.fits: truncated")
        assert seen == [True, False]
    finally:
        server.shutdown()


def test_report_lines_count_each_invocation_once():
    line = (
        'ISRFLOW-STANDIN-REPORT {"duration_ms": 5.0, "function": "F", "init_ms": null, "invocation": 2, '
        '"max_rss_mb": 80.5, "sandbox": "%s"}\n'
    )
    text = line % "a" * 3 + line % "b"  # a warm container's line copied three times, another container's once
    assert [(r["sandbox"], r["invocation"]) for r in parse_reports(text)] == [("a", 2), ("b", 2)]


def test_report_lines_are_parsed_from_container_output():
    text = (
        'START RequestId: x\nISRFLOW-STANDIN-REPORT {"duration_ms": 5.0, "function": "F", '
        '"init_ms": 400.0, "invocation": 1, "max_rss_mb": 80.5}\nEND RequestId: x\n'
    )
    assert parse_reports(text) == [
        {"duration_ms": 5.0, "function": "F", "init_ms": 400.0, "invocation": 1, "max_rss_mb": 80.5}
    ]
