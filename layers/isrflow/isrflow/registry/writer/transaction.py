"""The batch transaction: every phase in parent-to-child order, then the bookkeeping.

Kinds are applied as instruments, detectors, exposures, datasets (with provenance),
certifications, processing records, execution markers; within a kind sorted by key, so
concurrent writers take row locks in the same order and cannot deadlock. Messages carrying an
``execution_id`` are counted per execution (``applied_message``, keyed by message id, so
redeliveries count once); rejected items are recorded in ``rejected_message``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from isrflow.model.errors import MissingParentError, RegistryError
from isrflow.registry import schema as s
from isrflow.registry.engine import transaction
from isrflow.registry.limits import storable_ids, storable_text
from isrflow.registry.writer.batch import Batch, PhaseHook
from isrflow.registry.writer.certify import apply_certifications
from isrflow.registry.writer.datasets import apply_datasets
from isrflow.registry.writer.dimensions import apply_dimension, apply_instruments
from isrflow.registry.writer.items import BatchResult, Item
from isrflow.registry.writer.records import apply_markers, apply_records
from isrflow.registry.writer_limits import ids_storable


def apply_kinds(batch: Batch) -> None:
    """Apply every pending item of the batch, kind by kind, parents first."""
    apply_instruments(batch)
    apply_dimension(batch, batch.by_kind["detector"], s.detector, batch.detectors, "detector")
    apply_dimension(batch, batch.by_kind["exposure"], s.exposure, batch.exposures, "exposure")
    batch.phase("dimensions")
    apply_datasets(batch)
    batch.phase("datasets")
    apply_certifications(batch)
    apply_records(batch)
    apply_markers(batch)


def _bookkeeping(batch: Batch, items: list[Item], now: datetime, record_rejects: bool) -> None:
    counted: dict[tuple[str, str], Item] = {}  # (execution id, message id) -> its first item
    for it in items:
        m = it.message
        if m is None or it.status not in ("applied", "rejected") or m.kind == "execution_complete":
            continue
        if m.execution_id is not None and (ids_storable(m) or storable_ids(m)):
            counted.setdefault((m.execution_id, m.message_id), it)
    # the message of a dataset inserted just now was most likely never counted: a plain INSERT
    keys = sorted(counted)
    for fresh in (True, False):
        chosen = [k for k in keys if counted[k].fresh is fresh]
        batch.write_columns(
            s.applied_message,
            {
                "execution_id": [k[0] for k in chosen],
                "message_id": [k[1] for k in chosen],
                "status": [counted[k].status for k in chosen],
                "applied": [now] * len(chosen),
            },
            ["execution_id", "message_id"],
            new=fresh,
        )
    if record_rejects:
        rows = []
        for it in items:
            if it.status != "rejected":
                continue
            m = it.message
            rows.append(  # the poison itself may hold NULs or over-long ids: store them escaped and cut
                {
                    "item_id": storable_text(it.item_id, 128),
                    "message_id": storable_text(getattr(m, "message_id", None), 64),
                    "kind": storable_text(getattr(m, "kind", None), 32),
                    "execution_id": storable_text(getattr(m, "execution_id", None), 256),
                    "reason": storable_text(it.reason),
                    "body": storable_text(it.body),
                    "rejected": now,
                }
            )
        if rows:
            batch.conn.execute(sa.insert(s.rejected_message), rows)


class TrialDone(Exception):
    """Raised at the end of a trial run to roll its transaction back."""


def _gives_up(it: Item, give_up_after: int | None, min_age_s: float | None) -> bool:
    """Whether an item whose parent is missing is rejected rather than retried: delivered at
    least ``give_up_after`` times AND (when its age is known) first sent ``min_age_s`` seconds
    ago or more. A young orphan is never rejected: in a shuffled backlog its parent may still
    be queued behind it, however often the child was received."""
    if give_up_after is None or it.receive_count < give_up_after:
        return False
    return min_age_s is None or it.age_s is None or it.age_s >= min_age_s


def run_batch(
    registry: Any,
    items: list[Item],
    *,
    strict: bool,
    give_up_after: int | None,
    on_phase: PhaseHook | None,
    trial: bool = False,
    give_up_min_age_s: float | None = None,
    optimistic: bool = False,
) -> BatchResult:
    """Apply the items in one transaction. ``trial``: do everything, then roll back.
    ``optimistic``: rows found absent go in with plain INSERTs (see :class:`.batch.Batch`); a
    unique violation then means a concurrent writer won a race: run again without."""
    now = datetime.now(UTC)
    for it in items:
        it.reset()
    with transaction(registry.engine, write=True) as conn:
        batch = Batch(conn, items, now, on_phase, optimistic)
        try:
            apply_kinds(batch)
            for it in items:
                if it.status == "pending":  # every kind is handled above; this is a guard
                    raise RegistryError(f"internal: item {it.item_id} was not handled")
                if it.status == "retry" and _gives_up(it, give_up_after, give_up_min_age_s):
                    age = "" if it.age_s is None else f" over {it.age_s / 3600:.1f} h"
                    it.reject(
                        f"gave up after {it.receive_count} deliveries{age}: {it.reason}", MissingParentError
                    )
            if strict:
                bad = next((it for it in items if it.status != "applied"), None)
                if bad is not None:
                    raise bad.error(bad.reason)  # rolls the whole transaction back
            _bookkeeping(batch, items, now, record_rejects=not strict)
            batch.drain()  # every pipelined write done (its errors raised) before a trial ends or a commit
        except BaseException:
            batch.close()
            raise
        if trial:
            raise TrialDone
        batch.phase("before_commit")
    result = BatchResult()
    for it in items:
        if it.status == "applied":
            result.applied.append(it.item_id)
        elif it.status == "rejected":
            result.rejected.append((it.item_id, it.reason))
        else:
            result.retry.append((it.item_id, it.reason))
    return result
