"""The new events/ files through their handlers, the code path `sam local invoke -e` takes, against
moto S3, SQS and Step Functions: the ingest function (a real HSC raw header, ranged GETs; a non-FITS
upload) and the ISR function's mosaic action."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws
from ops_helpers import hsc_raw_bytes

from functions.ingest.app import lambda_handler as ingest_handler
from functions.isr.app import mosaic_handler
from isrflow.io.exposure_io import Exposure
from isrflow.io.formats import BAD
from isrflow.model.messages import IngestOutcome, QuarantineRecord, parse_message
from isrflow.prompt.starter import execution_name
from isrflow.render.previews import write_detector_preview
from tests.fake_aws import use_fake_aws

EVENTS = Path(__file__).resolve().parents[2] / "events"
BUCKET = "isrflow-data-123456789012"
MACHINE = "isrflow-ProcessVisit"


def _event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture(scope="module")
def hsc_raw(reference_dir) -> bytes:
    """A full-size HSC raw (zero pixels) with a REAL detector-50 header."""
    return hsc_raw_bytes(reference_dir)


@pytest.fixture
def aws(monkeypatch):
    use_fake_aws(  # as in Lambda: EMF on stdout
        monkeypatch,
        POWERTOOLS_SERVICE_NAME="isrflow-ingest",
        POWERTOOLS_METRICS_NAMESPACE="isrflow",
        AWS_LAMBDA_FUNCTION_NAME="isrflow-ingest",
    )
    monkeypatch.delenv("AWS_ENDPOINT_URL_STEPFUNCTIONS", raising=False)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="registry")["QueueUrl"]
        sfn = boto3.client("stepfunctions")
        definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
        machine = sfn.create_state_machine(
            name=MACHINE, definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        for k, v in {
            "ISRFLOW_DATASTORE_ROOT": f"s3://{BUCKET}",
            "ISRFLOW_REGISTRY_QUEUE_URL": queue,
            "ISRFLOW_PROMPT_PROCESSING": "true",
            "ISRFLOW_PROCESS_VISIT_ARN": machine,
        }.items():
            monkeypatch.setenv(k, v)
        yield s3, sqs, queue, sfn, machine


def _drain(sqs, queue) -> list:
    out = []
    while got := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        out += [parse_message(m["Body"]) for m in got]
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
        )
    return out


def _metrics(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def _total(line: dict, name: str) -> float:
    """A metric's value in an EMF line: Powertools writes a list of the values added."""
    value = line[name]
    return sum(value) if isinstance(value, list) else value


def test_ingest_event_registers_the_raw_and_starts_process_visit_once(aws, hsc_raw, capsys):
    s3, sqs, queue, sfn, machine = aws
    event = _event("ingest_object_created.json")
    key = event["detail"]["object"]["key"]
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=hsc_raw)["ETag"].strip('"')
    event["detail"]["object"].update(size=len(hsc_raw), etag=etag)

    first = IngestOutcome.model_validate(ingest_handler(event))
    assert (first.status, first.camera, first.instrument, first.detectors) == ("ingested", "hsc", "HSC", [50])
    assert first.header_bytes < len(hsc_raw) / 100  # ranged GETs of the header blocks only
    messages = _drain(sqs, queue)
    assert sorted(m.kind for m in messages) == ["dataset", "detector", "exposure", "instrument"]
    (dataset,) = [m for m in messages if m.kind == "dataset"]
    assert (dataset.run, dataset.uri, dataset.size, dataset.replace) == (
        "HSC/raw/all",
        f"s3://{BUCKET}/{key}",
        len(hsc_raw),
        True,
    )
    (started,) = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert started["name"] == execution_name(BUCKET, key, etag) == first.execution.name
    spec = json.loads(sfn.describe_execution(executionArn=started["executionArn"])["input"])
    exposure = messages[[m.kind for m in messages].index("exposure")]
    assert spec["quanta"] == [{"instrument": "HSC", "exposure": exposure.id, "detector": 50}]
    assert (spec["calib_collection"], spec["output_run"], spec["mode"]) == (
        "HSC/calib",
        f"HSC/prompt/{exposure.day_obs}",
        "replace",
    )
    (line,) = _metrics(capsys.readouterr().out)
    assert (
        line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "isrflow" and line["service"] == "isrflow-ingest"
    )
    assert (_total(line, "RawIngested"), _total(line, "PromptExecutionStarted")) == (1, 1)
    assert (line["key"], line["instrument"], line["detectors"]) == (
        key,
        "HSC",
        1,
    )  # properties, not dimensions

    second = IngestOutcome.model_validate(ingest_handler(event))  # the same event delivered again
    assert second.execution.outcome == "already_started" and second.datasets == first.datasets
    assert [m.message_id for m in _drain(sqs, queue)] == [m.message_id for m in messages]  # applied once
    assert len(sfn.list_executions(stateMachineArn=machine)["executions"]) == 1


