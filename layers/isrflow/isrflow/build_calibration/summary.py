"""The end of a BuildCalibration execution: failed combines, Certify, Summarize.

- :func:`record_combine_failure`: a combine Map child failed (the Lambda raised, the ECS task
  could not run, or its container exited non-zero): the master is recorded as failed with the
  reason (the worker's own error when it wrote one, plus the exit code and the task's stop
  reason).
- :func:`certify`: when asked, certifies every succeeded master into the collection for the
  validity range, by CertifyMessages through the registry queue, unless more masters failed
  than tolerated (then nothing is certified).
- :func:`summarize`: reads every input and master result, sends processing records (inputs:
  step ``calib_isr``; masters: exposure 0, step ``combine`` or ``combine <filter>``) and the
  execution-complete marker, waits until the registry has applied all of the execution's
  messages, fails on rejected messages (e.g. a certification overlapping an existing one) and
  past the tolerated fraction of failed masters.

Pure Python (the summarize Lambda has no numpy).
"""

from __future__ import annotations

import json
import logging

from isrflow.build_calibration import layout
from isrflow.build_calibration.plan import read_groups
from isrflow.infra.edge import add_count
from isrflow.infra.queues import QueueSender, awaiting_consumer
from isrflow.io.storage import ObjectNotFoundError, storage_for
from isrflow.model.errors import RejectedMessageError
from isrflow.model.messages import (
    CalibStepEvent,
    CalibSummary,
    CertifyMessage,
    CertifyResult,
    CombineFailureEvent,
    ExecutionCompleteMessage,
    MasterResult,
    ProcessingRecordMessage,
    QuantumResult,
)
from isrflow.process_visit import results
from isrflow.process_visit.summary import MAX_FAILURES_LISTED, TooManyFailuresError
from isrflow.process_visit.worker import message_id

logger = logging.getLogger("isrflow.build_calibration.summary")


def _read(uri: str, model):
    try:
        return model.model_validate_json(storage_for(uri).read_bytes(uri))
    except ObjectNotFoundError:
        return None


def _exit_code(state) -> int | None:
    """The essential container's exit code: the one the state machine read from the stopped
    task (``exit_code``), else ``Containers[0].ExitCode`` of the described task."""
    if state.exit_code is not None:
        return state.exit_code
    if state.task is not None:
        code = ((state.task.get("Containers") or [{}])[0]).get("ExitCode")
        return code if isinstance(code, int) else None
    return None


def _reason(state) -> str:
    if state.task is not None:
        containers = state.task.get("Containers") or [{}]
        code = _exit_code(state)
        parts = [f"exit code {code}" if code is not None else "no exit code"]
        for text in (containers[0].get("Reason"), state.task.get("StoppedReason")):
            if text:
                parts.append(str(text))
        return "FargateTaskFailed: " + "; ".join(parts)
    error = state.error or {}
    name = str(error.get("Error", "CombineFailed"))
    cause = error.get("Cause", "")
    try:
        detail = json.loads(cause).get("errorMessage", cause) if cause else ""
    except (ValueError, AttributeError):
        detail = cause
    return f"{name}: {detail}" if detail else name


def record_combine_failure(event: CombineFailureEvent) -> dict:
    item = event.state.item
    reason = _reason(event.state)
    existing = _read(item.result_uri, MasterResult)
    if existing is not None and existing.status == "failed":
        error = existing.error or reason
        if event.state.task is not None and reason not in error:
            error = f"{error} ({reason})"
        result = existing.model_copy(update={"error": error[:2000], "route": item.route})
    else:
        base = (
            existing.model_dump()
            if existing is not None
            else {
                "key": item.key,
                "calib_type": _calib_type_of(item.request_uri),
                "instrument": item.instrument,
                "detector": item.detector,
                "physical_filter": item.physical_filter,
            }
        )
        base.update(
            status="failed",
            route=item.route,
            error=(reason if existing is None else f"{reason} after the master was written")[:2000],
        )
        result = MasterResult.model_validate(base)
    if event.state.task is not None or event.state.exit_code is not None:
        result = result.model_copy(update={"exit_code": _exit_code(event.state)})
    storage_for(item.result_uri).write_bytes(item.result_uri, result.model_dump_json().encode())
    logger.error(
        "master combine failed",
        extra={
            "master": item.key,
            "instrument": item.instrument,
            "detector": item.detector,
            "route": item.route,
            "error": result.error,
        },
    )
    add_count("MastersFailed")
    return {"recorded": 1, "key": item.key, "error": result.error}


def _calib_type_of(request_uri: str) -> str:
    from isrflow.build_calibration.run import read_request

    return read_request(request_uri).calib_type


def _masters(plan) -> list[MasterResult]:
    out = []
    for g in read_groups(plan.groups_uri):
        r = _read(plan.master_results_prefix + g.key + ".json", MasterResult)
        out.append(
            r
            or MasterResult(
                key=g.key,
                calib_type=g.calib_type,
                instrument=g.instrument,
                detector=g.detector,
                physical_filter=g.physical_filter,
                status="failed",
                error="NoResult: no combine result was recorded for this master",
            )
        )
    return out


