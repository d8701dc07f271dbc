"""Where a handler finds its datastore, registry queue and registry: environment variables.

Read at call time (not import time), so the local runtime can run several functions in one
worker process. Names (set by template.yaml and by the local runtime alike):

- ``ISRFLOW_DATASTORE_ROOT``: ``s3://bucket[/prefix]`` or ``file:///abs/dir``;
- ``ISRFLOW_REGISTRY_QUEUE_URL``: an SQS queue URL, or ``sqlite:///path#name`` locally;
- ``ISRFLOW_REGISTRY_URL``: an SQLAlchemy URL of the registry database, and/or
- ``ISRFLOW_REGISTRY_SECRET_ARN``: a Secrets Manager secret with its credentials (an
  RDS-managed secret: ``username`` and ``password``; others may add ``host``, ``port``,
  ``dbname``), merged into the URL by :func:`registry_url`. The secret is cached for
  ``ISRFLOW_SECRET_MAX_AGE_S`` seconds (default 300; :mod:`isrflow.infra.secret_cache`) and re-read
  when the database rejects its password, because RDS rotates it.

TLS: a URL built from a secret's ``host`` asks for ``sslmode=require`` unless the secret says
otherwise; a secret's ``sslmode`` / ``sslrootcert`` fields (``verify-full`` with the RDS CA
bundle, say) are added to a URL that does not set them itself. The stack's own URLs carry
``sslmode=require`` and its database refuses clear-text connections (``rds.force_ssl``).

The migration step also reads ``ISRFLOW_REGISTRY_WRITER_SECRET_ARN`` and
``ISRFLOW_REGISTRY_READER_SECRET_ARN``: the secrets of the least-privilege database roles it
creates (:func:`registry_roles`, :mod:`isrflow.registry.roles`); the functions are given those
secrets, never the master's.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel

from isrflow.infra.secret_cache import SecretCache
from isrflow.model.errors import ConfigError

ENV_DATASTORE_ROOT = "ISRFLOW_DATASTORE_ROOT"
ENV_REGISTRY_QUEUE_URL = "ISRFLOW_REGISTRY_QUEUE_URL"
ENV_REGISTRY_URL = "ISRFLOW_REGISTRY_URL"
ENV_REGISTRY_SECRET_ARN = "ISRFLOW_REGISTRY_SECRET_ARN"
#: How products (postISRCCD and every dataset ISR writes, master calibrations) are compressed:
#: ``quantized`` (default), ``lossless`` or ``none`` (:mod:`isrflow.io.compression`).
ENV_COMPRESSION = "ISRFLOW_COMPRESSION"
ENV_REGISTRY_WRITER_SECRET_ARN = "ISRFLOW_REGISTRY_WRITER_SECRET_ARN"
ENV_REGISTRY_READER_SECRET_ARN = "ISRFLOW_REGISTRY_READER_SECRET_ARN"
#: libpq TLS parameters a secret may carry (added to a URL that does not set them).
SECRET_TLS_KEYS = ("sslmode", "sslrootcert")
#: The TLS mode of a URL built from a secret's host when the secret names none.
DEFAULT_SECRET_SSLMODE = "require"


class Settings(BaseModel):
    datastore_root: str | None = None
    registry_queue_url: str | None = None
    registry_url: str | None = None
    registry_secret_arn: str | None = None

    def require(self, *names: str) -> Settings:
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            env = {
                "datastore_root": ENV_DATASTORE_ROOT,
                "registry_queue_url": ENV_REGISTRY_QUEUE_URL,
                "registry_url": f"{ENV_REGISTRY_URL} or {ENV_REGISTRY_SECRET_ARN}",
            }
            raise ConfigError("missing configuration: " + ", ".join(env.get(n, n) for n in missing))
        return self

    def required(self, name: Literal["datastore_root", "registry_queue_url"]) -> str:
        """The value of one setting, or ConfigError (as :meth:`require`) when it is unset."""
        value = getattr(self.require(name), name)
        assert isinstance(value, str)  # require() raised otherwise
        return value


def settings() -> Settings:
    """The current environment's settings."""
    return Settings(
        datastore_root=os.environ.get(ENV_DATASTORE_ROOT) or None,
        registry_queue_url=os.environ.get(ENV_REGISTRY_QUEUE_URL) or None,
        registry_url=os.environ.get(ENV_REGISTRY_URL) or None,
        registry_secret_arn=os.environ.get(ENV_REGISTRY_SECRET_ARN) or None,
    )


def compression_mode() -> str:
    """The product compression mode named by ``ISRFLOW_COMPRESSION`` (default ``quantized``);
    ConfigError for another value. Read at call time, like every setting here."""
    from isrflow.io.compression import DEFAULT_MODE, MODES

    mode = (os.environ.get(ENV_COMPRESSION) or DEFAULT_MODE).strip().lower()
    if mode not in MODES:
        raise ConfigError(
            f"{ENV_COMPRESSION}={os.environ.get(ENV_COMPRESSION)!r}: use one of {', '.join(MODES)}"
        )
    return mode


