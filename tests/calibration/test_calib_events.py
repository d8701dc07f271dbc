"""The BuildCalibration sample events (``events/calib_*.json``, ``events/combine.json``,
``events/build_calibration_input.json``) validate and run through their handlers, in the
order the state machine calls them, against moto S3/SQS and a registry with s3:// URIs.

Each event the chain makes is compared with its file, so the files stay what the handlers
really receive. After a deliberate change, rewrite them with
``python tests/calibration/test_events.py --write``.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import boto3
import pytest
from isrflow.calib_import import calibration_message
from isrflow.messages import (
    BuildCalibrationInput,
    CalibPlanEvent,
    CalibStepEvent,
    CombineEvent,
    CombineFailureEvent,
    DatasetMessage,
    IsrClusterEvent,
    dimension_records,
)
from isrflow.rawio import read_observations
from isrflow.registry import Registry
from isrflow.settings import (
    ENV_DATASTORE_ROOT,
    ENV_REGISTRY_QUEUE_URL,
    ENV_REGISTRY_SECRET_ARN,
    ENV_REGISTRY_URL,
)
from isrflow.simulate import SimulationRequest, simulate
from moto import mock_aws

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from functions.calib_plan.app import lambda_handler as calib_plan_handler
from functions.combine.app import lambda_handler as combine_handler
from functions.isr.app import lambda_handler as isr_handler
from functions.summarize.app import lambda_handler as summarize_handler
from tests.sqs_writer_drain import drain_into_writer

EVENTS = REPO / "events"
BUCKET = "isrflow-data-123456789012"
ROOT = f"s3://{BUCKET}"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:isrflow-BuildCalibration:example-flat"
FILES = {
    "build_calibration_input.json": BuildCalibrationInput.model_validate,
    "calib_plan.json": CalibPlanEvent.model_validate,
    "calib_isr_cluster.json": IsrClusterEvent.model_validate,
    "calib_normalize.json": CalibStepEvent.model_validate,
    "calib_prepare_combine.json": CalibStepEvent.model_validate,
    "combine.json": CombineEvent.model_validate,
    "calib_certify.json": CalibStepEvent.model_validate,
    "calib_summarize.json": CalibStepEvent.model_validate,
    "calib_record_combine_failure.json": CombineFailureEvent.model_validate,
}


class _Context:
    memory_limit_in_mb = "2048"


@pytest.mark.parametrize("name", sorted(FILES))
def test_event_file_validates(name):
    FILES[name](json.loads((EVENTS / name).read_text()))


def _setup(tmp: Path, s3, registry) -> None:
    """Two small generic detectors: 3 flats each in moto S3, the true bias and dark certified."""
    night = simulate(SimulationRequest(camera="generic", small=True, detectors=[0, 1], flat=3, seed=5, out=tmp / "sim"))
    messages = []
    for raw in night.raws:
        obs = read_observations(raw.path)[0]
        uri = f"{ROOT}/Generic/raw/all/raw/Generic/{obs.exposure}/raw_Generic_{obs.exposure}_{obs.detector}.fits"
        s3.put_object(Bucket=BUCKET, Key=uri[len(ROOT) + 1:], Body=Path(raw.path).read_bytes())
        messages += [*dimension_records(obs, "generic"),
                     DatasetMessage(dataset_type="raw", run="Generic/raw/all", data_id=obs.data_id, uri=uri)]
    calibs = []
    for cal in night.calibrations.values():
        for path in (cal.bias, cal.dark):
            message, _, data = calibration_message(Path(path), "Generic/calib/truth", ROOT)
            s3.put_object(Bucket=BUCKET, Key=message.uri[len(ROOT) + 1:], Body=data)
            calibs.append(message)
    registry.apply([*messages, *calibs])
    registry.register_collection("Generic/calib", "CALIBRATION")
    registry.certify([m.dataset_id for m in calibs], "Generic/calib", None, None)


def run_chain(tmp: Path, check) -> dict:
    """The BuildCalibration calls for the sample input; ``check(name, event)`` sees each event
    that has a file before it goes to its handler."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    queue_url = boto3.client("sqs").create_queue(QueueName="registry")["QueueUrl"]
    registry = Registry.create(f"sqlite:///{tmp / 'registry.sqlite3'}", ROOT)
    _setup(tmp, s3, registry)
    import os

    os.environ.update({ENV_DATASTORE_ROOT: ROOT, ENV_REGISTRY_QUEUE_URL: queue_url, ENV_REGISTRY_URL: registry.url,
                       ENV_REGISTRY_SECRET_ARN: ""})
    spec = json.loads((EVENTS / "build_calibration_input.json").read_text())
    event = {"action": "plan", "input": spec, "execution_id": EXECUTION}
    check("calib_plan.json", event)
    plan = calib_plan_handler(event)
    clusters = json.loads(s3.get_object(Bucket=BUCKET, Key=plan["manifest_key"])["Body"].read())
    for i, cluster in enumerate(clusters):
        event = {"cluster": cluster, "execution_id": plan["execution_id"], "results_prefix": plan["isr_results_prefix"],
                 "output_run": plan["output_run"], "isr_config": plan["isr_config"], "measure": True}
        if i == 0:
            check("calib_isr_cluster.json", event)
        assert isr_handler(event)["failed"] == 0
    event = {"action": "normalize", "plan": plan}
    check("calib_normalize.json", event)
    normalized = calib_plan_handler(event)
    assert (normalized["filters"], normalized["exposures"], normalized["detectors"]) == (1, 3, 2)
    event = {"action": "prepare_combine", "plan": plan}
    check("calib_prepare_combine.json", event)
    prepared = calib_plan_handler(event)
    assert prepared["masters"] == 2 and prepared["routes"] == {"lambda": 2, "fargate": 0}
    items = json.loads(s3.get_object(Bucket=BUCKET, Key=prepared["manifest_key"])["Body"].read())
    for i, item in enumerate(items):
        event = {"request_uri": item["request_uri"]}
        if i == 0:
            check("combine.json", event)
        answer = combine_handler(event, _Context())
        assert answer["status"] == "succeeded", answer
    event = {"action": "certify_calib", "plan": plan}
    check("calib_certify.json", event)
    assert summarize_handler(event)["certified"] == 2
    stop = threading.Event()
    writer = threading.Thread(target=drain_into_writer, args=(queue_url, stop))
    writer.start()
    try:
        event = {"action": "summarize_calib", "plan": plan}
        check("calib_summarize.json", event)
        summary = summarize_handler(event)
    finally:
        stop.set()
        writer.join()
    event = {"action": "record_combine_failure", "state": {"item": items[1], "task": {
        "Containers": [{"ExitCode": 137, "Reason": "OutOfMemoryError: Container killed due to memory usage"}],
        "StoppedReason": "Essential container in task exited"}}}
    check("calib_record_combine_failure.json", event)
    recorded = summarize_handler(event)
    return {"summary": summary, "registry": registry, "recorded": recorded, "items": items}


