"""Deterministic stand-ins for the ProcessVisit Lambda functions, shared by both sides of the
cross-check (the local ASL interpreter in the test process, moto's interpreter in
``moto_runner.py``'s subprocess).

They keep the real contracts of ``functions/*/app.py``: every event is validated with the real
models of ``isrflow.model.messages`` section 4 (PlanEvent, IsrClusterEvent, RecordFailureEvent,
SummarizeEvent) and every answer is a real PlanResult / ClusterSummary / VisitSummary dump. What
they do not do is touch a registry, a queue or a datastore: every answer is a pure function of
the event (the one exception: plan counts its attempts per execution, and plan is only ever
called from the Plan state, one call at a time), because moto runs Map items in threads and the two interpreters must see the same
results whatever the order of the calls.

- plan: raises :class:`QuantaNotFoundError` on the first attempt of an execution whose input
  names an instrument containing "late" (the raws' registration "not yet applied"; the Plan
  state's Retry calls again), then clusters the input's explicit ``quanta`` like the real ``make_clusters`` (same
  instrument and detector, exposure order, ``cluster_size`` per cluster, cluster id
  ``{instrument}-{detector}-{first exposure}``); a ``where`` query selects nothing (there is no
  registry), so it plans zero clusters. The manifest itself is made by :func:`manifest_bytes`
  from the same input and stored beforehand (moto S3, or the local ``item_reader``) under
  :func:`manifest_key_for` the execution. The PlanResult carries one extra field,
  ``stub_failed_quanta``: the quanta of the clusters whose id contains "bad".
- isr: a ClusterSummary, or :class:`IsrInputError` for a cluster whose id contains "bad"
  (caught by the Map item's Catch, which sends it to RecordFailure);
- mosaic: ``{"mosaics": [...]}``, or :class:`MosaicError` when the output run contains "bad";
- record_failure: ``{"recorded": n}``;
- summarize: a VisitSummary from the plan alone, :class:`TooManyFailuresError` past
  ``max_failure_fraction``.

One stub per function of template.yaml, as there is one handler per function: each stub is
registered under its own function name and parses its own event.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from isrflow.build_calibration import layout as calib_layout
from isrflow.model.messages import (
    CalibPlanEvent,
    CalibPlanResult,
    CalibStepEvent,
    CalibSummary,
    ClusterSummary,
    CombineEvent,
    CombineFailureEvent,
    CombineItem,
    IntermediatesDeleted,
    IsrClusterEvent,
    MosaicEvent,
    NormalizeResult,
    PlanEvent,
    PlanResult,
    PrepareCombineResult,
    QuantumResult,
    RecordFailureEvent,
    SummarizeEvent,
    VisitSummary,
)
from isrflow.process_visit import layout

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account, and the local interpreter's
BUCKET = f"isrflow-data-{ACCOUNT}"
DATASTORE_ROOT = f"s3://{BUCKET}"

PLAN_FUNCTION = "isrflow-crosscheck-plan"
ISR_FUNCTION = "isrflow-crosscheck-isr"
SUMMARIZE_FUNCTION = "isrflow-crosscheck-summarize"
MOSAIC_FUNCTION = "isrflow-crosscheck-mosaic"
RECORD_FAILURE_FUNCTION = "isrflow-crosscheck-record-failure"

ISR_SECONDS_PER_QUANTUM = 1.25  # the stub's "duration" of one quantum, so the summary has numbers in it
_NS = uuid.UUID("6f1d3c52-8a7e-4f0b-9a57-5f0c1f6a2c11")


class IsrInputError(Exception):
    """Raised by the isr stub for a cluster whose id contains "bad" (a named Lambda error)."""


class QuantaNotFoundError(Exception):
    """Raised by the plan stub on an execution's first attempt when an instrument contains "late"."""


class MosaicError(Exception):
    """Raised by the isr stub's mosaic action when the output run contains "bad"."""


