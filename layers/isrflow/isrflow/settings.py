"""Where a handler finds its datastore, registry queue and registry: environment variables.

Read at call time (not import time), so the local runtime can run several functions in one
worker process. Names (set by template.yaml and by the local runtime alike):

- ``ISRFLOW_DATASTORE_ROOT``: ``s3://bucket[/prefix]`` or ``file:///abs/dir``;
- ``ISRFLOW_REGISTRY_QUEUE_URL``: an SQS queue URL, or ``sqlite:///path#name`` locally;
- ``ISRFLOW_REGISTRY_URL``: an SQLAlchemy URL of the registry database, and/or
- ``ISRFLOW_REGISTRY_SECRET_ARN``: a Secrets Manager secret with its credentials (an
  RDS-managed secret: ``username`` and ``password``; others may add ``host``, ``port``,
  ``dbname``), merged into the URL by :func:`registry_url`.
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
def _secret(arn: str) -> dict:
    import boto3

    return json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])


def registry_url(config: Settings) -> str:
    """The registry's SQLAlchemy URL.

    With only a URL: that URL. With a secret: its credentials (``username``, ``password``) go
    into the URL; an RDS-managed secret holds only those, so host, port and database come from
    the URL when one is set, else from the secret's ``host``, ``port``, ``dbname``.
    """
    from sqlalchemy.engine import make_url

    if not config.registry_secret_arn:
        if not config.registry_url:
            config.require("registry_url")
        return config.registry_url  # type: ignore[return-value]
    secret = _secret(config.registry_secret_arn)
    if config.registry_url:
        url = make_url(config.registry_url)
    else:
        from sqlalchemy.engine import URL

        url = URL.create("postgresql+psycopg", host=secret["host"], port=int(secret.get("port", 5432)),
                         database=secret.get("dbname", "postgres"))
    url = url.set(username=secret["username"], password=secret["password"])
    return url.render_as_string(hide_password=False)


_REGISTRIES: dict[str, object] = {}


def open_registry(config: Settings | None = None):
    """The process-wide Registry for the configured URL (one engine per process, reused by warm Lambdas)."""
    from .registry import Registry

    config = config or settings()
    url = registry_url(config)
    registry = _REGISTRIES.get(url)
    if registry is None:
        registry = Registry.open(url, datastore_root=config.datastore_root)
        _REGISTRIES[url] = registry
    return registry
