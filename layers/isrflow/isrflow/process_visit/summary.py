"""Summarize an execution, and record a cluster whose worker failed as a whole."""

from __future__ import annotations

import json

from ..errors import IsrflowError
from ..messages import (Cluster, ExecutionCompleteMessage, ProcessingRecordMessage, QuantumResult, RecordFailureEvent,
                        SummarizeEvent, VisitSummary)
from ..queues import QueueSender
from ..storage import ObjectNotFoundError, storage_for
from . import layout
from .worker import message_id

MAX_FAILURES_LISTED = 50


class TooManyFailuresError(IsrflowError):
    """More quanta failed than the execution tolerates (max_failure_fraction)."""


def record_failure(event: RecordFailureEvent) -> dict:
    """Mark every quantum of the cluster that has no successful result as failed with the worker's error."""
    store = storage_for(event.results_prefix)
    error = str(event.error.get("Error", "WorkerFailed"))
    cause = event.error.get("Cause", "")
    try:
        detail = json.loads(cause).get("errorMessage", cause) if cause else ""
    except (ValueError, AttributeError):
        detail = cause
    recorded = 0
    for q in event.cluster.quanta:
        uri = layout.result_uri(event.results_prefix, q.instrument, q.exposure, q.detector)
        try:
            if QuantumResult.model_validate_json(store.read_bytes(uri)).status == "succeeded":
                continue
        except ObjectNotFoundError:
            pass
        result = QuantumResult(instrument=q.instrument, exposure=q.exposure, detector=q.detector, status="failed",
                               error=f"{error}: {detail}"[:2000] if detail else error)
        store.write_bytes(uri, result.model_dump_json().encode())
        recorded += 1
    return {"recorded": recorded}


def _manifest_keys(plan) -> list[tuple[str, int, int]]:
    data = json.loads(storage_for(plan.manifest_uri).read_bytes(plan.manifest_uri))
    return [(q.instrument, q.exposure, q.detector) for c in data for q in Cluster.model_validate(c).quanta]


def summarize(event: SummarizeEvent, registry, sender: QueueSender, *, wait_timeout: float = 300.0) -> VisitSummary:
    """Collect the results, send processing records + the completion marker, wait until the
    registry has applied the execution's messages, and fail past the tolerated fraction."""
    plan = event.plan
    store = storage_for(plan.results_prefix)
    results: dict[tuple[str, int, int], QuantumResult] = {}
    for uri in store.list(plan.results_prefix):
        if uri.endswith(".json"):
            r = QuantumResult.model_validate_json(store.read_bytes(uri))
            results[(r.instrument, r.exposure, r.detector)] = r
    for key in _manifest_keys(plan) if plan.clusters else []:
        if key not in results:
            results[key] = QuantumResult(instrument=key[0], exposure=key[1], detector=key[2], status="failed",
                                         error="NoResult: the worker recorded no result for this quantum")
    ordered = [results[k] for k in sorted(results)]
    records = [
        ProcessingRecordMessage(
            execution_id=plan.execution_id, instrument=r.instrument, exposure=r.exposure, detector=r.detector,
            status=r.status, duration_s=r.duration_s, peak_memory_mb=r.peak_memory_mb, retries=r.retries,
            error=r.error, message_id=message_id(plan.execution_id, f"{r.instrument}/{r.exposure}/{r.detector}", "record"),
        )
        for r in ordered
    ]
    sent = sum(r.messages_sent for r in ordered) + len(records)
    marker = ExecutionCompleteMessage(execution_id=plan.execution_id, expected=sent,
                                      message_id=message_id(plan.execution_id, "complete", "complete"))
    if records:
        sender.send(records)
    sender.send([marker])
    registry.wait_applied(plan.execution_id, timeout=wait_timeout, poll_interval=0.1)
    failures = [r for r in ordered if r.status == "failed"]
    durations = [r.duration_s for r in ordered if r.status == "succeeded"]
    summary = VisitSummary(
        execution_id=plan.execution_id, quanta=len(ordered), succeeded=len(ordered) - len(failures),
        failed=len(failures), skipped_existing=plan.skipped_existing, failures=failures[:MAX_FAILURES_LISTED],
        total_isr_seconds=round(sum(durations), 3), max_isr_seconds=round(max(durations, default=0.0), 3),
        registry_messages=sent,
    )
    if ordered and len(failures) / len(ordered) > plan.max_failure_fraction:
        reasons = "; ".join(f"{r.instrument} {r.exposure} det {r.detector}: {r.error}" for r in failures[:10])
        raise TooManyFailuresError(
            f"{len(failures)} of {len(ordered)} quanta failed (tolerated fraction {plan.max_failure_fraction:g}): {reasons}")
    return summary
