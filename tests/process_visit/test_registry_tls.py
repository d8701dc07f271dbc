"""TLS to the registry: how the URL is built from a secret (sslmode / sslrootcert), and the role
secrets the migration step reads (moto Secrets Manager)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from sqlalchemy.engine import make_url

from isrflow.infra.settings import SECRETS, Settings, registry_roles, registry_url
from isrflow.model.errors import ConfigError
from tests.fake_aws import use_fake_aws


@pytest.fixture
def make_secret(monkeypatch):
    use_fake_aws(monkeypatch)
    monkeypatch.delenv("ISRFLOW_AWS_ENDPOINT_URL", raising=False)
    SECRETS.clear()
    with mock_aws():
        client = boto3.client("secretsmanager")
        names = iter(range(100))
        yield lambda value: client.create_secret(Name=f"s{next(names)}", SecretString=json.dumps(value))[
            "ARN"
        ]
    SECRETS.clear()


def _query(url: str) -> dict:
    return dict(make_url(url).query)


def test_a_url_built_from_the_secrets_host_requires_tls(make_secret):
    arn = make_secret(
        {"username": "u", "password": "pw", "host": "db.example", "port": 5432, "dbname": "reg"}
    )
    assert _query(registry_url(Settings(registry_secret_arn=arn))) == {"sslmode": "require"}


def test_the_secret_can_ask_for_verify_full_with_the_rds_ca_bundle(make_secret):
    arn = make_secret(
        {
            "username": "u",
            "password": "pw",
            "host": "db.example",
            "sslmode": "verify-full",
            "sslrootcert": "/opt/rds/global-bundle.pem",
        }
    )
    assert _query(registry_url(Settings(registry_secret_arn=arn))) == {
        "sslmode": "verify-full",
        "sslrootcert": "/opt/rds/global-bundle.pem",
    }


def test_the_secrets_tls_fields_complete_a_url_that_sets_none(make_secret):
    arn = make_secret({"username": "isrflow_reader", "password": "pw", "sslmode": "require"})
    url = registry_url(
        Settings(registry_url="postgresql+psycopg://rds.host:5432/isrflow", registry_secret_arn=arn)
    )
    assert _query(url) == {"sslmode": "require"} and make_url(url).username == "isrflow_reader"
    # the URL's own setting wins
    explicit = "postgresql+psycopg://rds.host:5432/isrflow?sslmode=verify-full"
    assert _query(registry_url(Settings(registry_url=explicit, registry_secret_arn=arn))) == {
        "sslmode": "verify-full"
    }
    # a secret without TLS fields leaves the URL as it is (the local stand-ins have no TLS)
    plain = make_secret({"username": "u", "password": "pw"})
    local = "postgresql+psycopg://127.0.0.1:5432/test"
    assert _query(registry_url(Settings(registry_url=local, registry_secret_arn=plain))) == {}


def test_the_migration_reads_one_role_per_configured_secret(make_secret, monkeypatch):
    writer = make_secret({"username": "isrflow_writer", "password": "w", "access": "writer"})
    reader = make_secret({"username": "isrflow_reader", "password": "r"})
    monkeypatch.delenv("ISRFLOW_REGISTRY_READER_SECRET_ARN", raising=False)
    monkeypatch.delenv("ISRFLOW_REGISTRY_WRITER_SECRET_ARN", raising=False)
    assert registry_roles() == []
    monkeypatch.setenv("ISRFLOW_REGISTRY_WRITER_SECRET_ARN", writer)
    monkeypatch.setenv("ISRFLOW_REGISTRY_READER_SECRET_ARN", reader)
    roles = registry_roles()
    assert [(r.name, r.access, r.password) for r in roles] == [
        ("isrflow_writer", "writer", "w"),
        ("isrflow_reader", "reader", "r"),
    ]
    monkeypatch.setenv("ISRFLOW_REGISTRY_READER_SECRET_ARN", make_secret({"password": "x"}))
    with pytest.raises(ConfigError, match="no 'username' field"):
        registry_roles()