#: The process's registry secrets, each re-read after ``ISRFLOW_SECRET_MAX_AGE_S`` (default 300 s)
#: and when the database rejects its password (:class:`SecretCredentials`).
SECRETS = SecretCache()


def _credentials(secret: dict, arn: str) -> tuple[str, str]:
    try:
        return str(secret["username"]), str(secret["password"])
    except KeyError as exc:
        raise ConfigError(f"registry secret {arn} has no {exc.args[0]!r} field") from None


def _secret_url(config: Settings, secret: dict):
    """The registry URL of a secret-configured registry, with the secret's user name, without password."""
    from sqlalchemy.engine import URL, make_url

    if config.registry_url:
        url = make_url(config.registry_url)
    else:
        try:
            url = URL.create(
                "postgresql+psycopg",
                host=secret["host"],
                port=int(secret.get("port", 5432)),
                database=secret.get("dbname", "postgres"),
            )
        except KeyError:
            raise ConfigError(
                f"registry secret {config.registry_secret_arn} has no 'host': set {ENV_REGISTRY_URL} too"
            ) from None
        url = url.update_query_dict({"sslmode": str(secret.get("sslmode") or DEFAULT_SECRET_SSLMODE)})
    if url.get_backend_name() == "postgresql":
        tls = {k: str(secret[k]) for k in SECRET_TLS_KEYS if secret.get(k) and k not in url.query}
        if tls:
            url = url.update_query_dict(tls)
    username, _ = _credentials(secret, str(config.registry_secret_arn))
    return url.set(username=username, password=None)


class SecretCredentials:
    """The user name and password in a registry secret, for each new database connection
    (:class:`isrflow.registry.engine.ConnectCredentials`)."""

    def __init__(self, arn: str, cache: SecretCache | None = None) -> None:
        self.arn = arn
        self.cache = cache if cache is not None else SECRETS

    def current(self) -> tuple[str, str]:
        return _credentials(self.cache.get(self.arn), self.arn)

    def refreshed(self) -> tuple[str, str]:
        return _credentials(self.cache.refresh(self.arn), self.arn)


def registry_url(config: Settings) -> str:
    """The registry's SQLAlchemy URL, password included.

    With only a URL: that URL. With a secret: its credentials (``username``, ``password``) go
    into the URL; an RDS-managed secret holds only those, so host, port and database come from
    the URL when one is set, else from the secret's ``host``, ``port``, ``dbname``.
    """
    if not config.registry_secret_arn:
        if not config.registry_url:
            config.require("registry_url")
        return config.registry_url  # type: ignore[return-value]
    secret = SECRETS.get(config.registry_secret_arn)
    _, password = _credentials(secret, config.registry_secret_arn)
    return _secret_url(config, secret).set(password=password).render_as_string(hide_password=False)


_REGISTRIES: dict[str, object] = {}


def open_registry(config: Settings | None = None, *, create: bool = False):
    """The process-wide Registry for the configured URL (one engine per process, reused by warm Lambdas).

    With a secret, every new connection takes the secret's current credentials (re-read
    after their maximum age, and once when the database rejects the password), so a warm
    Lambda survives a rotation. ``create=True`` creates the schema in an empty database.
    """
    from isrflow.registry import Registry

    config = config or settings()
    credentials = None
    if config.registry_secret_arn:
        parsed = _secret_url(config, SECRETS.get(config.registry_secret_arn))
        url = parsed.render_as_string(hide_password=False)
        # Keyed without the user name: a rotation that alternates users keeps the same engine.
        key = f"{parsed.set(username=None).render_as_string()}#secret={config.registry_secret_arn}"
        credentials = SecretCredentials(config.registry_secret_arn)
    else:
        url = key = registry_url(config)
    registry = _REGISTRIES.get(key)
    if registry is None:
        registry = Registry.open(
            url, datastore_root=config.datastore_root, create=create, credentials=credentials
        )
        _REGISTRIES[key] = registry
    return registry


def registry_roles(cache: SecretCache | None = None) -> list:
    """The least-privilege roles the migration step sets up: one RoleSpec per configured role secret
    (``ISRFLOW_REGISTRY_WRITER_SECRET_ARN``, ``ISRFLOW_REGISTRY_READER_SECRET_ARN``; unset = none)."""
    from isrflow.registry.roles import role_from_secret

    cache = cache if cache is not None else SECRETS
    roles = []
    for env, access in (
        (ENV_REGISTRY_WRITER_SECRET_ARN, "writer"),
        (ENV_REGISTRY_READER_SECRET_ARN, "reader"),
    ):
        arn = os.environ.get(env, "").strip()
        if arn:
            roles.append(role_from_secret(cache.get(arn), arn, access))
    return roles
