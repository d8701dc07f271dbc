"""Where a handler finds its datastore, registry queue and registry: environment variables.

Read at call time (not import time), so the local runtime can run several functions in one
worker process. Names (set by template.yaml and by the local runtime alike):

- ``ISRFLOW_DATASTORE_ROOT``: ``s3://bucket[/prefix]`` or ``file:///abs/dir``;
- ``ISRFLOW_REGISTRY_QUEUE_URL``: an SQS queue URL, or ``sqlite:///path#name`` locally;
- ``ISRFLOW_REGISTRY_URL``: an SQLAlchemy URL of the registry database, or
- ``ISRFLOW_REGISTRY_SECRET_ARN``: a Secrets Manager secret with the PostgreSQL connection
  (``username``, ``password``, ``host``, ``port``, ``dbname``), as RDS-managed secrets hold.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

from pydantic import BaseModel

from .errors import ConfigError

ENV_DATASTORE_ROOT = "ISRFLOW_DATASTORE_ROOT"
ENV_REGISTRY_QUEUE_URL = "ISRFLOW_REGISTRY_QUEUE_URL"
ENV_REGISTRY_URL = "ISRFLOW_REGISTRY_URL"
ENV_REGISTRY_SECRET_ARN = "ISRFLOW_REGISTRY_SECRET_ARN"


class Settings(BaseModel):
    datastore_root: str | None = None
    registry_queue_url: str | None = None
    registry_url: str | None = None
    registry_secret_arn: str | None = None

    def require(self, *names: str) -> "Settings":
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            env = {"datastore_root": ENV_DATASTORE_ROOT, "registry_queue_url": ENV_REGISTRY_QUEUE_URL,
                   "registry_url": f"{ENV_REGISTRY_URL} or {ENV_REGISTRY_SECRET_ARN}"}
            raise ConfigError("missing configuration: " + ", ".join(env.get(n, n) for n in missing))
        return self


def settings() -> Settings:
    """The current environment's settings."""
    return Settings(
        datastore_root=os.environ.get(ENV_DATASTORE_ROOT) or None,
        registry_queue_url=os.environ.get(ENV_REGISTRY_QUEUE_URL) or None,
        registry_url=os.environ.get(ENV_REGISTRY_URL) or None,
        registry_secret_arn=os.environ.get(ENV_REGISTRY_SECRET_ARN) or None,
    )


@lru_cache(maxsize=8)
def registry_url_from_secret(arn: str) -> str:
    """Build a psycopg URL from an RDS-style Secrets Manager secret."""
    import boto3
    from sqlalchemy.engine import URL

    secret = json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])
    return URL.create("postgresql+psycopg", username=secret["username"], password=secret["password"],
                      host=secret["host"], port=int(secret.get("port", 5432)),
                      database=secret.get("dbname", "postgres")).render_as_string(hide_password=False)


_REGISTRIES: dict[str, object] = {}


def open_registry(config: Settings | None = None):
    """The process-wide Registry for the configured URL (one engine per process, reused by warm Lambdas)."""
    from .registry import Registry

    config = config or settings()
    # the secret carries the credentials: it wins over a URL without a password
    url = registry_url_from_secret(config.registry_secret_arn) if config.registry_secret_arn else config.registry_url
    if not url:
        config.require("registry_url")
    registry = _REGISTRIES.get(url)
    if registry is None:
        registry = Registry.open(url, datastore_root=config.datastore_root)
        _REGISTRIES[url] = registry
    return registry
