"""Dimension records of a batch: instruments, detectors, exposures (sorted by key)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from isrflow.model.messages import DetectorRecord, ExposureRecord, InstrumentRecord
from isrflow.registry import schema as s
from isrflow.registry.writer.batch import Batch
from isrflow.registry.writer.items import Item
from isrflow.registry.writer.sql import insert_rows, select_in


def apply_instruments(batch: Batch) -> None:
    """Insert the instrument records; learn which instruments the other items name exist."""
    items = sorted(batch.by_kind["instrument"], key=lambda it: it.message.name)
    rows: dict[str, dict[str, Any]] = {}
    for it in items:
        m: InstrumentRecord = it.message
        rows.setdefault(m.name, {"name": m.name, "camera": m.camera})
        it.applied()
    insert_rows(batch.conn, s.instrument, list(rows.values()), ["name"])
    batch.instruments.update(rows)
    wanted = {it.message.instrument for k in ("detector", "exposure") for it in batch.by_kind[k]}
    wanted |= {it.message.data_id["instrument"] for it in batch.by_kind["dataset"]}
    wanted -= batch.instruments
    if wanted:
        batch.instruments.update(
            r.name for r in select_in(batch.conn, [s.instrument.c.name], s.instrument.c.name, wanted)
        )


def apply_dimension(
    batch: Batch, items: list[Item], table: sa.Table, known: set[tuple[str, int]], what: str
) -> None:
    """Insert detector or exposure records (``what``) into ``table``; ``known`` collects their keys.
    A record of an unknown instrument is rejected."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for it in sorted(items, key=lambda it: (it.message.instrument, it.message.id)):
        m: DetectorRecord | ExposureRecord = it.message
        if m.instrument not in batch.instruments:
            it.reject(f"unknown instrument {m.instrument!r} in {what} record {m.id}")
            continue
        row = m.model_dump(exclude={"kind", "message_id", "execution_id"})
        rows.setdefault((m.instrument, m.id), row)
        it.applied()
    insert_rows(batch.conn, table, list(rows.values()), ["instrument", "id"])
    known.update(rows)
