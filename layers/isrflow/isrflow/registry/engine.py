"""Engines for the two supported databases, transactions and locks.

- SQLite (embedded default): a file in WAL mode, foreign keys on, a 30 s busy timeout. The
  driver's own transaction handling is turned off and SQLAlchemy emits ``BEGIN`` itself:
  read transactions use ``BEGIN`` (deferred), write transactions ``BEGIN IMMEDIATE``, which
  takes SQLite's single write lock up front, so writers are serialised and a read-then-write
  transaction can never fail half way with a stale snapshot.
- PostgreSQL (cloud registry) through psycopg 3. ``postgresql://`` URLs are rewritten to
  ``postgresql+psycopg://``. A schema can be selected with ``schema=`` (sets ``search_path``).
  Certification takes a transaction-level advisory lock per collection.
- Credentials that rotate (a Secrets Manager secret): a :class:`ConnectCredentials` gives the
  user name and password of every new connection; when PostgreSQL rejects the password, they
  are re-read once and the connection is retried once (:func:`is_authentication_failure`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from isrflow.model.errors import RegistryError, RegistryUnavailableError

_WRITE = "isrflow_write"


def normalize_url(url: str | URL) -> URL:
    """Parse a registry URL; plain ``postgresql://``/``postgres://`` get the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise RegistryError(f"invalid registry URL {str(url)!r}: {exc}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise RegistryError(
            f"unsupported registry database {parsed.drivername!r}: use sqlite:/// or postgresql://"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise RegistryError("the registry needs a SQLite file (sqlite:///path), not an in-memory database")
    return parsed


class ConnectCredentials(Protocol):
    """The user name and password of new connections (a rotating secret)."""

    def current(self) -> tuple[str, str]:
        """The credentials to connect with now (may come from a cache)."""
        ...

    def refreshed(self) -> tuple[str, str]:
        """The credentials read again from their source (after the server rejected the current ones)."""
        ...


def is_authentication_failure(exc: BaseException) -> bool:
    """Whether a connection error is PostgreSQL rejecting the password ("password authentication failed")."""
    return "password authentication failed" in str(exc)


def _connect_with(credentials: ConnectCredentials) -> Callable[..., Any]:
    """A ``do_connect`` hook: connect with the current credentials; on an authentication
    failure re-read them once and try once more."""

    def connect(dialect: Any, connection_record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
        cparams["user"], cparams["password"] = credentials.current()
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError as exc:
            if not is_authentication_failure(exc):
                raise
        cparams["user"], cparams["password"] = credentials.refreshed()
        return dialect.connect(*cargs, **cparams)

    return connect


def create_registry_engine(
    url: str | URL,
    *,
    schema: str | None = None,
    pool_size: int = 5,
    credentials: ConnectCredentials | None = None,
) -> Engine:
    """An engine for a registry URL with the settings above.

    ``credentials`` (PostgreSQL only) supply the user name and password of each new
    connection instead of the URL's.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        if credentials is not None:
            raise RegistryError("credentials from a secret need a PostgreSQL registry, not SQLite")
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    connect_args: dict[str, object] = {"connect_timeout": 10}
    if schema:
        if not schema.replace("_", "").isalnum():
            raise RegistryError(f"invalid schema name {schema!r}")
        connect_args["options"] = f"-csearch_path={schema}"
    engine = sa.create_engine(
        parsed, connect_args=connect_args, pool_size=pool_size, max_overflow=2, pool_pre_ping=True
    )
    if credentials is not None:
        event.listen(engine, "do_connect", _connect_with(credentials))
    return engine


def _sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def is_postgres(conn: Connection | Engine) -> bool:
    return conn.dialect.name == "postgresql"


def _unavailable(exc: Exception) -> bool:
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)) or (
        isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
    )


@contextmanager
def transaction(engine: Engine, *, write: bool) -> Iterator[Connection]:
    """One transaction on its own connection; commits on success, rolls back on any error.

    Connection-level failures (server down, connection lost, SQLite locked past the timeout)
    are raised as RegistryUnavailableError: the caller should retry the whole operation.
    """
    try:
        with engine.connect() as conn:
            if write:
                conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn
    except sa.exc.DBAPIError as exc:
        if _unavailable(exc):
            raise RegistryUnavailableError(f"registry database unavailable: {exc.orig or exc}") from exc
        raise


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock`` derived from a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def lock(conn: Connection, name: str) -> None:
    """Take the named write lock until the end of the transaction.

    PostgreSQL: ``pg_advisory_xact_lock``. SQLite: nothing to do, write transactions already
    hold the database write lock (``BEGIN IMMEDIATE``).
    """
    if is_postgres(conn):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(name)})
    elif not conn.get_execution_options().get(_WRITE):
        raise RegistryError("internal: lock() needs a write transaction")


def check_schema(engine: Engine, schema: str | None, *, create: bool) -> None:
    """PostgreSQL: make sure the connections' search_path selects an existing schema.

    ``schema`` (the one ``create_registry_engine`` was given, or None when the URL's
    ``options=-csearch_path=...`` selects it) is created when missing and ``create`` is true;
    otherwise a missing schema is one RegistryError naming it, instead of a migration
    traceback. SQLite: nothing to do.
    """
    if engine.dialect.name != "postgresql":
        return
    where = engine.url.render_as_string(hide_password=True)
    try:
        with transaction(engine, write=True) as conn:
            if (
                create
                and schema
                and conn.execute(sa.text("SELECT to_regnamespace(:s)"), {"s": schema}).scalar() is None
            ):
                conn.exec_driver_sql(
                    f"CREATE SCHEMA {schema}"
                )  # a checked identifier (create_registry_engine)
            current = conn.execute(sa.text("SELECT current_schema()")).scalar()
    except sa.exc.ProgrammingError as exc:
        raise RegistryError(
            f"cannot create PostgreSQL schema {schema!r} in {where}: {str(exc.orig or exc).splitlines()[0]}"
        ) from None
    if current is None:
        named = f"schema {schema!r}" if schema else "the search_path schema"
        raise RegistryError(
            f"PostgreSQL {named} does not exist in {where}: create it first "
            f"(`isrflow repo create --schema` creates it)"
        )
