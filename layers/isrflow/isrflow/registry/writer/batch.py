"""The state of one batch transaction: its connection, its items by kind, what it accepted.

The per-kind application lives beside it (:mod:`.dimensions`, :mod:`.datasets`,
:mod:`.certify`, :mod:`.records`); :mod:`.transaction` runs them in parent-to-child order.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from isrflow.registry import copy_pg, copy_pipeline
from isrflow.registry import schema as s
from isrflow.registry.engine import is_postgres
from isrflow.registry.writer.items import Item
from isrflow.registry.writer.sql import insert_rows, select_in

#: ``on_phase(name, conn)``: a test hook called between phases of the transaction.
PhaseHook = Callable[[str, Connection], None]

#: Whether PostgreSQL writes are pipelined (:mod:`.copy_pipeline`); else each waits in turn.
_PIPELINE = copy_pipeline.supported()


#: A lookup of :meth:`Batch.select_many`: (columns, key column or ``sa.tuple_`` of them, key values).
Lookup = tuple[Sequence[Any], Any, Iterable[Any]]


class Batch:
    """One batch transaction: ``now`` (UTC) stamps its rows; ``instruments``, ``detectors``,
    ``exposures`` and ``datasets`` collect what is known to exist as the phases run.

    ``optimistic`` (PostgreSQL): rows the writer has just looked up and found absent go in with
    a plain INSERT (:meth:`write` with ``new=True``), without ``ON CONFLICT``'s speculative
    insertion; should a concurrent writer commit one of them first, the INSERT raises a unique
    violation and the writer runs the batch again without this shortcut (:mod:`.apply`)."""

    def __init__(
        self,
        conn: Connection,
        items: list[Item],
        now: datetime,
        on_phase: PhaseHook | None,
        optimistic: bool = False,
    ) -> None:
        self._conn = conn
        self.postgres = is_postgres(conn)
        #: PostgreSQL: bulk writes are pipelined (sent without waiting; see .copy_pipeline)
        self.sender = copy_pipeline.Sender(conn) if self.postgres and _PIPELINE else None
        self.optimistic = optimistic and self.postgres
        self.items = items
        self.now = now
        self.on_phase = on_phase
        self.by_kind: dict[str, list[Item]] = defaultdict(list)
        for it in items:
            if it.message is not None and it.status == "pending":
                self.by_kind[it.message.kind].append(it)
        self.instruments: set[str] = set()
        self.detectors: set[tuple[str, int]] = set()
        self.exposures: set[tuple[str, int]] = set()
        self.datasets: dict[uuid.UUID, dict[str, Any]] = {}  # accepted in this batch: id -> row

    @property
    def conn(self) -> Connection:
        """The transaction's connection, for statements through SQLAlchemy: pipelined writes
        sent before are waited for first, so they run in order and their errors surface here."""
        self.drain()
        return self._conn

    def drain(self) -> None:
        """Wait for the pipelined writes (raising their first error)."""
        if self.sender is not None:
            self.sender.drain()

    def close(self) -> None:
        """Abandon pipelined writes after an error (the transaction rolls back)."""
        if self.sender is not None:
            self.sender.close()

    def write(
        self,
        table: sa.Table,
        rows: list[dict[str, Any]],
        conflict: Sequence[str],
        update: Sequence[str] = (),
        *,
        new: bool = False,
    ) -> None:
        """:func:`.sql.insert_rows`, pipelined on PostgreSQL. ``new``: rows found absent (see the
        class docstring)."""
        if rows:
            self.write_columns(table, {c: [r[c] for r in rows] for c in rows[0]}, conflict, update, new=new)

    def write_columns(
        self,
        table: sa.Table,
        columns: dict[str, list[Any]],
        conflict: Sequence[str],
        update: Sequence[str] = (),
        *,
        new: bool = False,
    ) -> None:
        """:meth:`write` of rows given column by column (column name -> values, all one length)."""
        if not columns or not next(iter(columns.values())):
            return
        if not self.postgres:  # SQLite: executemany of row dicts, always ON CONFLICT
            names = list(columns)
            rows = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
            insert_rows(self.conn, table, rows, conflict, update)
            return
        statement = copy_pg.columns_statement(
            table, columns, None if new and self.optimistic else conflict, update
        )
        if self.sender is not None:
            self.sender.send(*statement)
        else:
            self.conn.exec_driver_sql(*statement)

    def select_many(self, lookups: Sequence[Lookup]) -> list[list[Any]]:
        """The rows of each lookup (:func:`.sql.select_in`); on PostgreSQL all in one round trip.
        Rows have the column names as attributes."""
        if self.sender is None or not all(copy_pg.plain_result(cols) for cols, _, _ in lookups):
            return [select_in(self.conn, cols, key, values) for cols, key, values in lookups]
        statements = []
        for cols, key, values in lookups:
            # a tuple_ key is a tuple of table columns
            keys = (
                cast(list[sa.Column[Any]], list(key.clauses))
                if isinstance(key, sa.sql.elements.Tuple)
                else [key]
            )
            statements.append(copy_pg.select_statement(cols, keys, values))
        sent = [st for st in statements if st is not None]
        found = iter(self.sender.select_all(sent) if sent else [])
        return [[] if st is None else next(found) for st in statements]

    def phase(self, name: str) -> None:
        """Call the test hook, if any, for the phase ``name``."""
        if self.on_phase is not None:
            self.on_phase(name, self.conn)

    def collection_types(self, names: Iterable[str]) -> dict[str, str]:
        """The types of those of ``names`` that exist as collections."""
        rows = select_in(self.conn, [s.collection.c.name, s.collection.c.type], s.collection.c.name, names)
        return {r.name: r.type for r in rows}
