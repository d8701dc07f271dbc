"""One combine, as the ``combine`` Lambda and the Fargate task run it (the same call).

:func:`run_combine` reads the :class:`~isrflow.model.messages.CombineRequest` at a datastore URI,
builds the master (:func:`isrflow.calibration.combine.combine_files`, or the defects of
:mod:`isrflow.calibration.defects` from a master dark and flat), sends its dataset message
(with the inputs as provenance) to the registry queue, and writes the
:class:`~isrflow.model.messages.MasterResult` next to the execution's other results. A failure is
recorded in that result with its reason (``ErrorClass: message``) rather than raised, so a
Lambda answers normally and the Fargate entry point exits 1.

Strip budget: the request's ``memory_budget_mb`` if set, else what the worker's memory
leaves (:func:`isrflow.calibration.routing.strip_budget_bytes`): the Lambda's configured
memory, or ``ISRFLOW_COMBINE_MEMORY_MB`` (the Fargate task's memory, from its definition).
"""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime

from isrflow import __version__
from isrflow.calibration import routing
from isrflow.infra.queues import QueueSender
from isrflow.io import formats
from isrflow.io.storage import storage_for
from isrflow.model.errors import ConfigError
from isrflow.model.messages import CombineRequest, DatasetMessage, MasterResult, ProvenanceInput
from isrflow.process_visit.worker import message_id, peak_memory_mb

DEFAULT_MEMORY_MB = 4096


def worker_memory_mb(context_memory_mb: float | str | None = None) -> float:
    """The memory this worker has: the Lambda context's, else ``ISRFLOW_COMBINE_MEMORY_MB``."""
    if context_memory_mb:
        return float(context_memory_mb)
    return float(os.environ.get(routing.ENV_TASK_MEMORY) or DEFAULT_MEMORY_MB)


def read_request(uri: str) -> CombineRequest:
    try:
        return CombineRequest.model_validate_json(storage_for(uri).read_bytes(uri))
    except ValueError as exc:  # pydantic ValidationError
        raise ConfigError(f"{uri}: not a valid combine request ({exc})") from None


def _build_master(request: CombineRequest, budget: int) -> tuple[int, str, dict]:
    from isrflow.calibration.combine import CombineInput, CombineSettings, CommonCalibration, combine_files

    settings = CombineSettings(
        statistic=request.statistic,
        clip=request.clip,
        iterations=request.iterations,
        mask_planes=tuple(request.mask_planes),
        budget_bytes=budget,
    )
    inputs = [
        CombineInput(i.uri, i.scale, str(i.exposure) if i.exposure is not None else "")
        for i in request.inputs
    ]
    common = [CommonCalibration(c.uri, c.fraction, c.factor2) for c in request.common]
    extra = {"HIERARCH CALIB ROUTE": request.route}
    report = combine_files(inputs, request.output_uri, request.calib_type, settings, extra, common)
    return (
        report.size,
        report.sha256,
        {
            "strips": report.strips,
            "rows_per_strip": report.rows_per_strip,
            "no_data_pixels": report.no_data_pixels,
            "workers": report.workers,
        },
    )


def _build_defects(request: CombineRequest) -> tuple[int, str, dict]:
    from isrflow.calibration.defects import boxes_of, find_defects
    from isrflow.calibration.mef_writer import publish, temp_file
    from isrflow.io.exposure_io import read_exposure, write_defects

    def load(uri: str):
        return read_exposure(storage_for(uri).read_bytes(uri), uri)

    darks = [load(i.uri) for i in request.inputs if i.role == "dark"]
    flats = [load(i.uri) for i in request.inputs if i.role == "flat"]
    dark = (darks[0].image, darks[0].mask) if darks else None
    defects, counts = find_defects(dark, [(f.image, f.mask) for f in flats])
    first = (darks or flats)[0].header
    header = {
        key: first[key]
        for key in (formats.KW_INSTRUMENT, formats.KW_DETECTOR, formats.KW_DETNAME)
        if key in first
    }
    header.update(
        {
            formats.KW_CALIB_TYPE: "defects",
            formats.KW_UNITS: "",
            formats.KW_SOFTWARE: __version__,
            "CALIBDAT": datetime.now(UTC).isoformat(timespec="seconds"),
            "NHOT": counts["hot"],
            "NCOLD": counts["cold"],
            "NNODATA": counts["no_data"],
            "NDEFECTS": counts["total"],
        }
    )
    for i, item in enumerate(request.inputs):
        header[f"HIERARCH CALIB INPUT {i}"] = f"{item.role} {item.dataset_id}"
    fd, tmp = temp_file(request.output_uri)
    os.close(fd)
    try:
        write_defects(tmp, boxes_of(defects), header)
        data = tmp.read_bytes()
        publish(tmp, request.output_uri)
    finally:
        tmp.unlink(missing_ok=True)
    return len(data), hashlib.sha256(data).hexdigest(), {"defects": counts}


def run_combine(request_uri: str, sender: QueueSender, *, memory_mb: float | None = None) -> MasterResult:
    """Build one master from its request; always writes and returns its result (see the module docstring)."""
    start = time.perf_counter()
    request = read_request(request_uri)
    base = {
        "key": request.key,
        "calib_type": request.calib_type,
        "instrument": request.instrument,
        "detector": request.detector,
        "physical_filter": request.physical_filter,
        "route": request.route,
        "n_inputs": len(request.inputs),
    }
    try:
        if request.calib_type == "defects":
            size, sha, extra = _build_defects(request)
        else:
            budget = (
                int(request.memory_budget_mb * (1 << 20))
                if request.memory_budget_mb
                else routing.strip_budget_bytes(memory_mb or worker_memory_mb())
            )
            size, sha, extra = _build_master(request, budget)
        roles = [ProvenanceInput(dataset_id=i.dataset_id, role=i.role) for i in request.inputs]
        message = DatasetMessage(
            dataset_type=request.calib_type,
            run=request.output_run,
            data_id=request.data_id,
            uri=request.output_uri,
            size=size,
            sha256=sha,
            inputs=roles,
            replace=request.replace,
            execution_id=request.execution_id,
            message_id=message_id(request.execution_id, request.dataset_id),
        )
        sender.send([message])
        result = MasterResult(
            **base,
            status="succeeded",
            output_uri=request.output_uri,
            dataset_id=request.dataset_id,
            duration_s=time.perf_counter() - start,
            peak_memory_mb=peak_memory_mb(),
            messages_sent=1,
            **extra,
        )
    except Exception as exc:  # recorded with its reason; the state machine reads the result
        result = MasterResult(
            **base,
            status="failed",
            duration_s=time.perf_counter() - start,
            peak_memory_mb=peak_memory_mb(),
            error=f"{type(exc).__name__}: {exc}"[:2000],
        )
    storage_for(request.result_uri).write_bytes(request.result_uri, result.model_dump_json().encode())
    return result
