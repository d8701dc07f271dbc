"""The sample events' call chains, with the way a function is called left to the caller.

The same chains run in process (the handlers imported, moto in process, the code path
``sam local invoke -e events/<file>`` takes) and in the Lambda containers (tests/containers:
``sam local invoke`` against moto in server mode and PostgreSQL). ``call(function, event)``
is the Lambda invoke: ``function`` is the template's logical id, the answer is the handler's.
``check(name, event)`` sees every event that has a file in events/ before it is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path
from typing import Any

from isrflow.io.rawio import read_observations
from isrflow.local.containers.services import event_names
from isrflow.model.messages import DatasetMessage, dimension_records
from isrflow.registry.calib_import import calibration_message
from isrflow.simulate import SimulationRequest, simulate

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"
NAMES = event_names()
BUCKET = NAMES["bucket"]
ROOT = f"s3://{BUCKET}"
CALIB_EXECUTION = (
    f"arn:aws:states:{NAMES['region']}:{NAMES['account']}:execution:"
    f"{NAMES['stack']}-BuildCalibration:example-flat"
)

Call = Callable[[str, dict], Any]
Check = Callable[[str, dict], None]
WriterDraining = Callable[[], ContextManager[None]]

#: The function of template.yaml each events/ file is for (state machine inputs: the machine).
FUNCTION_OF_EVENT = {
    "plan.json": "PlanFunction",
    "isr_cluster.json": "IsrFunction",
    "isr_mosaic.json": "MosaicFunction",
    "summarize.json": "SummarizeFunction",
    "summarize_record_failure.json": "RecordFailureFunction",
    "registry_writer_sqs_batch.json": "RegistryWriterFunction",
    "ingest_object_created.json": "IngestFunction",
    "ingest_object_created_not_fits.json": "IngestFunction",
    "calib_plan.json": "CalibPlanFunction",
    "calib_isr_cluster.json": "IsrFunction",
    "calib_normalize.json": "NormalizeFlatsFunction",
    "calib_prepare_combine.json": "PrepareCombineFunction",
    "combine.json": "CombineFunction",
    "calib_delete_intermediates.json": "DeleteIntermediatesFunction",
    "calib_certify.json": "CertifyCalibFunction",
    "calib_summarize.json": "SummarizeCalibFunction",
    "calib_record_combine_failure.json": "RecordCombineFailureFunction",
    "migrate_create.json": "MigrateFunction",
    "process_visit_input.json": "ProcessVisitStateMachine",
    "build_calibration_input.json": "BuildCalibrationStateMachine",
}


def event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def key_of(uri: str) -> str:
    return uri[len(ROOT) + 1 :]


# --- ProcessVisit: HSC detector 50 of exposure 904000, as the events name it --------------------


def simulate_hsc_visit(out: Path):
    """HSC detector 50, one science exposure (904000, as in the events), full size."""
    return simulate(SimulationRequest(camera="hsc", detectors=[50], science=1, seed=9, out=out))


def stage_hsc_visit(night, s3, registry) -> None:
    """The raw and calibrations the ProcessVisit events name: in the bucket and registered."""
    raw = night.raws_of("science")[0]
    obs = read_observations(raw.path)[0]
    raw_msg = DatasetMessage(
        dataset_type="raw",
        run="HSC/raw/all",
        data_id=obs.data_id,
        uri=f"{ROOT}/HSC/raw/all/raw/HSC/{obs.exposure}/raw_HSC_{obs.exposure}_50.fits",
    )
    calib_msgs = []
    cal = night.calibrations[50]
    for f in (cal.bias, cal.dark, cal.defects, *cal.flat.values()):
        message, _, data = calibration_message(Path(f), "HSC/calib/20261119", ROOT)
        s3.put_object(Bucket=BUCKET, Key=key_of(message.uri), Body=data)
        calib_msgs.append(message)
    s3.put_object(Bucket=BUCKET, Key=key_of(raw_msg.uri), Body=Path(raw.path).read_bytes())
    registry.apply([*dimension_records(obs, "hsc"), raw_msg, *calib_msgs])
    registry.register_collection("HSC/calib", "CALIBRATION")
    registry.certify([m.dataset_id for m in calib_msgs], "HSC/calib", None, None)


def run_process_visit_chain(call: Call, writer_draining: WriterDraining) -> dict:
    """Plan, ISR of the one cluster, Summarize (while the writer drains the queue)."""
    plan = call("PlanFunction", event("plan.json"))
    isr = call("IsrFunction", event("isr_cluster.json"))
    with writer_draining():
        summary = call("SummarizeFunction", event("summarize.json"))
    out_key = key_of(event("isr_cluster.json")["cluster"]["quanta"][0]["output"]["uri"])
    return {"plan": plan, "isr": isr, "summary": summary, "output_key": out_key}


# --- BuildCalibration: flats of two small generic detectors --------------------------------------


def stage_calib_inputs(tmp: Path, s3, registry) -> None:
    """Two small generic detectors: 3 flats each in the bucket, the true bias and dark certified."""
    night = simulate(
        SimulationRequest(camera="generic", small=True, detectors=[0, 1], flat=3, seed=5, out=tmp / "sim")
    )
    messages = []
    for raw in night.raws:
        obs = read_observations(raw.path)[0]
        uri = f"{ROOT}/Generic/raw/all/raw/Generic/{obs.exposure}/raw_Generic_{obs.exposure}_{obs.detector}.fits"
        s3.put_object(Bucket=BUCKET, Key=key_of(uri), Body=Path(raw.path).read_bytes())
        messages += [
            *dimension_records(obs, "generic"),
            DatasetMessage(dataset_type="raw", run="Generic/raw/all", data_id=obs.data_id, uri=uri),
        ]
    calibs = []
    for cal in night.calibrations.values():
        for path in (cal.bias, cal.dark):
            message, _, data = calibration_message(Path(path), "Generic/calib/truth", ROOT)
            s3.put_object(Bucket=BUCKET, Key=key_of(message.uri), Body=data)
            calibs.append(message)
    registry.apply([*messages, *calibs])
    registry.register_collection("Generic/calib", "CALIBRATION")
    registry.certify([m.dataset_id for m in calibs], "Generic/calib", None, None)


def _manifest(s3, key: str) -> list:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def run_calib_chain(call: Call, check: Check, s3, writer_draining: WriterDraining) -> dict:
    """The BuildCalibration calls for the sample input, in the order the state machine makes them."""
    spec = event("build_calibration_input.json")
    ev = {"input": spec, "execution_id": CALIB_EXECUTION}
    check("calib_plan.json", ev)
    plan = call("CalibPlanFunction", ev)
    for i, cluster in enumerate(_manifest(s3, plan["manifest_key"])):
        ev = {
            "cluster": cluster,
            "execution_id": plan["execution_id"],
            "results_prefix": plan["isr_results_prefix"],
            "output_run": plan["output_run"],
            "isr_config": plan["isr_config"],
            "measure": True,
        }
        if i == 0:
            check("calib_isr_cluster.json", ev)
        assert call("IsrFunction", ev)["failed"] == 0
    ev = {"plan": plan}
    check("calib_normalize.json", ev)
    normalized = call("NormalizeFlatsFunction", ev)
    ev = {"plan": plan}
    check("calib_prepare_combine.json", ev)
    prepared = call("PrepareCombineFunction", ev)
    items = _manifest(s3, prepared["manifest_key"])
    combined = []
    for i, item in enumerate(items):
        ev = {"request_uri": item["request_uri"]}
        if i == 0:
            check("combine.json", ev)
        combined.append(call("CombineFunction", ev))
    ev = {"plan": plan}
    check("calib_delete_intermediates.json", ev)
    deleted = call("DeleteIntermediatesFunction", ev)
    ev = {"plan": plan}
    check("calib_certify.json", ev)
    certified = call("CertifyCalibFunction", ev)
    with writer_draining():
        ev = {"plan": plan}
        check("calib_summarize.json", ev)
        summary = call("SummarizeCalibFunction", ev)
    # what the state machine passes after a Fargate task stopped with a non-zero exit: the Catch's
    # States.TaskFailed error (Cause = the described task as JSON), that task parsed back, its exit code
    task = {
        "Containers": [
            {
                "ExitCode": 137,
                "LastStatus": "STOPPED",
                "Name": "combine",
                "Reason": "OutOfMemoryError: Container killed due to memory usage",
            }
        ],
        "LastStatus": "STOPPED",
        "StopCode": "EssentialContainerExited",
        "StoppedReason": "Essential container in task exited",
    }
    ev = {
        "state": {
            "item": items[1],
            "error": {"Error": "States.TaskFailed", "Cause": json.dumps(task, separators=(",", ":"))},
            "task": task,
            "exit_code": 137,
        },
    }
    check("calib_record_combine_failure.json", ev)
    recorded = call("RecordCombineFailureFunction", ev)
    return {
        "plan": plan,
        "normalized": normalized,
        "prepared": prepared,
        "combined": combined,
        "deleted": deleted,
        "certified": certified,
        "summary": summary,
        "recorded": recorded,
        "items": items,
    }