def _too_many(plan, masters: list[MasterResult]) -> str | None:
    failed = [m for m in masters if m.status == "failed"]
    if masters and len(failed) / len(masters) > plan.max_failure_fraction:
        reasons = "; ".join(f"{m.key}: {m.error}" for m in failed[:10])
        return (
            f"{len(failed)} of {len(masters)} {plan.calib_type} masters failed "
            f"(tolerated fraction {plan.max_failure_fraction:g}): {reasons}"
        )
    return None


def certify(event: CalibStepEvent, sender: QueueSender) -> CertifyResult:
    plan = event.plan
    marker = layout.certified_uri(plan.master_results_prefix)
    if plan.certify is None:
        result = CertifyResult(certified=0, skipped_reason="not requested")
    else:
        masters = _masters(plan)
        problem = _too_many(plan, masters)
        if problem:
            result = CertifyResult(
                certified=0,
                collection=plan.certify.collection,
                skipped_reason=f"nothing certified: {problem}",
            )
        else:
            messages = [
                CertifyMessage(
                    dataset_id=m.dataset_id,
                    collection=plan.certify.collection,
                    begin=plan.certify.begin,
                    end=plan.certify.end,
                    execution_id=plan.execution_id,
                    message_id=message_id(plan.execution_id, m.dataset_id, "certify"),
                )
                for m in masters
                if m.status == "succeeded" and m.dataset_id is not None
            ]
            if messages:
                sender.send(messages)
            result = CertifyResult(certified=len(messages), collection=plan.certify.collection)
    storage_for(marker).write_bytes(marker, result.model_dump_json().encode())
    return result


def _inputs(plan) -> list[QuantumResult]:
    found = results.read_results(plan.isr_results_prefix)
    return [found[k] for k in sorted(found)]


def summarize(
    event: CalibStepEvent, registry, sender: QueueSender, *, wait_timeout: float = 300.0
) -> CalibSummary:
    plan = event.plan
    inputs = _inputs(plan)
    masters = _masters(plan)
    certified = _read(layout.certified_uri(plan.master_results_prefix), CertifyResult)
    n_certified = certified.certified if certified is not None else 0
    records = [
        ProcessingRecordMessage(
            execution_id=plan.execution_id,
            instrument=r.instrument,
            exposure=r.exposure,
            detector=r.detector,
            step="calib_isr",
            status=r.status,
            duration_s=r.duration_s,
            peak_memory_mb=r.peak_memory_mb,
            error=r.error,
            message_id=message_id(plan.execution_id, f"{r.instrument}/{r.exposure}/{r.detector}", "record"),
        )
        for r in inputs
    ] + [
        ProcessingRecordMessage(
            execution_id=plan.execution_id,
            instrument=m.instrument,
            exposure=0,
            detector=m.detector,
            step=("combine " + m.physical_filter)[:64] if m.physical_filter else "combine",
            status=m.status,
            duration_s=m.duration_s,
            peak_memory_mb=m.peak_memory_mb,
            error=m.error,
            message_id=message_id(plan.execution_id, m.key, "record"),
        )
        for m in masters
    ]
    sent = (
        sum(r.messages_sent for r in inputs)
        + sum(m.messages_sent for m in masters)
        + n_certified
        + len(records)
    )
    if records:
        sender.send(records)
    sender.send(
        [
            ExecutionCompleteMessage(
                execution_id=plan.execution_id,
                expected=sent,
                message_id=message_id(plan.execution_id, "complete", "complete"),
            )
        ]
    )
    # locally the event source then delivers without a batching window and wakes ``sleep`` after each batch
    with awaiting_consumer(sender, wait_timeout) as sleep:
        status = registry.wait_applied(
            plan.execution_id, timeout=wait_timeout, poll_interval=0.1, sleep=sleep
        )
    if status.rejected:
        reasons = "; ".join(r.reason for r in registry.rejects(plan.execution_id)[:5])
        raise RejectedMessageError(
            f"the registry rejected {status.rejected} message(s) of {plan.execution_id}: {reasons}"
        )
    failures = [m for m in masters if m.status == "failed"]
    durations = [m.duration_s for m in masters if m.status == "succeeded"]
    summary = CalibSummary(
        execution_id=plan.execution_id,
        calib_type=plan.calib_type,
        output_run=plan.output_run,
        masters=len(masters),
        succeeded=len(masters) - len(failures),
        failed=len(failures),
        inputs=plan.inputs,
        inputs_failed=sum(r.status == "failed" for r in inputs),
        certified=n_certified,
        certify_collection=plan.certify.collection if plan.certify else None,
        failures=failures[:MAX_FAILURES_LISTED],
        input_failures=[r for r in inputs if r.status == "failed"][:MAX_FAILURES_LISTED],
        routes={route: sum(m.route == route for m in masters) for route in ("lambda", "fargate")},
        total_combine_seconds=round(sum(durations), 3),
        max_combine_seconds=round(max(durations, default=0.0), 3),
        registry_messages=sent,
        outputs=[m.output_uri for m in masters if m.status == "succeeded" and m.output_uri][:200],
    )
    problem = _too_many(plan, masters)
    if problem:
        raise TooManyFailuresError(problem)
    return summary
