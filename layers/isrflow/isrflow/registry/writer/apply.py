"""The writer's entry points: :func:`apply_batch` (SQS batches) and :func:`apply_messages` (CLI)."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from isrflow.model.errors import RejectedMessageError
from isrflow.registry.writer.batch import PhaseHook
from isrflow.registry.writer.items import BatchItem, BatchResult, to_item
from isrflow.registry.writer.poison import error_summary, find_poison, is_poison_error, is_unique_violation
from isrflow.registry.writer.transaction import run_batch


def apply_batch(
    registry: Any,
    items: Sequence[BatchItem | tuple[str, Any]],
    *,
    give_up_after: int | None = None,
    on_phase: PhaseHook | None = None,
    give_up_min_age_s: float | None = None,
) -> BatchResult:
    """Apply one batch of registry messages in one transaction (see the module docstring).

    ``items``: BatchItem or (item_id, body) pairs; a body is JSON text/bytes, a dict or a message
    model. ``give_up_after``: reject (instead of retry) an item with a missing parent once SQS
    has delivered it this many times and (``give_up_min_age_s``, for items whose ``age_s`` is
    known) it is at least that many seconds old. ``on_phase(name, conn)`` is a test hook called at
    "dimensions", "datasets", "certify_locked", "certify_checked" and "before_commit".

    Raises RegistryUnavailableError (or another database error) when the batch could not be
    committed: then nothing of it was written.
    """
    with _gc_paused():
        return _apply_batch(registry, items, give_up_after, on_phase, give_up_min_age_s)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Automatic garbage collection off while a batch is applied (re-enabled after, if it was
    on). A batch allocates tens of thousands of objects, none of them in reference cycles that
    outlive it; the collector would otherwise scan the young ones dozens of times per batch."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _apply_batch(
    registry: Any,
    items: Sequence[BatchItem | tuple[str, Any]],
    give_up_after: int | None,
    on_phase: PhaseHook | None,
    give_up_min_age_s: float | None,
) -> BatchResult:
    raws = [i if isinstance(i, BatchItem) else BatchItem(*i) for i in items]
    parsed = [to_item(i) for i in raws]
    for raw, it in zip(raws, parsed, strict=True):
        it.age_s = raw.age_s
    optimistic = True
    while True:
        try:
            return run_batch(
                registry,
                parsed,
                strict=False,
                give_up_after=give_up_after,
                on_phase=on_phase,
                give_up_min_age_s=give_up_min_age_s,
                optimistic=optimistic,
            )
        except Exception as exc:
            if optimistic and is_unique_violation(exc):
                optimistic = False  # a concurrent writer inserted one of the rows first: ON CONFLICT now
                continue
            if not is_poison_error(exc):
                raise
            found = find_poison(registry, parsed, give_up_after)
            if found is None:
                raise  # the failure needs several items together: redeliver the batch as it is
            bad, error = found
            bad.reject_fixed(f"the database refused this {bad.message.kind} message: {error_summary(error)}")


def apply_messages(
    registry: Any, messages: Iterable[BaseModel], *, on_phase: PhaseHook | None = None
) -> BatchResult:
    """Apply messages synchronously, all or nothing (the CLI's direct writes).

    Any message that would be rejected or retried raises its error (RejectedMessageError,
    CertificationConflictError, MissingParentError) and nothing is written; no rejects row.
    """
    parsed = [to_item(BatchItem(str(i), m)) for i, m in enumerate(messages)]
    bad = next((it for it in parsed if it.status == "rejected"), None)
    if bad is not None:
        raise RejectedMessageError(bad.reason)
    return run_batch(registry, parsed, strict=True, give_up_after=None, on_phase=on_phase)
