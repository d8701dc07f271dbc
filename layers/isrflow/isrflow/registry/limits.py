"""Database limits of registry messages: what passes the pydantic models but not the database.

A message can be valid for its model and still be refused by the database inside the writer's
transaction: an integer beyond its column's range (PostgreSQL ``integer`` is 32-bit, ``bigint``
and every SQLite integer 64-bit), a NUL character (PostgreSQL text cannot hold one), a string
longer than its ``VARCHAR(n)`` column (enforced by PostgreSQL, ignored by SQLite), text that is
not encodable as UTF-8 (a lone surrogate), a NaN in a NOT NULL float column (SQLite stores NaN
as NULL). :func:`limit_violation` finds such a value before the transaction, so the writer
rejects that one message instead of failing its whole batch.

The limits are the schema's declared column types (:mod:`.schema`), applied identically on both
engines: a registry then accepts the same messages wherever it lives, and a SQLite registry can
be copied into PostgreSQL. (On SQLite this is stricter than the engine itself for 32-bit
integer and ``VARCHAR(n)`` columns.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from isrflow.registry import schema as s
from isrflow.registry.dataset_row import dataset_row

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def _int_range(column: sa.Column) -> tuple[int, int] | None:
    t = column.type
    if isinstance(t, (sa.BigInteger, s.UtcTime)):
        return INT64
    if isinstance(t, sa.Integer):
        return INT32
    return None


def _text_problem(value: str, length: int | None) -> str | None:
    if "\x00" in value:
        return f"contains a NUL character at position {value.index(chr(0))} (the database cannot store it)"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"is not valid Unicode text ({exc.reason} at position {exc.start})"
    if length is not None and len(value) > length:
        return f"is {len(value)} characters long; the column holds at most {length}"
    return None


_SPECS: dict[sa.Column, tuple[tuple[int, int] | None, int | None, bool]] = {}


def _spec(column: sa.Column) -> tuple[tuple[int, int] | None, int | None, bool]:
    """(integer range, maximum text length, nullable) of a column, computed once."""
    spec = _SPECS.get(column)
    if spec is None:
        spec = _SPECS[column] = (
            _int_range(column),
            getattr(column.type, "length", None),
            bool(column.nullable),
        )
    return spec


def value_problem(column: sa.Column, value: Any) -> str | None:
    """Why ``value`` cannot be stored in ``column`` (a short phrase), or None if it can."""
    if value is None or isinstance(value, bool):
        return None
    bounds, length, nullable = _spec(column)
    if isinstance(value, str):
        return _text_problem(value, length)
    if isinstance(value, int):
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            bits = 32 if bounds == INT32 else 64
            return f"= {value} is outside the {bits}-bit integer range [{bounds[0]}, {bounds[1]}]"
        return None
    if isinstance(value, float):
        if math.isnan(value) and not nullable:
            return "is NaN (not storable in a NOT NULL number column)"
        return None
    return None


def _rows(message: Any) -> Iterator[tuple[sa.Table, dict[str, Any], str]]:
    """(table, row, field prefix) of everything a message writes; row values as the writer binds
    them (datetimes are skipped: every aware datetime fits the 64-bit microsecond columns)."""
    kind = message.kind
    ids = {"execution_id": message.execution_id, "message_id": message.message_id}
    yield s.applied_message, ids, ""
    if kind == "dataset":
        row = dataset_row(message, None)  # the exact row the writer inserts
        row["data_id"] = message.data_id_json
        yield s.dataset, row, ""
        yield s.collection, {"name": message.run}, "run:"
        for i, inp in enumerate(message.inputs):
            yield s.dataset_provenance, {"role": inp.role}, f"inputs.{i}."
        return
    if kind == "certify":
        yield s.collection, {"name": message.collection}, "collection:"
        return
    table = {
        "instrument": s.instrument,
        "detector": s.detector,
        "exposure": s.exposure,
        "processing_record": s.processing_record,
        "execution_complete": s.execution,
    }[kind]
    names = (
        {"name": "name", "camera": "camera"} if kind == "instrument" else {c.name: c.name for c in table.c}
    )
    yield table, {col: getattr(message, attr, None) for col, attr in names.items()}, ""


def _field(table: sa.Table, column: str, prefix: str) -> str:
    if prefix.endswith(":"):
        return prefix[:-1]
    if table is s.dataset and column in ("instrument", "detector", "exposure", "physical_filter"):
        return f"data_id.{column}"
    return prefix + column


def limit_violation(message: Any) -> str | None:
    """The first value of a parsed registry message the database cannot store, as a reason
    naming the field and the column (``"detector.id = 2147483648 is outside ..."``), or None."""
    for table, row, prefix in _rows(message):
        for name, value in row.items():
            column = table.c[name]
            problem = value_problem(column, value)
            if problem is not None:
                return (
                    f"{message.kind} field {_field(table, name, prefix)} {problem} "
                    f"(column {table.name}.{name})"
                )
    return None


def storable_text(value: str | None, length: int | None = None) -> str | None:
    """Text made safe to store in a rejects-table column: NULs and unencodable characters
    escaped, cut to ``length`` characters."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "\\u0000")
    if not value.isascii():
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value if length is None else value[:length]


def storable_ids(message: Any) -> bool:
    """Whether the message's execution id and message id can be stored (bookkeeping rows)."""
    return all(
        value_problem(s.applied_message.c[name], getattr(message, name, None)) is None
        for name in ("execution_id", "message_id")
    )


__all__: Sequence[str] = ("limit_violation", "storable_ids", "storable_text", "value_problem")
