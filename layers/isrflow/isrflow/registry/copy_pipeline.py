"""Write statements sent to PostgreSQL without waiting for each one (psycopg pipeline mode).

The batch writer's bulk INSERTs (datasets, provenance, processing records, bookkeeping) return
nothing it needs, so :class:`Sender` sends them in psycopg's pipeline mode on the transaction's
own connection: the server executes one while the writer builds the next statement's arrays,
and the writer waits once, in :meth:`Sender.drain`, instead of once per statement. Lookups the
writer needs together (:meth:`Sender.select_all`) go the same way: one round trip for all. The writer
drains before anything that reads or writes through SQLAlchemy, before its test hooks, before
committing and before ending a trial transaction, so every statement still runs in the batch's
one transaction, in the order it was sent, and any error of theirs (a poison value) is raised
before the batch could commit.

Errors are raised as SQLAlchemy would raise them (``sa.exc.DataError``, ``IntegrityError``,
``OperationalError``, ...), so the writer's poison search and the "registry unavailable"
handling treat them exactly like errors of statements executed through SQLAlchemy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def supported() -> bool:
    """Whether psycopg can pipeline here (libpq 14 or later; the binary wheel bundles one)."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite-only installations
        return False
    return bool(psycopg.Pipeline.is_supported())


class Sender:
    """Pipelined statements on one SQLAlchemy connection's psycopg connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._raw: Any = conn.connection.driver_connection
        self._pipeline: Any = None
        self._cursor: Any = None
        self._last: tuple[str, Any] = ("", None)

    def send(self, sql: str, params: tuple[Any, ...]) -> None:
        """Send one statement; its result (and any error) is collected by :meth:`drain`."""
        self._execute(None, sql, params)

    def select_all(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> list[list[Any]]:
        """Run SELECT statements in one round trip (after the statements sent before): each one's
        rows, as named tuples (the columns' names as attributes), in the order given."""
        from psycopg.rows import namedtuple_row

        cursors = []
        try:
            for sql, params in statements:
                cursor = self._raw.cursor(row_factory=namedtuple_row)
                cursors.append(cursor)
                self._execute(cursor, sql, params)
            self.drain()
            return [cursor.fetchall() for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()

    def _execute(self, cursor: Any, sql: str, params: tuple[Any, ...]) -> None:
        import psycopg

        if self._pipeline is None:
            self._pipeline = self._raw.pipeline()
            self._pipeline.__enter__()
            self._cursor = self._raw.cursor()
        self._last = (sql, params)
        try:
            (cursor or self._cursor).execute(sql, params)
        except psycopg.Error as exc:
            self.close()
            raise self._wrapped(exc) from exc
        except BaseException:
            self.close()
            raise

    def drain(self) -> None:
        """Wait for every statement sent so far; raise the first error among them."""
        import psycopg

        if self._pipeline is None:
            return
        pipeline, cursor = self._pipeline, self._cursor
        self._pipeline = self._cursor = None
        try:
            pipeline.__exit__(None, None, None)
        except psycopg.Error as exc:
            raise self._wrapped(exc) from exc
        finally:
            cursor.close()

    def close(self) -> None:
        """Leave pipeline mode discarding results and errors (the transaction is being rolled
        back anyway: an error already propagates)."""
        if self._pipeline is None:
            return
        pipeline, cursor = self._pipeline, self._cursor
        self._pipeline = self._cursor = None
        abandoned = RuntimeError("batch abandoned")
        try:  # with an exception given, psycopg syncs, leaves pipeline mode and logs (not raises) errors
            pipeline.__exit__(RuntimeError, abandoned, None)
        except Exception:
            pass
        finally:
            with contextlib.suppress(Exception):
                cursor.close()

    def _wrapped(self, exc: BaseException) -> BaseException:
        import psycopg

        broken = bool(getattr(self._raw, "broken", False) or self._raw.closed)
        if broken:
            self._conn.invalidate(exc)
        sql = self._last[0]
        return sa.exc.DBAPIError.instance(
            sql,
            None,  # array parameters can be megabytes: not repeated in the message
            exc,
            psycopg.Error,
            hide_parameters=True,
            connection_invalidated=broken,
            dialect=self._conn.dialect,
        )
