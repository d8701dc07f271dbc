"""Every events/ file validates against its handler's model and runs through its handler,
the code path `sam local invoke -e events/<file>` takes, against moto S3/SQS."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from functions.isr.app import isr_handler
from functions.plan.app import lambda_handler as plan_handler
from functions.registry_writer.app import parse_records
from functions.summarize.app import record_failure_handler, summarize_handler
from isrflow.infra.custom_resource import CustomResourceRequest
from isrflow.infra.settings import (
    ENV_DATASTORE_ROOT,
    ENV_REGISTRY_QUEUE_URL,
    ENV_REGISTRY_SECRET_ARN,
    ENV_REGISTRY_URL,
)
from isrflow.model.messages import (
    BuildCalibrationInput,
    CalibPlanEvent,
    CalibStepEvent,
    CombineEvent,
    CombineFailureEvent,
    IsrClusterEvent,
    MosaicEvent,
    PlanEvent,
    ProcessVisitInput,
    RecordFailureEvent,
    S3ObjectCreatedEvent,
    SummarizeEvent,
)
from isrflow.registry import Registry
from tests.event_chains import (
    BUCKET,
    EVENTS,
    ROOT,
    run_process_visit_chain,
    simulate_hsc_visit,
    stage_hsc_visit,
)
from tests.fake_aws import use_fake_aws
from tests.sqs_writer_drain import writer_draining

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
    "calib_delete_intermediates.json": CalibStepEvent.model_validate,
    "calib_certify.json": CalibStepEvent.model_validate,
    "calib_summarize.json": CalibStepEvent.model_validate,
    "calib_record_combine_failure.json": CombineFailureEvent.model_validate,
    # The RegistrySchema custom resource: run through its handler in tests/registry/test_migrate_handler.py
    "migrate_create.json": CustomResourceRequest.model_validate,
}


def _event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@pytest.mark.parametrize(
    "path", sorted(set(EVENTS.glob("*.json")) - {EVENTS / "names.json"}), ids=lambda p: p.name
)
def test_every_event_validates(path):
    assert path.name in MODELS, f"{path.name}: add its model to MODELS (every event must be checked)"
    MODELS[path.name](json.loads(path.read_text()))


@pytest.fixture(scope="module")
def hsc_night(tmp_path_factory):
    """HSC detector 50, one science exposure (904000, as in the events), full size."""
    return simulate_hsc_visit(tmp_path_factory.mktemp("hsc_events"))


@pytest.fixture
def aws(monkeypatch, tmp_path, hsc_night):
    """moto S3 + SQS holding the objects the events name; a SQLite registry with s3:// URIs."""
    use_fake_aws(monkeypatch)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        queue_url = boto3.client("sqs").create_queue(QueueName="registry")["QueueUrl"]
        registry = Registry.create(f"sqlite:///{tmp_path / 'registry.sqlite3'}", ROOT)
        stage_hsc_visit(hsc_night, s3, registry)
        for k, v in {
            ENV_DATASTORE_ROOT: ROOT,
            ENV_REGISTRY_QUEUE_URL: queue_url,
            ENV_REGISTRY_URL: registry.url,
            ENV_REGISTRY_SECRET_ARN: "",
        }.items():
            monkeypatch.setenv(k, v)
        yield s3, queue_url, registry


HANDLERS = {"PlanFunction": plan_handler, "IsrFunction": isr_handler, "SummarizeFunction": summarize_handler}


@pytest.mark.fullsize
def test_events_run_through_their_handlers(aws):
    s3, queue_url, registry = aws
    out = run_process_visit_chain(
        lambda function, ev: HANDLERS[function](ev), lambda: writer_draining(queue_url)
    )
    plan = out["plan"]
    assert plan["quanta"] == 1 and plan["clusters"] == 1
    assert s3.get_object(Bucket=BUCKET, Key=plan["manifest_key"])["Body"].read().startswith(b"[")
    assert out["isr"] == {"cluster_id": "HSC-50-904000", "succeeded": 1, "failed": 0}
    # a whole HSC-size postISRCCD, tile-compressed (~12.7 MB; 103 MB uncompressed)
    assert s3.head_object(Bucket=BUCKET, Key=out["output_key"])["ContentLength"] > 8_000_000
    result = out["summary"]
    assert (result["quanta"], result["succeeded"], result["failed"]) == (1, 1, 0)
    outputs = registry.query_datasets("postISRCCD", ["HSC/runs/example"])
    assert [o.uri for o in outputs] == [f"{ROOT}/{out['output_key']}"]
    assert sorted(role for _, role in registry.provenance(outputs[0].id)) == [
        "bias",
        "dark",
        "defects",
        "flat",
        "raw",
    ]


def test_record_failure_event(aws):
    s3, _, _ = aws
    assert record_failure_handler(_event("summarize_record_failure.json")) == {"recorded": 1}
    prefix = _event("summarize_record_failure.json")["results_prefix"][len(ROOT) + 1 :]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    assert keys[0].endswith(
        "/cluster-" + _event("summarize_record_failure.json")["cluster"]["cluster_id"] + ".json"
    )
    (body,) = json.loads(s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read())
    assert body["status"] == "failed" and body["error"].startswith("Sandbox.Timedout: Task timed out")
