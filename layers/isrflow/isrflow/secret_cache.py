"""Secrets Manager JSON secrets, cached for a bounded time.

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

from .errors import ConfigError

ENV_SECRET_MAX_AGE_S = "ISRFLOW_SECRET_MAX_AGE_S"
#: Default maximum age of a cached secret (s).
DEFAULT_MAX_AGE_S = 300.0

Fetch = Callable[[str], dict[str, Any]]


def fetch_secret(arn: str) -> dict[str, Any]:
    """The JSON object stored in a Secrets Manager secret (one GetSecretValue call)."""
    from .awsclients import aws_client

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


class SecretCache:
    """Secrets by ARN, each kept at most ``max_age_s`` seconds (None: from the environment at each use).

    ``fetch`` reads one secret (default: Secrets Manager); ``clock`` returns seconds on a
    monotonic scale. ``reads`` counts the fetches made.
    """

    def __init__(
        self,
        fetch: Fetch = fetch_secret,
        *,
        max_age_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}
        self.reads = 0

    def max_age_s(self) -> float:
        return self._max_age_s if self._max_age_s is not None else max_age_from_env()

    def get(self, arn: str) -> dict[str, Any]:
        """The secret, read again if the cached copy is older than the maximum age."""
        max_age = self.max_age_s()
        with self._lock:
            entry = self._entries.get(arn)
            if entry is not None and self._clock() - entry[0] < max_age:
                return entry[1]
            return self._read(arn)

    def refresh(self, arn: str) -> dict[str, Any]:
        """Read the secret again now, whatever the cached copy's age."""
        with self._lock:
            return self._read(arn)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _read(self, arn: str) -> dict[str, Any]:
        value = self._fetch(arn)
        self.reads += 1
        self._entries[arn] = (self._clock(), value)
        return value