@pytest.fixture
def aws(monkeypatch):
    for k, v in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(k, v)
    for k in (ENV_DATASTORE_ROOT, ENV_REGISTRY_QUEUE_URL, ENV_REGISTRY_URL, ENV_REGISTRY_SECRET_ARN):
        monkeypatch.setenv(k, "")
    with mock_aws():
        yield


def test_events_run_through_their_handlers(aws, tmp_path):
    seen = []

    def check(name, event):
        assert FILES[name](event) is not None
        assert event == json.loads((EVENTS / name).read_text()), f"{name} differs from what the handlers send"
        seen.append(name)

    out = run_chain(tmp_path, check)
    assert sorted(seen) == sorted(set(FILES) - {"build_calibration_input.json"})
    summary = out["summary"]
    assert (summary["masters"], summary["succeeded"], summary["certified"], summary["inputs"]) == (2, 2, 2, 6)
    certified = out["registry"].query_datasets("flat", ["Generic/calib"])
    assert sorted(r.data_id["detector"] for r in certified) == [0, 1]
    assert all(r.uri.startswith(ROOT) for r in certified)
    assert len(out["registry"].provenance(certified[0].id)) == 3
    # the sample failure names a master that had succeeded: it is now failed, with the task's reason
    assert out["recorded"]["error"] == ("FargateTaskFailed: exit code 137; OutOfMemoryError: Container killed due to "
                                        "memory usage; Essential container in task exited after the master was written")


def _write() -> None:
    import os
    import tempfile

    os.environ.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"})

    def write(name, event):
        (EVENTS / name).write_text(json.dumps(event, indent=2) + "\n")
        print("wrote", EVENTS / name)

    with mock_aws(), tempfile.TemporaryDirectory() as tmp:
        run_chain(Path(tmp), write)


if __name__ == "__main__" and "--write" in sys.argv:
    _write()