class TooManyFailuresError(Exception):
    """Raised by the summarize stub past the tolerated failure fraction (same name as the real one)."""


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def substitutions() -> dict[str, str]:
    """The template substitutions of statemachines/process_visit.asl.json for the stubs."""
    return {
        "PlanFunctionArn": function_arn(PLAN_FUNCTION),
        "IsrFunctionArn": function_arn(ISR_FUNCTION),
        "RecordFailureFunctionArn": function_arn(RECORD_FAILURE_FUNCTION),
        "MosaicFunctionArn": function_arn(MOSAIC_FUNCTION),
        "SummarizeFunctionArn": function_arn(SUMMARIZE_FUNCTION),
        "DataBucketName": BUCKET,
    }


def execution_arn(machine_name: str, execution_name: str) -> str:
    return f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{machine_name}:{execution_name}"


# --------------------------------------------------------------------------- the manifest


def _ref(dataset_type: str, run: str, data_id: dict[str, Any]) -> dict[str, Any]:
    key = json.dumps([dataset_type, run, data_id], sort_keys=True)
    path = "_".join(str(v) for v in data_id.values())
    return {
        "id": str(uuid.uuid5(_NS, key)),
        "dataset_type": dataset_type,
        "run": run,
        "data_id": data_id,
        "uri": f"{DATASTORE_ROOT}/{run}/{dataset_type}/{dataset_type}_{path}.fits",
        "size": None,
        "sha256": None,
    }


def _quantum(spec: dict[str, Any], instrument: str, exposure: int, detector: int) -> dict[str, Any]:
    """A full, valid ``Quantum`` (registry model) for one (instrument, exposure, detector)."""
    calib_run = f"{spec['calib_collection']}/stub"
    begin = datetime(2026, 11, 20, tzinfo=UTC) + timedelta(seconds=exposure % 86400)
    return {
        "instrument": instrument,
        "exposure": exposure,
        "detector": detector,
        "detector_name": f"det{detector:03d}",
        "physical_filter": "r",
        "exposure_begin": begin.isoformat().replace("+00:00", "Z"),
        "raw": _ref(
            "raw",
            spec["input_collections"][0],
            {"instrument": instrument, "exposure": exposure, "detector": detector},
        ),
        "calibs": {
            t: _ref(t, calib_run, {"instrument": instrument, "detector": detector})
            for t in ("bias", "dark", "flat")
        },
        "missing_calibs": [],
        "output": _ref(
            "postISRCCD",
            spec["output_run"],
            {"instrument": instrument, "exposure": exposure, "detector": detector},
        ),
        "replace": False,
    }


