"""The migrate Lambda sets up the least-privilege roles from their secrets, and rotates a role's
secret (Secrets Manager's four steps): real PostgreSQL (own schema, own role names), moto's
Secrets Manager, the custom resource answering a local HTTP server."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Iterator

import boto3
import pytest
import sqlalchemy as sa
from moto import mock_aws
from registry_helpers import REPO_ROOT
from test_migrate_handler import FakeContext, ResponseServer, _event

import isrflow.infra.settings
from isrflow.registry.rotation import RotationError, is_rotation_event
from isrflow.registry.scram import verifier_matches
from tests.fake_aws import use_fake_aws

ON_POSTGRES = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


@pytest.fixture
def secrets(backend, pg_admin, monkeypatch) -> Iterator[dict]:
    """moto Secrets Manager with a writer and a reader role secret (unique role names, dropped afterwards)."""
    use_fake_aws(monkeypatch)
    monkeypatch.delenv("ISRFLOW_AWS_ENDPOINT_URL", raising=False)
    tag = uuid.uuid4().hex[:8]
    names = {"writer": f"isrflow_t{tag}_writer", "reader": f"isrflow_t{tag}_reader"}
    isrflow.infra.settings.SECRETS.clear()
    with mock_aws():
        client = boto3.client("secretsmanager")
        arns = {
            access: client.create_secret(
                Name=f"registry-{access}",
                SecretString=json.dumps({"username": name, "password": f"first-{access}", "access": access}),
            )["ARN"]
            for access, name in names.items()
        }
        monkeypatch.setenv("ISRFLOW_REGISTRY_URL", backend.url_with_schema)
        monkeypatch.delenv("ISRFLOW_REGISTRY_SECRET_ARN", raising=False)
        monkeypatch.setenv("ISRFLOW_REGISTRY_WRITER_SECRET_ARN", arns["writer"])
        monkeypatch.setenv("ISRFLOW_REGISTRY_READER_SECRET_ARN", arns["reader"])
        yield {"client": client, "arns": arns, "names": names}
    isrflow.infra.settings.SECRETS.clear()
    for key in [k for k in isrflow.infra.settings._REGISTRIES if backend.schema and backend.schema in k]:
        isrflow.infra.settings._REGISTRIES.pop(key).close()  # type: ignore[attr-defined]
    with pg_admin.begin() as conn:
        for name in names.values():
            if conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).scalar():
                conn.exec_driver_sql(f'DROP OWNED BY "{name}"')
                conn.exec_driver_sql(f'DROP ROLE "{name}"')


@pytest.fixture
def handler(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return importlib.import_module("functions.migrate.app")


def _stored(pg_admin: sa.Engine, name: str) -> str | None:
    with pg_admin.connect() as conn:
        return conn.execute(
            sa.text("SELECT rolpassword FROM pg_authid WHERE rolname = :n"), {"n": name}
        ).scalar()


@ON_POSTGRES
def test_the_migration_creates_a_role_per_secret(handler, secrets, pg_admin):
    responses = ResponseServer()
    try:
        handler.lambda_handler(_event(responses.url), FakeContext(300_000))
    finally:
        responses.close()
    (reply,) = responses.replies
    assert reply["Status"] == "SUCCESS", reply.get("Reason")
    for access, name in secrets["names"].items():
        assert verifier_matches(_stored(pg_admin, name) or "", f"first-{access}")
    with pg_admin.connect() as conn:
        grants = conn.execute(
            sa.text(
                "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
                "WHERE table_name = 'dataset' AND grantee IN (:w, :r)"
            ),
            {"w": secrets["names"]["writer"], "r": secrets["names"]["reader"]},
        ).all()
    assert {(g, p) for g, p in grants} == {
        (secrets["names"]["writer"], "SELECT"),
        (secrets["names"]["writer"], "INSERT"),
        (secrets["names"]["writer"], "UPDATE"),
        (secrets["names"]["reader"], "SELECT"),
    }


@ON_POSTGRES
def test_rotation_sets_a_new_password_and_makes_it_current(handler, registry, secrets, pg_admin):
    client, arn, name = secrets["client"], secrets["arns"]["writer"], secrets["names"]["writer"]
    token = str(uuid.uuid4())
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        event = {"SecretId": arn, "ClientRequestToken": token, "Step": step}
        assert is_rotation_event(event)
        assert handler.lambda_handler(event, None) == {"Step": step}
        if step == "createSecret":  # a retried step changes nothing
            pending = client.get_secret_value(SecretId=arn, VersionStage="AWSPENDING")["SecretString"]
            handler.lambda_handler(event, None)
            assert client.get_secret_value(SecretId=arn, VersionStage="AWSPENDING")["SecretString"] == pending
    # (named stage: moto's unnamed read keeps returning the first version after a stage move)
    current = json.loads(client.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"])
    assert current["username"] == name and current["access"] == "writer"
    assert current["password"] != "first-writer" and len(current["password"]) >= 32
    assert verifier_matches(_stored(pg_admin, name) or "", current["password"])
    stages = client.describe_secret(SecretId=arn)["VersionIdsToStages"]
    assert "AWSCURRENT" in stages[token]


@ON_POSTGRES
def test_a_step_without_its_pending_version_fails(handler, registry, secrets):
    event = {
        "SecretId": secrets["arns"]["reader"],
        "ClientRequestToken": str(uuid.uuid4()),
        "Step": "setSecret",
    }
    with pytest.raises(RotationError, match="no AWSPENDING version"):
        handler.lambda_handler(event, None)
    with pytest.raises(RotationError, match="unknown rotation step"):
        handler.lambda_handler({**event, "Step": "dropEverything"}, None)
