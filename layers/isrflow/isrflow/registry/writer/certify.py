"""Certify messages of a batch: validity ranges in CALIBRATION collections.

Certification runs under a lock per CALIBRATION collection (``pg_advisory_xact_lock`` on
PostgreSQL; the SQLite write lock), re-reading existing validity ranges after taking it, so two
writers can never certify overlapping ranges. Times are UTC, stored as microseconds.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from isrflow.model.errors import CertificationConflictError, RegistryError
from isrflow.model.ids import CALIBRATION_TYPES
from isrflow.model.messages import CertifyMessage
from isrflow.registry import schema as s
from isrflow.registry.engine import lock
from isrflow.registry.writer.batch import Batch
from isrflow.registry.writer.items import Item
from isrflow.registry.writer.sql import insert_rows, select_in


def span(begin: datetime | None, end: datetime | None) -> tuple[int, int]:
    """A validity range in microseconds; open ends are the schema's sentinels."""
    return (
        s.TIME_MIN if begin is None else s.to_micros(begin),
        s.TIME_MAX if end is None else s.to_micros(end),
    )


def _fmtspan(b: int, e: int) -> str:
    lo = "-inf" if b == s.TIME_MIN else s.from_micros(b).isoformat()
    hi = "+inf" if e == s.TIME_MAX else s.from_micros(e).isoformat()
    return f"[{lo}, {hi})"


def apply_certifications(batch: Batch) -> None:
    """Apply the batch's certify messages; see the module docstring."""
    items = sorted(
        batch.by_kind["certify"],
        key=lambda it: (
            it.message.collection,
            str(it.message.dataset_id),
            span(it.message.begin, it.message.end),
        ),
    )
    if not items:
        return
    conn = batch.conn
    d = s.dataset.c
    cols = [d.id, d.dataset_type, d.run, d.data_id, d.instrument, d.detector, d.physical_filter]
    info: dict[uuid.UUID, dict[str, Any]] = {
        r.id: dict(r._mapping) for r in select_in(conn, cols, d.id, {it.message.dataset_id for it in items})
    }
    info.update({k: v for k, v in batch.datasets.items() if k not in info})
    ctypes = batch.collection_types({it.message.collection for it in items})
    ready: list[Item] = []
    for it in items:
        m: CertifyMessage = it.message
        ds = info.get(m.dataset_id)
        if ds is None:
            it.retry(f"dataset {m.dataset_id} to certify is not registered")
            continue
        if ds["dataset_type"] not in CALIBRATION_TYPES:
            it.reject(
                f"dataset {m.dataset_id} is a {ds['dataset_type']}; only "
                f"{', '.join(sorted(CALIBRATION_TYPES))} can be certified"
            )
            continue
        ctype = ctypes.get(m.collection)
        if ctype is not None and ctype != "CALIBRATION":
            it.reject(f"collection {m.collection!r} is a {ctype} collection, not CALIBRATION")
            continue
        ready.append(it)
    if not ready:
        return
    names = sorted({it.message.collection for it in ready})
    insert_rows(
        conn,
        s.collection,
        [{"name": n, "type": "CALIBRATION", "doc": ""} for n in names if n not in ctypes],
        ["name"],
    )
    for name in names:  # sorted: two writers never wait on each other's locks in opposite order
        lock(conn, f"isrflow-certify:{name}")
    if any(t != "CALIBRATION" for t in batch.collection_types(names).values()):
        raise RegistryError("a collection was created concurrently with another type; retry")
    batch.phase("certify_locked")

    # Re-read existing ranges now that the lock is held.
    v = s.calib_validity.c
    keys = {
        (
            it.message.collection,
            info[it.message.dataset_id]["dataset_type"],
            info[it.message.dataset_id]["data_id"],
        )
        for it in ready
    }
    ranges: dict[tuple[str, str, str], list[tuple[int, int, uuid.UUID]]] = defaultdict(list)
    for r in select_in(
        conn,
        [v.collection, v.dataset_type, v.calib_key, v.begin, v.end, v.dataset_id],
        sa.tuple_(v.collection, v.dataset_type, v.calib_key),
        keys,
    ):
        ranges[(r.collection, r.dataset_type, r.calib_key)].append(
            (s.to_micros(r.begin), s.to_micros(r.end), r.dataset_id)
        )
    rows = []
    for it in ready:
        m = it.message
        ds = info[m.dataset_id]
        key = (m.collection, ds["dataset_type"], ds["data_id"])
        b, e = span(m.begin, m.end)
        if (b, e, m.dataset_id) in ranges[key]:
            it.applied()  # already certified exactly so: a duplicate
            continue
        clash = next(((b2, e2, other) for b2, e2, other in ranges[key] if b < e2 and b2 < e), None)
        if clash is not None:
            it.reject(
                f"validity {_fmtspan(b, e)} of {ds['dataset_type']} {ds['data_id']} ({m.dataset_id}) "
                f"overlaps {_fmtspan(clash[0], clash[1])} of dataset {clash[2]} in {m.collection!r}",
                CertificationConflictError,
            )
            continue
        ranges[key].append((b, e, m.dataset_id))
        rows.append(
            {
                "collection": m.collection,
                "dataset_id": m.dataset_id,
                "dataset_type": ds["dataset_type"],
                "calib_key": ds["data_id"],
                "instrument": ds["instrument"],
                "detector": ds["detector"],
                "physical_filter": ds["physical_filter"],
                "begin": b,
                "end": e,
                "certified": batch.now,
            }
        )
        it.applied()
    batch.phase("certify_checked")
    if rows:
        conn.execute(sa.insert(s.calib_validity), rows)
