"""PostgreSQL bulk transfer for the batch writer: whole columns as one array parameter each.

A batch of N rows goes to PostgreSQL as ONE statement whose parameters are one array literal
per column (``'{v1,v2,...}'``, built here as a single string), unpacked on the server::

    INSERT INTO t (a, b) SELECT * FROM unnest(%s::uuid[], %s::text[]) ON CONFLICT (a) DO NOTHING
    SELECT ... FROM t WHERE a = ANY(%s::uuid[])

One round trip per table instead of one per row (``executemany``) or three per table (COPY into
a temporary staging table, then ``INSERT ... SELECT``, then emptying the stage), no per-element
work in the driver, no temporary tables (no TEMPORARY privilege, no per-session state that a
rolled-back transaction could take away), and the same row-level semantics: each value is
assigned to its column with PostgreSQL's usual assignment casts, so a value the column cannot
hold (too long for ``VARCHAR(n)``, beyond ``integer``, a NUL character) raises the same data
error as a single-row ``INSERT`` would, which the writer's poison search relies on.

Array elements are typed by the column's base type (``int4``, ``int8``, ``float8``, ``uuid``,
``text``); :class:`~.schema.UtcTime` values (aware datetimes) are sent as int8 microseconds.
Arrays of uuids go as lists dumped by psycopg in binary (:func:`array_param`): parsing 32 hex
digits per element was a noticeable part of the server's work.

``conflict=None`` (:func:`columns_statement`) makes a plain INSERT, for rows the writer has just
found absent: it skips ``ON CONFLICT``'s speculative insertion (an extra WAL record per row);
a row a concurrent writer committed meanwhile raises a unique violation instead.

COPY was measured as an alternative (issue 12): ``COPY ... FROM STDIN`` into a temporary staging
table, then ``INSERT ... SELECT ... ON CONFLICT``, costs the same as the array INSERT; COPY straight
into the tables (binary or text) is a little cheaper on the server than a plain array INSERT but
cannot do ``ON CONFLICT`` and cannot run in pipeline mode (two extra round trips per table).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from isrflow.registry import schema as s


def pg_type(column: sa.Column) -> str:
    """PostgreSQL base type of a column's array parameter (no length: lengths are enforced by
    the assignment to the column, which raises; an explicit ``::varchar(n)`` would truncate)."""
    t = column.type
    if isinstance(t, (s.UtcTime, sa.BigInteger)):
        return "int8"
    if isinstance(t, sa.Integer):
        return "int4"
    if isinstance(t, sa.Float):
        return "float8"
    if isinstance(t, sa.Uuid):
        return "uuid"
    if isinstance(t, (sa.String, sa.Text)):
        return "text"
    raise TypeError(f"column {column.table.name}.{column.name}: no array transfer for type {t!r}")


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {type(value).__name__}")
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if '"' in value:
        value = value.replace('"', '\\"')
    return f'"{value}"'


def _integer(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return str(s.to_micros(value))
    if type(value) is not int:  # bool, float, str: refuse rather than guess
        raise ValueError(f"expected an integer, got {type(value).__name__}")
    return str(value)


def _float(value: Any) -> str:
    if value is None:
        return "NULL"
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _uuid(value: Any) -> str:
    if value is None:
        return "NULL"
    return (value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))).hex


_ELEMENT = {"text": _text, "int4": _integer, "int8": _integer, "float8": _float, "uuid": _uuid}


def _json_literal(values: list[Any], type_name: str) -> str | None:
    """The array literal through the C JSON encoder when that is exact, else None.

    A JSON array of strings (for ``text``), integers (``int4``/``int8``), floats or integers
    (``float8``) and nulls is a valid PostgreSQL array literal once its brackets become braces
    (``null`` unquoted reads as NULL; ``NaN``/``Infinity``/``-Infinity`` are float input), as
    long as no string needed a JSON escape: text with ``"``, ``\\`` or a control character, a
    value of another Python type (a datetime, a bool) and uuids are left to the
    element-by-element path."""
    if type_name == "text":
        ok = all(type(v) is str or v is None for v in values)
    elif type_name == "float8":
        ok = all(type(v) is float or type(v) is int or v is None for v in values)
    else:
        ok = all(type(v) is int or v is None for v in values)
    if not ok:
        return None
    text = _JSON(values)
    if "\\" in text:
        return None
    return "{" + text[1:-1] + "}"


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=True).encode


def array_literal(values: Iterable[Any], type_name: str) -> str:
    """The PostgreSQL array literal of ``values`` (None -> NULL) for elements of ``type_name``
    (``text``, ``int4``, ``int8``, ``float8``, ``uuid``). Text elements are always quoted, so
    a string ``"NULL"`` stays a string. ValueError for a value of the wrong Python type (the
    writer treats it as poison)."""
    if not isinstance(values, list):
        values = list(values)
    if type_name != "uuid":
        fast = _json_literal(values, type_name)
        if fast is not None:
            return fast
    element = _ELEMENT[type_name]
    if type_name in ("int4", "int8"):  # datetimes (UtcTime): a batch repeats one "now" many times
        memo: dict[Any, str] = {}
        out = []
        for v in values:
            text = memo.get(v) if type(v) is datetime else None
            if text is None:
                text = element(v)
                if type(v) is datetime:
                    memo[v] = text
            out.append(text)
        return "{" + ",".join(out) + "}"
    if type_name == "uuid":
        # 32 hex digits without dashes: valid uuid input, and cheaper than str(uuid)
        return "{" + ",".join([v.hex if type(v) is uuid.UUID else element(v) for v in values]) + "}"
    return "{" + ",".join([element(v) for v in values]) + "}"


def array_param(values: Sequence[Any], type_name: str) -> tuple[str, Any]:
    """The placeholder and parameter of one array: :func:`array_literal` (``%s``, text) for most
    types; a non-empty list of uuids (or None) goes as it is, dumped by psycopg in binary
    (``%b``): the server then reads 16 bytes per element instead of parsing 32 hex digits."""
    if type_name == "uuid" and values and all(type(v) is uuid.UUID or v is None for v in values):
        return "%b", values if isinstance(values, list) else list(values)
    return "%s", array_literal(values, type_name)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def insert_statement(
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str] | None,
    update: Sequence[str] = (),
) -> tuple[str, tuple[Any, ...]]:
    """SQL and parameters of ``INSERT ... ON CONFLICT (conflict) DO NOTHING / DO UPDATE SET
    update`` of all rows in one statement (every row must have the keys of the first); see
    :func:`columns_statement`."""
    names = list(rows[0])
    return columns_statement(table, {c: [r[c] for r in rows] for c in names}, conflict, update)


def columns_statement(
    table: sa.Table,
    columns: Mapping[str, Sequence[Any]],
    conflict: Sequence[str] | None,
    update: Sequence[str] = (),
) -> tuple[str, tuple[Any, ...]]:
    """SQL and parameters of one INSERT of rows given column by column (``columns``: column
    name -> its values, all of one length): ``ON CONFLICT (conflict) DO NOTHING``, or ``DO UPDATE
    SET update``; ``conflict=None``: a plain INSERT (a row whose key exists raises a unique
    violation). Rows must not repeat a conflict key when ``update`` is given (PostgreSQL refuses
    to update one row twice in a statement)."""
    cols = list(columns)
    types = [pg_type(table.c[c]) for c in cols]
    params = [array_param(columns[c], t) for c, t in zip(cols, types, strict=True)]
    names = ", ".join(_quote(c) for c in cols)
    arrays = ", ".join(f"{p}::{t}[]" for (p, _), t in zip(params, types, strict=True))
    sql = f"INSERT INTO {_quote(table.name)} ({names}) SELECT * FROM unnest({arrays})"
    if conflict is not None:
        target = ", ".join(_quote(c) for c in conflict)
        if update:
            action = "DO UPDATE SET " + ", ".join(f"{_quote(c)} = EXCLUDED.{_quote(c)}" for c in update)
        else:
            action = "DO NOTHING"
        sql += f" ON CONFLICT ({target}) {action}"
    return sql, tuple(value for _, value in params)


def insert_rows(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str],
    update: Sequence[str] = (),
) -> None:
    """Execute :func:`insert_statement` (nothing for no rows)."""
    if rows:
        conn.exec_driver_sql(*insert_statement(table, rows, conflict, update))


def delete_statement(column: sa.Column, values: Iterable[Any]) -> tuple[str, tuple[Any, ...]]:
    """SQL and parameters of ``DELETE FROM table WHERE column = ANY(values)``."""
    t = pg_type(column)
    mark, param = array_param(list(values), t)
    sql = f"DELETE FROM {_quote(column.table.name)} WHERE {_quote(column.name)} = ANY({mark}::{t}[])"
    return sql, (param,)


def plain_result(columns: Sequence[sa.Column]) -> bool:
    """Whether raw driver results of these columns equal SQLAlchemy's (no result conversion:
    :class:`~.schema.UtcTime` columns come back as datetimes only through SQLAlchemy)."""
    return not any(isinstance(c.type, sa.types.TypeDecorator) for c in columns)


def select_statement(
    columns: Sequence[sa.Column], keys: Sequence[sa.Column], values: Iterable[Any]
) -> tuple[str, tuple[Any, ...]] | None:
    """SQL and parameters of :func:`select_any` (None when there are no values)."""
    vals = list(set(values))
    if not vals:
        return None
    table = keys[0].table
    cols = ", ".join(f"t.{_quote(c.name)}" for c in columns)
    # int4 keys are compared as int8: a value beyond 32 bits simply matches no row
    types = ["int8" if pg_type(k) == "int4" else pg_type(k) for k in keys]
    if len(keys) == 1:
        key = _quote(keys[0].name)
        mark, param = array_param(vals, types[0])
        sql = f"SELECT {cols} FROM {_quote(table.name)} t WHERE t.{key} = ANY({mark}::{types[0]}[])"
        return sql, (param,)
    names = [f"k{i}" for i in range(len(keys))]
    on = " AND ".join(f"t.{_quote(k.name)} = u.{n}" for k, n in zip(keys, names, strict=True))
    params = [array_param([v[i] for v in vals], t) for i, t in enumerate(types)]
    arrays = ", ".join(f"{p}::{t}[]" for (p, _), t in zip(params, types, strict=True))
    sql = f"SELECT {cols} FROM {_quote(table.name)} t JOIN unnest({arrays}) AS u({', '.join(names)}) ON {on}"
    return sql, tuple(value for _, value in params)


def select_any(
    conn: Connection, columns: Sequence[sa.Column], keys: Sequence[sa.Column], values: Iterable[Any]
) -> list[Any]:
    """``SELECT columns FROM table WHERE (keys) IN values`` in one statement: for one key column
    ``key = ANY(array)``, for several a join with ``unnest(array1, array2, ...)``. ``values``:
    key values, or tuples of them for several keys; duplicates are removed. The columns must all
    be of one table and :func:`plain_result`; rows have the column names as attributes."""
    statement = select_statement(columns, keys, values)
    if statement is None:
        return []
    return list(conn.exec_driver_sql(*statement).all())
