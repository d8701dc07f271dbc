"""Processing records and execution markers of a batch (upserts: the latest wins)."""

from __future__ import annotations

from typing import Any

from isrflow.model.messages import ExecutionCompleteMessage, ProcessingRecordMessage
from isrflow.registry import schema as s
from isrflow.registry.writer.batch import Batch


def apply_records(batch: Batch) -> None:
    """Upsert processing records; of duplicates in the batch the one with most retries wins."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for it in batch.by_kind["processing_record"]:
        m: ProcessingRecordMessage = it.message
        key = (m.execution_id, m.instrument, m.exposure, m.detector, m.step)
        row = m.model_dump(exclude={"kind", "message_id"})
        row["recorded"] = m.recorded or batch.now
        old = rows.get(key)
        if old is None or row["retries"] >= old["retries"]:
            rows[key] = row
        it.applied()
    ordered = [rows[k] for k in sorted(rows)]
    batch.write(
        s.processing_record,
        ordered,
        ["execution_id", "instrument", "exposure", "detector", "step"],
        update=["status", "duration_s", "peak_memory_mb", "retries", "error", "recorded"],
    )


def apply_markers(batch: Batch) -> None:
    """Upsert execution-complete markers (expected message count, completion time UTC)."""
    rows: dict[str, dict[str, Any]] = {}
    for it in batch.by_kind["execution_complete"]:
        m: ExecutionCompleteMessage = it.message
        rows[m.execution_id] = {
            "execution_id": m.execution_id,
            "expected": m.expected,
            "completed": batch.now,
        }
        it.applied()
    batch.write(
        s.execution,
        [rows[k] for k in sorted(rows)],
        ["execution_id"],
        update=["expected", "completed"],
    )
