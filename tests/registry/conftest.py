"""Fixtures of the registry tests.

Every registry test runs twice: on a SQLite file and on PostgreSQL. The PostgreSQL URL is
$REGISTRY_TEST_URL or postgresql://postgres@127.0.0.1:5432/test; each test gets its own
schema (``isrflow_t<session>_<n>``), dropped afterwards. Without a server the PostgreSQL
variants are skipped, except in CI (CI=true), where a missing server fails them.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from registry_helpers import PG_URL

from isrflow.registry import Registry
from isrflow.registry.engine import normalize_url

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
_SESSION = uuid.uuid4().hex[:8]
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine]:
    """An engine on the PostgreSQL test database; skip (or fail in CI) if no server answers."""
    engine = sa.create_engine(normalize_url(PG_URL), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        message = f"PostgreSQL registry server not reachable at {PG_URL}: {type(exc).__name__}: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI=true: the PostgreSQL tests must run)", pytrace=False)
        pytest.skip(message)
    yield engine
    with engine.begin() as conn:  # leftovers of tests that crashed before their teardown
        for (name,) in conn.execute(
            sa.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": f"isrflow_t{_SESSION}_%"}
        ).all():
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
    engine.dispose()


class Backend:
    """Where one test's registry lives: URL + optional PostgreSQL schema."""

    def __init__(self, name: str, url: str, schema: str | None, datastore: Path) -> None:
        self.name = name
        self.url = url
        self.schema = schema
        self.datastore = datastore
        self._opened: list[Registry] = []

    def open(self, create: bool = False, **kwargs: Any) -> Registry:
        """Another Registry (own engine and connections) on the same database."""
        reg = Registry.open(self.url, self.datastore, schema=self.schema, create=create, **kwargs)
        self._opened.append(reg)
        return reg

    @property
    def url_with_schema(self) -> str:
        """The URL alone selects the schema too (``options=-csearch_path=...``), as handlers get it."""
        return f"{self.url}?options=-csearch_path%3D{self.schema}" if self.schema else self.url

    def env(self) -> dict[str, str]:
        """Environment variables pointing the functions (isrflow.infra.settings) at this database."""
        return {"ISRFLOW_REGISTRY_URL": self.url_with_schema}

    def close(self) -> None:
        for reg in self._opened:
            reg.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """An empty database on SQLite or PostgreSQL (parametrized)."""
    datastore = tmp_path / "datastore"
    if request.param == "sqlite":
        b = Backend("sqlite", f"sqlite:///{tmp_path / 'registry.sqlite3'}", None, datastore)
        yield b
        b.close()
        return
    admin: sa.Engine = request.getfixturevalue("pg_admin")
    schema = f"isrflow_t{_SESSION}_{next(_counter)}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    b = Backend("postgresql", PG_URL, schema, datastore)
    try:
        yield b
    finally:
        b.close()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def registry(backend: Backend) -> Registry:
    """A fresh, migrated registry on the parametrized backend."""
    return backend.open(create=True)


@pytest.fixture
def handler_module(backend: Backend, registry: Registry, monkeypatch):
    """The registry writer Lambda's module, configured for this test's registry."""
    import importlib

    from registry_helpers import REPO_ROOT

    import isrflow.infra.settings

    for key, value in backend.env().items():
        monkeypatch.setenv(key, value)
    for key in ("ISRFLOW_REGISTRY_SECRET_ARN", "ISRFLOW_REGISTRY_GIVE_UP_AFTER"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    app = importlib.import_module("functions.registry_writer.app")
    yield app
    cached = isrflow.infra.settings._REGISTRIES.pop(backend.url_with_schema, None)
    if cached is not None:
        cached.close()
