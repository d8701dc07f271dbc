"""Handler configuration: registry URL from the URL, the secret, or both (moto Secrets Manager)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from isrflow.infra.settings import SECRETS, Settings, registry_url
from isrflow.model.errors import ConfigError
from tests.fake_aws import use_fake_aws


@pytest.fixture
def secret_arn(monkeypatch):
    use_fake_aws(monkeypatch)
    SECRETS.clear()
    with mock_aws():
        client = boto3.client("secretsmanager")
        arn = client.create_secret(
            Name="rds", SecretString=json.dumps({"username": "isr", "password": "p@ss"})
        )["ARN"]
        full = client.create_secret(
            Name="full",
            SecretString=json.dumps(
                {"username": "u", "password": "pw", "host": "db.example", "port": 6543, "dbname": "reg"}
            ),
        )["ARN"]
        yield arn, full
    SECRETS.clear()


def test_url_only():
    assert registry_url(Settings(registry_url="sqlite:///x.db")) == "sqlite:///x.db"


def test_nothing_configured_is_a_clear_error():
    with pytest.raises(ConfigError, match="ISRFLOW_REGISTRY_URL"):
        registry_url(Settings())


def test_rds_managed_secret_fills_the_credentials_of_the_url(secret_arn):
    arn, _ = secret_arn
    url = registry_url(
        Settings(registry_url="postgresql+psycopg://rds.host:5432/isrflow", registry_secret_arn=arn)
    )
    assert url == "postgresql+psycopg://isr:p%40ss@rds.host:5432/isrflow"


def test_secret_with_connection_alone(secret_arn):
    _, full = secret_arn
    # built from the secret's host: TLS required (the secret names no other sslmode)
    assert (
        registry_url(Settings(registry_secret_arn=full))
        == "postgresql+psycopg://u:pw@db.example:6543/reg?sslmode=require"
    )
