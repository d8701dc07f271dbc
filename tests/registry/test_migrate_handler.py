"""The migrate Lambda (the stack's RegistrySchema custom resource) against a real PostgreSQL
schema, answering a local HTTP server on 127.0.0.1 that stands in for CloudFormation's
pre-signed ResponseURL."""

from __future__ import annotations

import importlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from registry_helpers import REPO_ROOT

import isrflow.infra.settings
from isrflow.infra.custom_resource import (
    MAX_RESPONSE_BYTES,
    REPLY_MARGIN_S,
    CustomResourceReplyError,
    handle_request,
)
from isrflow.model.errors import ConfigError
from isrflow.registry.schema import SCHEMA_REVISION

EVENT = REPO_ROOT / "events" / "migrate_create.json"
#: The handler tests run on PostgreSQL only (the registry the stack migrates).
ON_POSTGRES = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


class ResponseServer:
    """Records the PUTs it gets; answers ``status``."""

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.headers.append(dict(self.headers.items()))
                outer.replies.append(json.loads(body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/response?X-Amz-Signature=test"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeContext:
    """A Lambda context whose remaining time is fixed (ms)."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def responses() -> Iterator[ResponseServer]:
    server = ResponseServer()
    yield server
    server.close()


@pytest.fixture
def handler(backend, monkeypatch):
    monkeypatch.setenv("ISRFLOW_REGISTRY_URL", backend.url_with_schema)
    monkeypatch.delenv("ISRFLOW_REGISTRY_SECRET_ARN", raising=False)
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    app = importlib.import_module("functions.migrate.app")
    yield app
    for key in [k for k in isrflow.infra.settings._REGISTRIES if backend.schema and backend.schema in k]:
        isrflow.infra.settings._REGISTRIES.pop(key).close()  # type: ignore[attr-defined]


def _event(url: str, **changes: Any) -> dict[str, Any]:
    event = json.loads(EVENT.read_text())
    event["ResponseURL"] = url
    event.update(changes)
    return event


def _tables(pg_admin: sa.Engine, schema: str) -> set[str]:
    return set(sa.inspect(pg_admin).get_table_names(schema=schema))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@ON_POSTGRES
def test_create_builds_the_schema_and_answers_success(handler, responses, backend, pg_admin):
    assert _tables(pg_admin, backend.schema) == set()
    event = _event(responses.url)
    result = handler.lambda_handler(event, FakeContext(300_000))

    (reply,) = responses.replies
    assert reply["Status"] == "SUCCESS", reply["Reason"]
    assert reply["PhysicalResourceId"] == handler.PHYSICAL_ID
    for key in ("StackId", "RequestId", "LogicalResourceId"):
        assert reply[key] == event[key]
    assert reply["Data"] == {"Revision": SCHEMA_REVISION} and result["Status"] == "SUCCESS"
    assert responses.headers[0].get("Content-Type", "") == ""  # the pre-signed URL is signed without one
    tables = _tables(pg_admin, backend.schema)
    assert {"alembic_version", "collection", "dataset"} <= tables
    with pg_admin.connect() as conn:
        query = f'SELECT version_num FROM "{backend.schema}".alembic_version'
        revision = conn.execute(sa.text(query)).scalar()
    assert revision == SCHEMA_REVISION


@ON_POSTGRES
def test_update_is_idempotent_and_keeps_the_physical_id(handler, responses, backend):
    handler.lambda_handler(_event(responses.url), FakeContext(300_000))
    update = _event(
        responses.url,
        RequestType="Update",
        PhysicalResourceId="isrflow-registry-schema-v0",
        OldResourceProperties={"RegistryLayerVersion": "arn:aws:lambda:us-east-1:1:layer:x:0"},
    )
    handler.lambda_handler(update, FakeContext(300_000))
    assert [r["Status"] for r in responses.replies] == ["SUCCESS", "SUCCESS"]
    assert responses.replies[1]["PhysicalResourceId"] == "isrflow-registry-schema-v0"
    assert responses.replies[1]["Data"] == {"Revision": SCHEMA_REVISION}


@ON_POSTGRES
def test_bad_registry_url_answers_failed_with_the_reason(handler, responses, monkeypatch):
    monkeypatch.setenv("ISRFLOW_REGISTRY_URL", f"postgresql+psycopg://nobody@127.0.0.1:{_closed_port()}/none")
    result = handler.lambda_handler(_event(responses.url), FakeContext(300_000))
    (reply,) = responses.replies
    assert reply["Status"] == "FAILED" and result["Status"] == "FAILED"
    assert reply["Reason"].startswith("RegistryUnavailableError: registry database unavailable")
    assert "127.0.0.1" in reply["Reason"]
    assert reply["PhysicalResourceId"] == handler.PHYSICAL_ID  # a rollback's Delete names it


@ON_POSTGRES
def test_unsupported_registry_url_answers_failed(handler, responses, monkeypatch):
    monkeypatch.setenv("ISRFLOW_REGISTRY_URL", "mysql://db.example/isrflow")
    handler.lambda_handler(_event(responses.url), FakeContext(300_000))
    (reply,) = responses.replies
    assert reply["Status"] == "FAILED" and "unsupported registry database" in reply["Reason"]


@ON_POSTGRES
def test_delete_does_nothing_and_answers_success(handler, responses, backend, pg_admin, monkeypatch):
    handler.lambda_handler(_event(responses.url), FakeContext(300_000))
    monkeypatch.setenv("ISRFLOW_REGISTRY_URL", "mysql://never.opened/x")  # Delete must not touch the registry
    delete = _event(responses.url, RequestType="Delete", PhysicalResourceId=handler.PHYSICAL_ID)
    handler.lambda_handler(delete, FakeContext(300_000))
    assert responses.replies[1]["Status"] == "SUCCESS"
    assert responses.replies[1]["PhysicalResourceId"] == handler.PHYSICAL_ID
    assert "alembic_version" in _tables(pg_admin, backend.schema)  # the registry outlives the stack


def test_an_action_still_running_before_the_timeout_answers_failed(responses):
    release = threading.Event()
    try:
        result = handle_request(
            _event(responses.url),
            FakeContext(int(REPLY_MARGIN_S * 1000) + 50),
            lambda request: release.wait(60) and {},
            default_physical_id="x",
        )
    finally:
        release.set()
    (reply,) = responses.replies
    assert reply["Status"] == "FAILED" and "before the function's timeout" in reply["Reason"]
    assert result["Status"] == "FAILED"


def test_an_undeliverable_reply_raises_so_lambda_retries(responses):
    responses.status = 403
    with pytest.raises(CustomResourceReplyError, match="403"):
        handle_request(_event(responses.url), None, lambda request: {}, default_physical_id="x")
    nowhere = _event(f"http://127.0.0.1:{_closed_port()}/r")
    with pytest.raises(CustomResourceReplyError, match="cannot deliver"):
        handle_request(nowhere, None, lambda r: {}, default_physical_id="x")


def test_invalid_requests(responses):
    event = _event(responses.url, RequestType="Replace")
    assert handle_request(event, None, lambda r: {}, default_physical_id="x")["Status"] == "FAILED"
    assert "invalid custom resource request" in responses.replies[0]["Reason"]
    with pytest.raises(ConfigError, match="no ResponseURL"):
        handle_request({"RequestType": "Create"}, None, lambda r: {}, default_physical_id="x")


def test_long_reasons_are_cut_to_fit_the_response_limit(responses):
    def fail(request):
        raise RuntimeError("x" * 10_000)

    handle_request(_event(responses.url), None, fail, default_physical_id="x")
    (reply,) = responses.replies
    assert reply["Status"] == "FAILED" and reply["Reason"].endswith("[truncated]")
    assert len(json.dumps(reply).encode()) <= MAX_RESPONSE_BYTES
