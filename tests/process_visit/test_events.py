"""Every events/ file validates against its handler's model and runs through its handler,
the code path `sam local invoke -e events/<file>` takes, against moto S3/SQS."""

from __future__ import annotations

import json
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
    MosaicEvent,
    PlanEvent,
    ProcessVisitInput,
    RecordFailureEvent,
    S3ObjectCreatedEvent,
    SummarizeEvent,
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

from functions.isr.app import lambda_handler as isr_handler
from functions.plan.app import lambda_handler as plan_handler
from functions.registry_writer.app import parse_records
from functions.summarize.app import lambda_handler as summarize_handler
from tests.sqs_writer_drain import drain_into_writer

EVENTS = Path(__file__).resolve().parents[2] / "events"
MODELS = {
    "process_visit_input.json": ProcessVisitInput.model_validate,
    "plan.json": PlanEvent.model_validate,
    "isr_cluster.json": IsrClusterEvent.model_validate,
    "summarize.json": SummarizeEvent.model_validate,
    "summarize_record_failure.json": RecordFailureEvent.model_validate,
    "registry_writer_sqs_batch.json": parse_records,
    "ingest_object_created.json": S3ObjectCreatedEvent.model_validate,
    "ingest_object_created_not_fits.json": S3ObjectCreatedEvent.model_validate,
    "isr_mosaic.json": MosaicEvent.model_validate,
    # BuildCalibration: run through their handlers in tests/calibration/test_events.py
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
BUCKET = "isrflow-data-123456789012"
ROOT = f"s3://{BUCKET}"


def _event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda p: p.name)
def test_every_event_validates(path):
    assert path.name in MODELS, f"{path.name}: add its model to MODELS (every event must be checked)"
    MODELS[path.name](json.loads(path.read_text()))


@pytest.fixture(scope="module")
def hsc_night(tmp_path_factory):
    """HSC detector 50, one science exposure (904000, as in the events), full size."""
    return simulate(SimulationRequest(camera="hsc", detectors=[50], science=1, seed=9,
                                      out=tmp_path_factory.mktemp("hsc_events")))


@pytest.fixture
def aws(monkeypatch, tmp_path, hsc_night):
    """moto S3 + SQS holding the objects the events name; a SQLite registry with s3:// URIs."""
    for k, v in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        queue_url = boto3.client("sqs").create_queue(QueueName="registry")["QueueUrl"]
        registry = Registry.create(f"sqlite:///{tmp_path / 'registry.sqlite3'}", ROOT)
        raw = hsc_night.raws_of("science")[0]
        obs = read_observations(raw.path)[0]
        raw_msg = DatasetMessage(dataset_type="raw", run="HSC/raw/all", data_id=obs.data_id,
                                 uri=f"{ROOT}/HSC/raw/all/raw/HSC/{obs.exposure}/raw_HSC_{obs.exposure}_50.fits")
        calib_msgs = []
        cal = hsc_night.calibrations[50]
        for f in (cal.bias, cal.dark, cal.defects, *cal.flat.values()):
            message, _, data = calibration_message(Path(f), "HSC/calib/20261119", ROOT)
            s3.put_object(Bucket=BUCKET, Key=message.uri[len(ROOT) + 1:], Body=data)
            calib_msgs.append(message)
        s3.put_object(Bucket=BUCKET, Key=raw_msg.uri[len(ROOT) + 1:], Body=Path(raw.path).read_bytes())
        registry.apply([*dimension_records(obs, "hsc"), raw_msg, *calib_msgs])
        registry.register_collection("HSC/calib", "CALIBRATION")
        registry.certify([m.dataset_id for m in calib_msgs], "HSC/calib", None, None)
        for k, v in {ENV_DATASTORE_ROOT: ROOT, ENV_REGISTRY_QUEUE_URL: queue_url, ENV_REGISTRY_URL: registry.url,
                     ENV_REGISTRY_SECRET_ARN: ""}.items():
            monkeypatch.setenv(k, v)
        yield s3, queue_url, registry


@pytest.mark.fullsize
def test_events_run_through_their_handlers(aws):
    s3, queue_url, registry = aws
    plan = plan_handler(_event("plan.json"))
    assert plan["quanta"] == 1 and plan["clusters"] == 1
    assert s3.get_object(Bucket=BUCKET, Key=plan["manifest_key"])["Body"].read().startswith(b"[")

    summary = isr_handler(_event("isr_cluster.json"))
    assert summary == {"cluster_id": "HSC-50-904000", "succeeded": 1, "failed": 0}
    event = _event("isr_cluster.json")
    out_key = event["cluster"]["quanta"][0]["output"]["uri"][len(ROOT) + 1:]
    assert s3.head_object(Bucket=BUCKET, Key=out_key)["ContentLength"] > 30_000_000

    stop = threading.Event()
    writer = threading.Thread(target=drain_into_writer, args=(queue_url, stop))
    writer.start()
    try:
        result = summarize_handler(_event("summarize.json"))
    finally:
        stop.set()
        writer.join()
    assert (result["quanta"], result["succeeded"], result["failed"]) == (1, 1, 0)
    outputs = registry.query_datasets("postISRCCD", ["HSC/runs/example"])
    assert [o.uri for o in outputs] == [f"{ROOT}/{out_key}"]
    assert sorted(role for _, role in registry.provenance(outputs[0].id)) == ["bias", "dark", "defects", "flat", "raw"]


def test_record_failure_event(aws):
    s3, _, _ = aws
    assert summarize_handler(_event("summarize_record_failure.json")) == {"recorded": 1}
    prefix = _event("summarize_record_failure.json")["results_prefix"][len(ROOT) + 1:]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    body = json.loads(s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read())
    assert body["status"] == "failed" and body["error"].startswith("Sandbox.Timedout: Task timed out")
