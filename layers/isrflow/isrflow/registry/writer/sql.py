"""Bulk SQL of the batch writer: chunked lookups and ``INSERT ... ON CONFLICT`` on both engines."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.engine import Connection

from isrflow.registry import copy_pg
from isrflow.registry.engine import is_postgres

#: Largest IN list sent in one statement.
CHUNK = 5000


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def select_in(conn: Connection, columns: Sequence[Any], key: Any, values: Iterable[Any]) -> list[Any]:
    """``SELECT columns WHERE key IN values`` (``key``: a column or ``sa.tuple_`` of columns).

    PostgreSQL: one statement with the values as array parameters (:func:`.copy_pg.select_any`);
    otherwise (SQLite, or columns whose results SQLAlchemy converts) chunked ``IN`` lists."""
    # a tuple_ key is a tuple of table columns
    keys = cast(list[sa.Column[Any]], list(key.clauses)) if isinstance(key, sa.sql.elements.Tuple) else [key]
    if is_postgres(conn) and copy_pg.plain_result(columns):
        return copy_pg.select_any(conn, columns, keys, values)
    vals = list(set(values))
    rows: list[Any] = []
    for chunk in chunks(vals):
        rows.extend(conn.execute(sa.select(*columns).where(key.in_(chunk))).all())
    return rows


def insert_rows(
    conn: Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    conflict: Sequence[str],
    update: Sequence[str] = (),
) -> None:
    """Bulk ``INSERT ... ON CONFLICT (conflict) DO NOTHING / DO UPDATE SET update``.

    Every row must have the same keys. On PostgreSQL the rows go in one statement, each column
    as one array parameter (:mod:`.copy_pg`: one round trip, no per-value driver work); on
    SQLite with ``executemany``. Same semantics either way.
    """
    if not rows:
        return
    if is_postgres(conn):
        copy_pg.insert_rows(conn, table, rows, conflict, update)
        return
    stmt = insert(table)
    if update:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(conflict), set_={c: stmt.excluded[c] for c in update}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
    for chunk in chunks(rows, 2000):
        conn.execute(stmt, list(chunk))
