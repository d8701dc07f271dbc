"""Between the ISR Map and the combine Map: Normalize (flats) and PrepareCombine.

- :func:`normalize_flats`: the level (clipped mean) of every ISR'd flat, measured by its ISR
  worker, goes into :func:`isrflow.calibration.normalize.normalize` per physical filter; the
  exposure scales are written to the datastore.
- :func:`prepare_combine`: per master, its successfully ISR'd inputs, their scales (dark time,
  the Normalize scale, or 1), the calibrations their ISR subtracted (whose noise the inputs
  share), the route (:func:`isrflow.calibration.routing.choose_route`) and one
  :class:`~isrflow.model.messages.CombineRequest` in the datastore; the combine manifest lists them.
  A master with fewer than ``min_inputs`` good inputs is recorded as failed here.

Pure Python (these run in the plan Lambda, which has no numpy).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import defaultdict
from collections.abc import Hashable

from isrflow.build_calibration import layout
from isrflow.build_calibration.plan import read_groups
from isrflow.calibration import routing
from isrflow.calibration.normalize import normalize
from isrflow.calibration.steps import DEFAULT_MASK_PLANES
from isrflow.io.storage import ObjectNotFoundError, storage_for
from isrflow.model.messages import (
    CalibStepEvent,
    CombineInputRef,
    CombineItem,
    CombineRequest,
    CommonCalibrationRef,
    FlatScalesDoc,
    MasterGroup,
    MasterResult,
    NormalizeResult,
    PrepareCombineResult,
    QuantumResult,
)
from isrflow.process_visit import layout as pv_layout
from isrflow.process_visit import results

#: Lambda settings of the combine function, from the plan function's environment (template.yaml);
#: these fallbacks are the template's defaults (3008 MB: the most a new AWS account allows).
DEFAULT_LAMBDA_MEMORY_MB = 3008
DEFAULT_LAMBDA_TIMEOUT_S = 900


def _isr_results(plan) -> dict[tuple[str, int | None, int], QuantumResult]:
    """Each input's ISR result by (instrument, exposure, detector); inputs without one (never
    recorded by the worker) are absent, and treated as failed."""
    return dict(results.read_results(plan.isr_results_prefix).items())


def normalize_flats(event: CalibStepEvent) -> NormalizeResult:
    """Solve the flat levels for one scale per exposure (per physical filter); write the scales."""
    plan = event.plan
    groups = read_groups(plan.groups_uri)
    isr_results = _isr_results(plan)
    levels: dict[str, dict[tuple[Hashable, Hashable], tuple[float | None, float | None]]] = defaultdict(dict)
    for g in groups:
        for item in g.inputs:
            r = isr_results.get((g.instrument, item.exposure, g.detector))
            if r is not None and r.status == "succeeded" and r.stats:
                levels[g.physical_filter or ""][(g.detector, item.exposure)] = (
                    r.stats.get("mean"),
                    r.stats.get("n"),
                )
    doc = FlatScalesDoc(exposure={}, detector={})
    for physical_filter, table in levels.items():
        scales = normalize(table)
        doc.exposure[physical_filter] = {str(e): v for e, v in scales.exposure.items()}
        doc.detector[physical_filter] = {str(d): v for d, v in scales.detector.items()}
    root = layout.root_of(plan.groups_uri)
    uri = layout.scales_uri(root, plan.execution_key)
    storage_for(uri).write_bytes(uri, doc.model_dump_json().encode())
    return NormalizeResult(
        scales_uri=uri,
        filters=len(doc.exposure),
        exposures=len({e for table in levels.values() for _, e in table}),
        detectors=len({d for table in levels.values() for d, _ in table}),
    )


def _failed(plan, g: MasterGroup, error: str) -> MasterResult:
    result = MasterResult(
        key=g.key,
        calib_type=g.calib_type,
        instrument=g.instrument,
        detector=g.detector,
        physical_filter=g.physical_filter,
        status="failed",
        error=error,
    )
    uri = plan.master_results_prefix + g.key + ".json"
    storage_for(uri).write_bytes(uri, result.model_dump_json().encode())
    return result


def _commons(good: list[tuple], n: int) -> list[CommonCalibrationRef]:
    """The calibrations the inputs' ISR subtracted, with the fraction of inputs and mean squared factor."""
    by_calib: dict[tuple[str, str], list[float]] = defaultdict(list)
    for item, stats, scale in good:
        for role, calib in item.calibs.items():
            factor = (
                (1.0 / scale)
                if role == "bias"
                else (stats.get("darktime", 0.0) / scale)
                if role == "dark"
                else None
            )
            if factor is not None:
                by_calib[(role, calib.uri)].append(factor * factor)
    return [
        CommonCalibrationRef(uri=uri, fraction=len(f2) / n, factor2=sum(f2) / len(f2))
        for (_, uri), f2 in sorted(by_calib.items())
    ]