def make_clusters(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's clusters for a ProcessVisitInput (as JSON), grouped like the real plan."""
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for q in spec.get("quanta") or []:  # a ``where`` query selects nothing: no registry here
        groups[(q["instrument"], q["detector"])].append(q["exposure"])
    size = spec.get("cluster_size", 4)
    clusters = []
    for (instrument, detector), exposures in sorted(groups.items()):
        exposures = sorted(set(exposures))
        for start in range(0, len(exposures), size):
            chunk = exposures[start : start + size]
            clusters.append(
                {
                    "cluster_id": f"{instrument}-{detector}-{chunk[0]}",
                    "quanta": [_quantum(spec, instrument, e, detector) for e in chunk],
                }
            )
    return clusters


def manifest_bytes(spec: dict[str, Any]) -> bytes:
    """The manifest object the plan function would have written for this input."""
    return json.dumps(make_clusters(spec), sort_keys=True, separators=(",", ":")).encode()


def manifest_key_for(execution_id: str) -> str:
    """The manifest's key in the data bucket (the real layout: manifests/<execution key>/clusters.json)."""
    return layout.bucket_key(
        layout.manifest_uri(DATASTORE_ROOT, layout.execution_key(execution_id)), DATASTORE_ROOT
    )


def is_bad(cluster_id: str) -> bool:
    return "bad" in cluster_id.lower()


# --------------------------------------------------------------------------- the handlers

_plan_attempts: dict[str, int] = {}
_plan_lock = threading.Lock()


def reset() -> None:
    """Forget the plan attempts counted so far (call before running a scenario again)."""
    with _plan_lock:
        _plan_attempts.clear()


def plan(event: dict, context: Any = None) -> dict:
    ev = PlanEvent.model_validate(event)
    with _plan_lock:
        attempt = _plan_attempts[ev.execution_id] = _plan_attempts.get(ev.execution_id, 0) + 1
    late = sorted({q.instrument for q in ev.input.quanta or [] if "late" in q.instrument.lower()})
    if late and attempt == 1:
        raise QuantaNotFoundError(
            f"requested quanta of {', '.join(late)} have no raw in "
            f"{', '.join(ev.input.input_collections)} yet"
        )
    spec = ev.input.model_dump(mode="json", exclude_none=True)
    clusters = make_clusters(spec)
    key = layout.execution_key(ev.execution_id)
    result = PlanResult(
        execution_id=ev.execution_id,
        execution_key=key,
        manifest_key=manifest_key_for(ev.execution_id),
        manifest_uri=layout.manifest_uri(DATASTORE_ROOT, key),
        results_prefix=layout.results_prefix(DATASTORE_ROOT, key),
        clusters=len(clusters),
        quanta=sum(len(c["quanta"]) for c in clusters),
        failed_at_plan=0,
        skipped_existing=0,
        output_run=ev.input.output_run,
        isr_config=ev.input.isr_config,
        max_concurrency=ev.input.max_concurrency,
        max_failure_fraction=ev.input.max_failure_fraction,
        previews=ev.input.previews,
    ).model_dump(mode="json")
    result["stub_failed_quanta"] = [
        [q["instrument"], q["exposure"], q["detector"]]
        for c in clusters
        if is_bad(c["cluster_id"])
        for q in c["quanta"]
    ]
    return result


def mosaic(event: dict, context: Any = None) -> dict:
    ev = MosaicEvent.model_validate(event)
    if is_bad(ev.output_run):
        raise MosaicError(f"no thumbnails under {ev.output_run}")
    key = ev.manifest_uri.rstrip("/").split("/")[-2]  # manifests/<execution key>/clusters.json
    return {"mosaics": [f"{DATASTORE_ROOT}/{ev.output_run}/mosaic/{key}.png"]}


def isr(event: dict, context: Any = None) -> dict:
    ev = IsrClusterEvent.model_validate(event)
    if is_bad(ev.cluster.cluster_id):
        raise IsrInputError(f"cluster {ev.cluster.cluster_id}: unreadable raw {ev.cluster.quanta[0].raw.uri}")
    return ClusterSummary(
        cluster_id=ev.cluster.cluster_id, succeeded=len(ev.cluster.quanta), failed=0
    ).model_dump(mode="json")


def record_failure(event: dict, context: Any = None) -> dict:
    return {"recorded": len(RecordFailureEvent.model_validate(event).cluster.quanta)}


def summarize(event: dict, context: Any = None) -> dict:
    plan_result = SummarizeEvent.model_validate(event).plan
    failed_keys = sorted(tuple(k) for k in event["plan"].get("stub_failed_quanta", []))
    failures = [
        QuantumResult(
            instrument=i,
            exposure=e,
            detector=d,
            status="failed",
            error=f"IsrInputError: cluster of detector {d} failed as a whole",
        )
        for i, e, d in failed_keys
    ]
    succeeded = plan_result.quanta - len(failures)
    summary = VisitSummary(
        execution_id=plan_result.execution_id,
        quanta=plan_result.quanta,
        succeeded=succeeded,
        failed=len(failures),
        skipped_existing=plan_result.skipped_existing,
        failures=failures[:50],
        total_isr_seconds=round(succeeded * ISR_SECONDS_PER_QUANTUM, 3),
        max_isr_seconds=ISR_SECONDS_PER_QUANTUM if succeeded else 0.0,
        registry_messages=2 * plan_result.quanta + 1,
    )
    if plan_result.quanta and len(failures) / plan_result.quanta > plan_result.max_failure_fraction:
        raise TooManyFailuresError(
            f"{len(failures)} of {plan_result.quanta} quanta failed "
            f"(tolerated fraction {plan_result.max_failure_fraction:g})"
        )
    return summary.model_dump(mode="json")


HANDLERS = {
    PLAN_FUNCTION: plan,
    ISR_FUNCTION: isr,
    RECORD_FAILURE_FUNCTION: record_failure,
    MOSAIC_FUNCTION: mosaic,
    SUMMARIZE_FUNCTION: summarize,
}
"""The stub handlers keyed by Lambda function name (both interpreters dispatch through this)."""


# --------------------------------------------------------------------------- BuildCalibration stubs
#
# For statemachines/build_calibration.asl.json. Pure functions of the event as above, with the
# detectors of the input's ``where`` ("detector IN (a, b, ...)") as the masters, three inputs
# each, one ISR cluster per detector (none for defects). By detector id: 7's ISR worker raises
# IsrInputError (so PrepareCombine records its master as failed), 5's combine answers
# ``status: failed``, 9's combine Lambda raises CombineError. Every combine is routed to the
# Lambda: moto cannot run ecs:runTask.sync (tests/calibration runs the Fargate route locally).

CALIB_PLAN_FUNCTION = "isrflow-crosscheck-calib-plan"
NORMALIZE_FUNCTION = "isrflow-crosscheck-normalize-flats"
PREPARE_COMBINE_FUNCTION = "isrflow-crosscheck-prepare-combine"
COMBINE_FUNCTION = "isrflow-crosscheck-combine"
RECORD_COMBINE_FAILURE_FUNCTION = "isrflow-crosscheck-record-combine-failure"
DELETE_INTERMEDIATES_FUNCTION = "isrflow-crosscheck-delete-intermediates"
CERTIFY_FUNCTION = "isrflow-crosscheck-certify-calib"
SUMMARIZE_CALIB_FUNCTION = "isrflow-crosscheck-summarize-calib"
ISR_FAILS, COMBINE_ANSWERS_FAILED, COMBINE_RAISES = 7, 5, 9


class CombineError(Exception):
    """Raised by the combine stub for detector 9 (a named Lambda error, caught per item)."""


def calib_substitutions() -> dict[str, str]:
    return {
        "CalibPlanFunctionArn": function_arn(CALIB_PLAN_FUNCTION),
        "IsrFunctionArn": function_arn(ISR_FUNCTION),
        "RecordFailureFunctionArn": function_arn(RECORD_FAILURE_FUNCTION),
        "NormalizeFlatsFunctionArn": function_arn(NORMALIZE_FUNCTION),
        "PrepareCombineFunctionArn": function_arn(PREPARE_COMBINE_FUNCTION),
        "CombineFunctionArn": function_arn(COMBINE_FUNCTION),
        "RecordCombineFailureFunctionArn": function_arn(RECORD_COMBINE_FAILURE_FUNCTION),
        "DeleteIntermediatesFunctionArn": function_arn(DELETE_INTERMEDIATES_FUNCTION),
        "CertifyCalibFunctionArn": function_arn(CERTIFY_FUNCTION),
        "SummarizeCalibFunctionArn": function_arn(SUMMARIZE_CALIB_FUNCTION),
        "DataBucketName": BUCKET,
        "CombineClusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/combine",
        "CombineTaskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/isrflow-combine:1",
        "CombineSubnetIds": "subnet-0123456789abcdef0",
        "CombineSecurityGroupIds": "sg-0123456789abcdef0",
        "CombineAssignPublicIp": "ENABLED",
    }


def calib_detectors(spec: dict[str, Any]) -> list[int]:
    match = re.search(r"detector\s+IN\s*\(([^)]*)\)", spec.get("where") or "")
    return sorted({int(d) for d in re.findall(r"\d+", match.group(1))}) if match else []


def calib_clusters(spec: dict[str, Any]) -> list[dict[str, Any]]:
    if spec["calib_type"] == "defects":
        return []
    quanta_spec = {
        "input_collections": spec["input_collections"],
        "calib_collection": spec.get("calib_collection") or "Generic/calib",
        "output_run": spec["output_run"],
    }
    return [
        {
            "cluster_id": f"Generic-{d}-{'bad' if d == ISR_FAILS else 100}",
            "quanta": [_quantum(quanta_spec, "Generic", e, d) for e in (100, 101, 102)],
        }
        for d in calib_detectors(spec)
    ]


def calib_items(plan: dict[str, Any]) -> list[dict[str, Any]]:
    detectors = [int(k) for k in plan["stub_detectors"]]
    items = []
    for d in detectors:
        if d == ISR_FAILS and plan["calib_type"] != "defects":
            continue
        key = calib_layout.master_key("Generic", d, "r" if plan["calib_type"] == "flat" else None)
        items.append(
            CombineItem(
                key=key,
                instrument="Generic",
                detector=d,
                physical_filter="r" if plan["calib_type"] == "flat" else None,
                route="lambda",
                request_uri=plan["requests_prefix"] + key + ".json",
                result_uri=plan["master_results_prefix"] + key + ".json",
            ).model_dump(mode="json")
        )
    return items


def calib_objects(execution_id: str, spec: dict[str, Any]) -> dict[str, str]:
    """The ISR and combine manifests the plan and PrepareCombine stubs "wrote" for this input."""
    plan = calib_plan({"input": spec, "execution_id": execution_id})
    prepared = prepare_combine({"plan": plan})
    return {
        plan["manifest_key"]: json.dumps(calib_clusters(spec), sort_keys=True),
        prepared["manifest_key"]: json.dumps(calib_items(plan), sort_keys=True),
    }


def calib_plan(event: dict, context: Any = None) -> dict:
    ev = CalibPlanEvent.model_validate(event)
    spec = ev.input.model_dump(mode="json", exclude_none=True)
    key = layout.execution_key(ev.execution_id)
    detectors = calib_detectors(spec)
    clusters = calib_clusters(spec)
    result = CalibPlanResult(
        execution_id=ev.execution_id,
        execution_key=key,
        calib_type=ev.input.calib_type,
        output_run=ev.input.output_run,
        mode=ev.input.mode,
        manifest_key=manifest_key_for(ev.execution_id),
        manifest_uri=layout.manifest_uri(DATASTORE_ROOT, key),
        clusters=len(clusters),
        inputs=3 * len(clusters) or 2 * len(detectors),
        failed_at_plan=0,
        groups_uri=calib_layout.groups_uri(DATASTORE_ROOT, key),
        masters=len(detectors),
        isr_results_prefix=calib_layout.isr_results_prefix(DATASTORE_ROOT, key),
        master_results_prefix=calib_layout.master_results_prefix(DATASTORE_ROOT, key),
        requests_prefix=calib_layout.requests_prefix(DATASTORE_ROOT, key),
        isr_config=ev.input.isr_config,
        statistic=ev.input.statistic,
        clip=ev.input.clip,
        iterations=ev.input.iterations,
        min_inputs=ev.input.min_inputs,
        route=ev.input.route,
        certify=ev.input.certify,
        certify_requested=ev.input.certify is not None,
        max_concurrency=ev.input.max_concurrency,
        max_failure_fraction=ev.input.max_failure_fraction,
    ).model_dump(mode="json")
    result["stub_detectors"] = detectors
    return result


def normalize(event: dict, context: Any = None) -> dict:
    step = CalibStepEvent.model_validate(event)
    return NormalizeResult(
        scales_uri=calib_layout.scales_uri(DATASTORE_ROOT, step.plan.execution_key),
        filters=1,
        exposures=3,
        detectors=len(event["plan"]["stub_detectors"]),
    ).model_dump(mode="json")


def prepare_combine(event: dict, context: Any = None) -> dict:
    step = CalibStepEvent.model_validate(event)
    items = calib_items(event["plan"])
    manifest = calib_layout.combine_manifest_uri(DATASTORE_ROOT, step.plan.execution_key)
    return PrepareCombineResult(
        manifest_key=layout.bucket_key(manifest, DATASTORE_ROOT),
        manifest_uri=manifest,
        masters=len(items),
        failed_before_combine=step.plan.masters - len(items),
        routes={"lambda": len(items), "fargate": 0},
    ).model_dump(mode="json")


def combine(event: dict, context: Any = None) -> dict:
    uri = CombineEvent.model_validate(event).request_uri
    key = uri.rsplit("/", 1)[-1].removesuffix(".json")
    detector = int(key.split("-")[1])
    if detector == COMBINE_RAISES:
        raise CombineError(f"{uri}: unreadable input")
    status = "failed" if detector == COMBINE_ANSWERS_FAILED else "succeeded"
    return {
        "key": key,
        "status": status,
        "route": "lambda",
        "output_uri": None,
        "duration_s": 1.0,
        "error": "CalibrationError: an input is truncated" if status == "failed" else None,
    }


def _calib_failed(plan_doc: dict) -> list[int]:
    bad = {COMBINE_ANSWERS_FAILED, COMBINE_RAISES} | (
        {ISR_FAILS} if plan_doc["calib_type"] != "defects" else set()
    )
    return [d for d in plan_doc["stub_detectors"] if d in bad]


def record_combine_failure(event: dict, context: Any = None) -> dict:
    ev = CombineFailureEvent.model_validate(event)
    return {"recorded": 1, "key": ev.state.item.key, "error": (ev.state.error or {}).get("Error", "failed")}


def delete_intermediates(event: dict, context: Any = None) -> dict:
    step = CalibStepEvent.model_validate(event)
    built = step.plan.masters - len(_calib_failed(event["plan"]))
    return IntermediatesDeleted(masters=built, deleted=3 * built).model_dump(mode="json")


def _too_many(step: CalibStepEvent, failed: list[int]) -> bool:
    masters = step.plan.masters
    return bool(masters and len(failed) / masters > step.plan.max_failure_fraction)


def certify_calib(event: dict, context: Any = None) -> dict:
    step = CalibStepEvent.model_validate(event)
    failed = _calib_failed(event["plan"])
    certify = step.plan.certify
    return {
        "certified": 0 if _too_many(step, failed) else step.plan.masters - len(failed),
        "collection": certify.collection if certify else None,
    }


def calib_summarize(event: dict, context: Any = None) -> dict:
    step = CalibStepEvent.model_validate(event)
    failed = _calib_failed(event["plan"])
    masters = step.plan.masters
    if _too_many(step, failed):
        raise TooManyFailuresError(
            f"{len(failed)} of {masters} {step.plan.calib_type} masters failed "
            f"(tolerated fraction {step.plan.max_failure_fraction:g})"
        )
    return CalibSummary(
        execution_id=step.plan.execution_id,
        calib_type=step.plan.calib_type,
        output_run=step.plan.output_run,
        masters=masters,
        succeeded=masters - len(failed),
        failed=len(failed),
        inputs=step.plan.inputs,
        inputs_failed=0,
        certified=masters - len(failed) if step.plan.certify_requested else 0,
        total_combine_seconds=float(masters - len(failed)),
        max_combine_seconds=1.0,
        registry_messages=masters,
    ).model_dump(mode="json")


HANDLERS.update(
    {
        CALIB_PLAN_FUNCTION: calib_plan,
        NORMALIZE_FUNCTION: normalize,
        PREPARE_COMBINE_FUNCTION: prepare_combine,
        COMBINE_FUNCTION: combine,
        RECORD_COMBINE_FAILURE_FUNCTION: record_combine_failure,
        DELETE_INTERMEDIATES_FUNCTION: delete_intermediates,
        CERTIFY_FUNCTION: certify_calib,
        SUMMARIZE_CALIB_FUNCTION: calib_summarize,
    }
)
