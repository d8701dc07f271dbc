"""Secrets Manager JSON secrets, cached for a bounded time (Powertools Parameters' cache).

The registry's credentials live in a secret that can rotate (the RDS-managed master secret
rotates every 7 days by default). A warm Lambda must therefore not keep a secret forever:

- a cached secret older than ``max_age_s`` seconds is read again on its next use
  (``ISRFLOW_SECRET_MAX_AGE_S``, default 300 s; 0 re-reads on every use);
- :meth:`SecretCache.refresh` re-reads one at once (the registry engine calls it when the
  database rejects the cached password, see :mod:`isrflow.registry.engine`).

Ages are measured on an injectable monotonic clock, in seconds.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.parameters.base import BaseProvider, ExpirableValue
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from isrflow.model.errors import ConfigError

ENV_SECRET_MAX_AGE_S = "ISRFLOW_SECRET_MAX_AGE_S"
#: Default maximum age of a cached secret (s).
DEFAULT_MAX_AGE_S = 300.0

Fetch = Callable[[str], dict[str, Any]]


def fetch_secret(arn: str) -> dict[str, Any]:
    """The JSON object stored in a Secrets Manager secret (one GetSecretValue call)."""
    from isrflow.infra.aws_clients import aws_client

    text = aws_client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"secret {arn} does not hold JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"secret {arn} holds JSON {type(value).__name__}, not an object")
    return value


def max_age_from_env() -> float:
    """``ISRFLOW_SECRET_MAX_AGE_S`` in seconds (default 300)."""
    raw = os.environ.get(ENV_SECRET_MAX_AGE_S, "").strip()
    if not raw:
        return DEFAULT_MAX_AGE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"{ENV_SECRET_MAX_AGE_S}={raw!r}: expected a number of seconds >= 0")
    return value


class _SecretStore(BaseProvider):
    """Powertools' parameter-provider cache over ``fetch``. Ages are on ``clock`` (monotonic s)
    instead of the wall clock, so that a clock step cannot keep a secret; an entry keeps the time
    it was read (in ``ExpirableValue.ttl``) and is judged against the maximum age of each use
    (``max_age_s``), so lowering the setting applies to secrets already cached."""

    def __init__(self, fetch: Fetch, clock: Callable[[], float]) -> None:
        super().__init__()
        self._fetch = fetch
        self._clock = clock
        self.reads = 0
        self.max_age_s = 0.0

    def _get(self, name: str, **sdk_options: Any) -> dict[str, Any]:
        value = self._fetch(name)
        self.reads += 1
        return value

    def _get_multiple(self, path: str, **sdk_options: Any) -> dict[str, str]:
        raise NotImplementedError("secrets are read one by one")

    def has_not_expired_in_cache(self, key: tuple) -> bool:
        return key in self.store and self._clock() - self.store[key].ttl < self.max_age_s  # type: ignore[operator]

    def add_to_cache(self, key: tuple, value: Any, max_age: int) -> None:
        if max_age > 0:
            self.store[key] = ExpirableValue(value, self._clock())  # type: ignore[arg-type]

    def clear_cache(self) -> None:
        self.store.clear()


class SecretCache:
    """Secrets by ARN, each kept at most ``max_age_s`` seconds (None: from the environment at each use).

    The caching is Powertools' Parameters (a :class:`BaseProvider` ``get`` with ``max_age`` and
    ``force_fetch``). ``fetch`` reads one secret (default: Secrets Manager, through
    :mod:`isrflow.infra.aws_clients` so a test endpoint applies); ``clock`` returns seconds on a
    monotonic scale. ``reads`` counts the fetches made. A fetch error is raised as it was
    raised (not as Powertools' ``GetParameterError``), e.g. :class:`ConfigError` for a secret
    that is not a JSON object.
    """

    def __init__(
        self,
        fetch: Fetch = fetch_secret,
        *,
        max_age_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._store = _SecretStore(fetch, clock)

    @property
    def reads(self) -> int:
        return self._store.reads

    def max_age_s(self) -> float:
        return self._max_age_s if self._max_age_s is not None else max_age_from_env()

    def get(self, arn: str) -> dict[str, Any]:
        """The secret, read again if the cached copy is older than the maximum age."""
        return self._read(arn, force=False)

    def refresh(self, arn: str) -> dict[str, Any]:
        """Read the secret again now, whatever the cached copy's age."""
        return self._read(arn, force=True)

    def clear(self) -> None:
        with self._lock:
            self._store.clear_cache()

    def _read(self, arn: str, *, force: bool) -> dict[str, Any]:
        max_age = self.max_age_s()
        with self._lock:
            self._store.max_age_s = max_age
            try:
                return self._store.get(arn, max_age=max_age, force_fetch=force)  # type: ignore[arg-type,return-value]
            except GetParameterError as exc:
                raise (exc.__context__ or exc) from None