def prepare_combine(event: CalibStepEvent) -> PrepareCombineResult:
    """Write one combine request per master that has enough good inputs, and the combine manifest."""
    plan = event.plan
    groups = read_groups(plan.groups_uri)
    isr_results = _isr_results(plan) if plan.calib_type != "defects" else {}
    scales = FlatScalesDoc(exposure={}, detector={})
    if plan.calib_type == "flat":
        root = layout.root_of(plan.groups_uri)
        uri = layout.scales_uri(root, plan.execution_key)
        # no scales written: every flat input is recorded as having no usable scale
        with contextlib.suppress(ObjectNotFoundError):
            scales = FlatScalesDoc.model_validate_json(storage_for(uri).read_bytes(uri))
    memory = float(os.environ.get(routing.ENV_LAMBDA_MEMORY) or DEFAULT_LAMBDA_MEMORY_MB)
    timeout = float(os.environ.get(routing.ENV_LAMBDA_TIMEOUT) or DEFAULT_LAMBDA_TIMEOUT_S)
    items: list[CombineItem] = []
    failed = 0
    for g in groups:
        if plan.calib_type == "defects":
            inputs = [CombineInputRef(uri=i.uri, dataset_id=i.dataset_id, role=i.role) for i in g.inputs]
            commons: list[CommonCalibrationRef] = []
            input_bytes, columns = 0, 4096
        else:
            good, problems = [], []
            for item in g.inputs:
                r = isr_results.get((g.instrument, item.exposure, g.detector))
                if r is None or r.status != "succeeded" or not r.output_uri:
                    problems.append(f"{item.exposure}: {r.error if r is not None else 'no ISR result'}")
                    continue
                stats = r.stats or {}
                if plan.calib_type == "dark":
                    scale = float(stats.get("darktime") or 0.0)
                elif plan.calib_type == "flat":
                    scale = float(
                        (scales.exposure.get(g.physical_filter or "") or {}).get(str(item.exposure), 0.0)
                    )
                else:
                    scale = 1.0
                if not scale > 0:
                    problems.append(
                        f"{item.exposure}: no usable scale ({'dark time' if plan.calib_type == 'dark' else 'flat level'})"
                    )
                    continue
                good.append((item, stats, scale, r))
            if len(good) < plan.min_inputs:
                detail = "; ".join(problems[:5])
                _failed(
                    plan,
                    g,
                    f"NotEnoughInputsError: {len(good)} of {len(g.inputs)} inputs usable, "
                    f"min_inputs {plan.min_inputs}" + (f" ({detail})" if detail else ""),
                )
                failed += 1
                continue
            inputs = [
                CombineInputRef(uri=item.uri, dataset_id=item.dataset_id, exposure=item.exposure, scale=scale)
                for item, _, scale, _ in good
            ]
            commons = _commons([(item, stats, scale) for item, stats, scale, _ in good], len(good))
            columns = max(int((good[0][1] or {}).get("cols") or 4096), 1)
            input_bytes = sum(r.output_size or 0 for *_, r in good)
        decision = routing.choose_route(
            n_inputs=len(inputs) + len(commons),
            input_bytes=input_bytes,
            columns=columns,
            lambda_memory_mb=memory,
            lambda_timeout_s=timeout,
            forced=plan.route,
        )
        request = CombineRequest(
            execution_id=plan.execution_id,
            key=g.key,
            calib_type=g.calib_type,
            instrument=g.instrument,
            detector=g.detector,
            detector_name=g.detector_name,
            physical_filter=g.physical_filter,
            inputs=inputs,
            common=commons,
            statistic=plan.statistic,
            clip=plan.clip,
            iterations=plan.iterations,
            mask_planes=list(DEFAULT_MASK_PLANES),
            output_run=plan.output_run,
            data_id=g.data_id,
            dataset_id=g.dataset_id,
            output_uri=g.output_uri,
            replace=g.replace,
            result_uri=plan.master_results_prefix + g.key + ".json",
            route=decision.route,
            route_reason=decision.reason,
            memory_budget_mb=plan.combine_memory_mb,
        )
        request_uri = plan.requests_prefix + g.key + ".json"
        storage_for(request_uri).write_bytes(request_uri, request.model_dump_json().encode())
        items.append(
            CombineItem(
                key=g.key,
                instrument=g.instrument,
                detector=g.detector,
                physical_filter=g.physical_filter,
                route=decision.route,
                request_uri=request_uri,
                result_uri=request.result_uri,
            )
        )
    root = layout.root_of(plan.groups_uri)
    manifest = layout.combine_manifest_uri(root, plan.execution_key)
    storage_for(manifest).write_bytes(
        manifest, json.dumps([i.model_dump(mode="json") for i in items]).encode()
    )
    routes = {
        "lambda": sum(i.route == "lambda" for i in items),
        "fargate": sum(i.route == "fargate" for i in items),
    }
    return PrepareCombineResult(
        manifest_key=pv_layout.bucket_key(manifest, root),
        manifest_uri=manifest,
        masters=len(items),
        failed_before_combine=failed,
        routes=routes,
    )
