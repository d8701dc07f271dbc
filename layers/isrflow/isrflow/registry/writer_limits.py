"""Quick "certainly storable" checks for the batch writer's hot path.

:func:`.limits.limit_violation` walks every row a message writes, generically, and costs about
as much as parsing the message. Nearly every message is far inside the limits, so the writer
first asks :func:`certainly_storable`, a direct check of a dataset message's values (ASCII text
without NUL within its column's length, integers within their column's range). Only when that
answer is not a plain yes does the writer call ``limit_violation`` for the exact verdict and
reason, so the outcome is always ``limit_violation``'s: this check may say "not sure" too
often, never "fine" for a value ``limit_violation`` refuses.

The lengths and ranges are read from :mod:`.schema` (the same declared column types
:mod:`.limits` uses); where a message value lands in several columns the strictest applies.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from isrflow.registry import schema as s
from isrflow.registry.dataset_row import data_id_json
from isrflow.registry.limits import INT32, INT64


def _length(*columns: sa.Column) -> int | None:
    """The strictest declared length of these text columns (None = unlimited)."""
    lengths = [n for c in columns if (n := getattr(c.type, "length", None)) is not None]
    return min(lengths) if lengths else None


def _range(column: sa.Column) -> tuple[int, int]:
    return INT64 if isinstance(column.type, (sa.BigInteger, s.UtcTime)) else INT32


_D = s.dataset.c
_A = s.applied_message.c
_DATASET_TYPE = _length(_D.dataset_type)
_RUN = _length(_D.run, s.collection.c.name)
_INSTRUMENT = _length(_D.instrument)
_FILTER = _length(_D.physical_filter)
_SHA = _length(_D.sha256)
_ROLE = _length(s.dataset_provenance.c.role)
_EXECUTION = _length(_A.execution_id)
_MESSAGE = _length(_A.message_id)
_DETECTOR = _range(_D.detector)
_EXPOSURE = _range(_D.exposure)
_SIZE = _range(_D.size)


def _text_ok(value: Any, length: int | None) -> bool:
    """None, or ASCII text without NUL of at most ``length`` characters."""
    if value is None:
        return True
    return (
        type(value) is str
        and (length is None or len(value) <= length)
        and value.isascii()
        and "\x00" not in value
    )


def _int_ok(value: Any, bounds: tuple[int, int]) -> bool:
    """None, or an int (not a bool) within ``bounds``."""
    return value is None or (type(value) is int and bounds[0] <= value <= bounds[1])


def ids_storable(message: Any) -> bool:
    """Whether the message's execution id and message id certainly fit the bookkeeping columns
    (False = not sure: ask :func:`.limits.storable_ids`)."""
    return _text_ok(message.execution_id, _EXECUTION) and _text_ok(message.message_id, _MESSAGE)


def certainly_storable(message: Any) -> bool:
    """True when every value a dataset message writes certainly fits its column; False for any
    other kind of message and whenever in doubt (then ask :func:`.limits.limit_violation`)."""
    if message.kind != "dataset" or not ids_storable(message):
        return False
    did = message.data_id
    if not (
        _text_ok(message.dataset_type, _DATASET_TYPE)
        and _text_ok(message.run, _RUN)
        and _text_ok(did.get("instrument"), _INSTRUMENT)
        and _text_ok(did.get("physical_filter"), _FILTER)
        and _text_ok(message.sha256, _SHA)
        and _text_ok(message.uri, None)
        and _text_ok(data_id_json(message), None)
        and _int_ok(did.get("detector"), _DETECTOR)
        and _int_ok(did.get("exposure"), _EXPOSURE)
        and _int_ok(message.size, _SIZE)
    ):
        return False
    return all(_text_ok(i.role, _ROLE) for i in message.inputs)