def test_ingest_of_an_overwritten_object_is_left_to_the_newer_event(aws, hsc_raw):
    s3, sqs, queue, sfn, machine = aws
    event = _event("ingest_object_created.json")
    key = event["detail"]["object"]["key"]
    s3.put_object(Bucket=BUCKET, Key=key, Body=hsc_raw)
    event["detail"]["object"]["size"] = len(hsc_raw)  # the event's ETag is an older version's
    outcome = IngestOutcome.model_validate(ingest_handler(event))
    assert outcome.status == "superseded" and "changed" in outcome.reason
    assert _drain(sqs, queue) == [] and sfn.list_executions(stateMachineArn=machine)["executions"] == []


def test_not_fits_event_is_quarantined(aws, capsys):
    s3, sqs, queue, sfn, machine = aws
    event = _event("ingest_object_created_not_fits.json")
    key = event["detail"]["object"]["key"]
    body = (b"2026-11-20 01:02 seeing 0.6 arcsec, dome open\n" * 100)[:4123]
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
    event["detail"]["object"]["etag"] = etag
    outcome = IngestOutcome.model_validate(ingest_handler(event))
    assert outcome.status == "quarantined" and outcome.reason.startswith("NotFitsError")
    record = QuarantineRecord.model_validate_json(
        s3.get_object(Bucket=BUCKET, Key=f"quarantine/{key}.json")["Body"].read()
    )
    assert (record.key, record.error, record.uri) == (key, "NotFitsError", f"s3://{BUCKET}/{key}")
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body  # kept
    assert _drain(sqs, queue) == [] and sfn.list_executions(stateMachineArn=machine)["executions"] == []
    (line,) = _metrics(capsys.readouterr().out)
    assert _total(line, "UploadQuarantined") == 1 and line["error"] == "NotFitsError"
    assert line["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]


def test_mosaic_event_writes_the_exposure_mosaic(aws):
    s3 = aws[0]
    cluster = _event("isr_cluster.json")["cluster"]
    mosaic = _event("isr_mosaic.json")
    s3.put_object(
        Bucket=BUCKET, Key=mosaic["manifest_uri"][len(f"s3://{BUCKET}/") :], Body=json.dumps([cluster])
    )
    image = np.random.default_rng(1).normal(100.0, 5.0, (4176, 2048)).astype(np.float32)
    mask = np.zeros(image.shape, dtype=np.int32)
    mask[:, 700] = BAD
    output = cluster["quanta"][0]["output"]["uri"]
    write_detector_preview(Exposure(image=image, mask=mask), output, "HSC", 50)
    assert mosaic_handler(mosaic) == {"mosaics": [output.rsplit("/", 1)[0] + "/mosaic_HSC_904000.png"]}
    png = s3.get_object(Bucket=BUCKET, Key="HSC/runs/example/postISRCCD/HSC/904000/mosaic_HSC_904000.png")
    assert png["Body"].read()[:8] == b"\x89PNG\r\n\x1a\n"
