"""Summarize an execution, and record a cluster whose worker failed as a whole."""

from __future__ import annotations

import json

from isrflow.infra.edge import add_count
from isrflow.infra.queues import QueueSender, awaiting_consumer
from isrflow.io.storage import storage_for
from isrflow.model.errors import IsrflowError
from isrflow.model.messages import (
    Cluster,
    ExecutionCompleteMessage,
    ProcessingRecordMessage,
    QuantumResult,
    RecordFailureEvent,
    SummarizeEvent,
    VisitSummary,
)
from isrflow.process_visit import results
from isrflow.process_visit.worker import log_detector_failure, message_id
from isrflow.registry.limits import storable_text  # an error text with a NUL would make its record poison
from isrflow.registry.redelivery import SUMMARIZE_WAIT_S

MAX_FAILURES_LISTED = 50


#: How Step Functions names a lambda:invoke the Lambda service refused for concurrency (a throttle).
THROTTLE_ERRORS = frozenset({"Lambda.TooManyRequestsException", "TooManyRequestsException"})


class TooManyFailuresError(IsrflowError):
    """More quanta failed than the execution tolerates (max_failure_fraction)."""


class RegistryRejectedError(IsrflowError):
    """The registry writer rejected messages of this execution (e.g. its outputs conflict with
    datasets another execution registered first in the same output run): what the execution
    produced is not (all) registered, so it must not report success."""


def _rejected_error(registry, execution_id: str, count: int) -> RegistryRejectedError:
    reasons = [r.reason for r in registry.rejects(execution_id)[:5]]
    listed = "; ".join(reasons) if reasons else "no reasons recorded"
    return RegistryRejectedError(
        f"execution {execution_id}: the registry rejected {count} of its messages, so its outputs are not all "
        f"registered (another execution writing into the same output run?): {listed}"[:4000]
    )


class WorkerThrottledError(IsrflowError):
    """The worker was throttled (never ran) past the state machine's retry budget. Its quanta
    were not attempted, so they are not recorded as failed: the map item fails with this error."""


def record_failure(event: RecordFailureEvent) -> dict:
    """Mark every quantum of the cluster that has no successful result as failed with the worker's error.

    A throttle is not a failure of the quanta: for ``Lambda.TooManyRequestsException`` nothing is
    written and :class:`WorkerThrottledError` is raised, which fails the map item (and so the
    execution) with that name instead of recording FAILED detectors."""
    error = str(event.error.get("Error", "WorkerFailed"))
    if error in THROTTLE_ERRORS:
        raise WorkerThrottledError(
            f"cluster {event.cluster.cluster_id} ({len(event.cluster.quanta)} quanta): the ISR function was "
            f"throttled ({error}) past the state machine's retry budget; its quanta were not attempted and are "
            f"not recorded as failed. Raise the account's Lambda concurrency or IsrMaxConcurrency, or lower "
            f"max_concurrency, then rerun with mode skip-existing"
        )
    cause = event.error.get("Cause", "")
    try:
        detail = json.loads(cause).get("errorMessage", cause) if cause else ""
    except (ValueError, AttributeError):
        detail = cause
    uri = results.cluster_file_uri(event.results_prefix, event.cluster.cluster_id)
    written = results.merge(results.read_file(uri))  # the worker may have written its file, then failed
    recorded = 0
    for q in event.cluster.quanta:
        key = (q.instrument, q.exposure, q.detector)
        if key in written and written[key].status == "succeeded":
            continue
        result = QuantumResult(
            instrument=q.instrument,
            exposure=q.exposure,
            detector=q.detector,
            status="failed",
            error=f"{error}: {detail}"[:2000] if detail else error,
        )
        written[key] = result
        log_detector_failure(result, cluster=event.cluster.cluster_id, results_prefix=event.results_prefix)
        recorded += 1
    if recorded:
        results.write_results(uri, list(written.values()))
    add_count("DetectorsFailed", recorded)
    return {"recorded": recorded}


def _manifest_keys(plan) -> list[tuple[str, int, int]]:
    data = json.loads(storage_for(plan.manifest_uri).read_bytes(plan.manifest_uri))
    return [(q.instrument, q.exposure, q.detector) for c in data for q in Cluster.model_validate(c).quanta]


def summarize(
    event: SummarizeEvent, registry, sender: QueueSender, *, wait_timeout: float = SUMMARIZE_WAIT_S
) -> VisitSummary:
    """Collect the results, send processing records + the completion marker, wait until the
    registry has applied the execution's messages, fail if it rejected any of them
    (RegistryRejectedError), and fail past the tolerated fraction.

    ``wait_timeout`` (s): how long this attempt waits for the writer before WaitTimeoutError
    (which the state machine retries); :mod:`isrflow.registry.redelivery` shows why 300 s
    covers the writer's retries of out-of-order messages several times over."""
    plan = event.plan
    found = results.read_results(plan.results_prefix)
    for key in _manifest_keys(plan) if plan.clusters else []:
        if key not in found:
            found[key] = QuantumResult(
                instrument=key[0],
                exposure=key[1],
                detector=key[2],
                status="failed",
                error="NoResult: the worker recorded no result for this quantum",
            )
    ordered = [found[k] for k in sorted(found)]
    records = [
        ProcessingRecordMessage(
            execution_id=plan.execution_id,
            instrument=r.instrument,
            exposure=r.exposure,
            detector=r.detector,
            status=r.status,
            duration_s=r.duration_s,
            peak_memory_mb=r.peak_memory_mb,
            retries=r.retries,
            error=storable_text(r.error),
            message_id=message_id(plan.execution_id, f"{r.instrument}/{r.exposure}/{r.detector}", "record"),
        )
        for r in ordered
    ]
    sent = sum(r.messages_sent for r in ordered) + len(records)
    marker = ExecutionCompleteMessage(
        execution_id=plan.execution_id,
        expected=sent,
        message_id=message_id(plan.execution_id, "complete", "complete"),
    )
    if records:
        sender.send(records)
    sender.send([marker])
    # locally the event source then delivers without a batching window and wakes ``sleep`` after each batch
    with awaiting_consumer(sender, wait_timeout) as sleep:
        status = registry.wait_applied(
            plan.execution_id, timeout=wait_timeout, poll_interval=0.1, sleep=sleep
        )
    if status.rejected:
        raise _rejected_error(registry, plan.execution_id, status.rejected)
    failures = [r for r in ordered if r.status == "failed"]
    durations = [r.duration_s for r in ordered if r.status == "succeeded"]
    summary = VisitSummary(
        execution_id=plan.execution_id,
        quanta=len(ordered),
        succeeded=len(ordered) - len(failures),
        failed=len(failures),
        skipped_existing=plan.skipped_existing,
        failures=failures[:MAX_FAILURES_LISTED],
        total_isr_seconds=round(sum(durations), 3),
        max_isr_seconds=round(max(durations, default=0.0), 3),
        registry_messages=sent,
    )
    if ordered and len(failures) / len(ordered) > plan.max_failure_fraction:
        reasons = "; ".join(f"{r.instrument} {r.exposure} det {r.detector}: {r.error}" for r in failures[:10])
        raise TooManyFailuresError(
            f"{len(failures)} of {len(ordered)} quanta failed (tolerated fraction {plan.max_failure_fraction:g}): {reasons}"
        )
    return summary
