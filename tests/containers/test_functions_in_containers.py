"""Every function of template.yaml, built by ``sam build``, run by ``sam local invoke`` in its
Lambda container with every events/ file made for it, against moto in server mode (S3, SQS,
Step Functions, Secrets Manager) and the PostgreSQL registry. Each test checks what the
invocation did (objects, messages, registry rows, answers), not only that it returned.

The state machine inputs (process_visit_input.json, build_calibration_input.json) run whole
through the containers in test_containers_mode.py.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
from typing import ClassVar

import numpy as np
import pytest
from astropy.io import fits

from isrflow.io.exposure_io import read_exposure
from isrflow.model.messages import IngestOutcome, QuarantineRecord
from isrflow.registry import Registry
from isrflow.render.previews import write_detector_preview
from tests.event_chains import (
    BUCKET,
    EVENTS,
    FUNCTION_OF_EVENT,
    ROOT,
    event,
    key_of,
    run_calib_chain,
    run_process_visit_chain,
    simulate_hsc_visit,
    stage_calib_inputs,
    stage_hsc_visit,
)
from tests.fake_aws import use_fake_aws
from tests.ops.ops_helpers import hsc_raw_bytes
from tests.sqs_writer_drain import writer_draining

STATE_MACHINE_INPUTS = {"process_visit_input.json", "build_calibration_input.json"}


def _queued(stack) -> list[dict]:
    """Every message on the registry queue (received, then left to expire: the queue is per test)."""
    sqs, out = stack.client("sqs"), []
    while got := sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10).get("Messages", []):
        out += [json.loads(m["Body"]) for m in got]
    return out


def _draining(lambdas, stack):
    return lambda: writer_draining(
        stack.queue_url,
        sqs=stack.client("sqs"),
        batch=200,
        writer=lambda ev: lambdas("RegistryWriterFunction", ev),
    )


def test_every_event_file_has_a_function_in_the_template(sam_project):
    """The table the tests below follow covers events/, and names functions the build has."""
    files = {p.name for p in EVENTS.glob("*.json")} - {"names.json"}
    assert files == set(FUNCTION_OF_EVENT), "add the new events/ file to tests/event_chains.FUNCTION_OF_EVENT"
    built = sam_project.built_template.read_text()
    for name, function in FUNCTION_OF_EVENT.items():
        assert f"\n  {function}:\n" in built, f"{name}: {function} is not in the built template"


def test_registry_writer_sample_batch(lambdas, registry):
    inv = lambdas.invoke("RegistryWriterFunction", EVENTS / "registry_writer_sqs_batch.json")
    assert inv.payload == {"batchItemFailures": []}, inv.logs[-2000:]
    assert len(registry.query_datasets("postISRCCD", ["HSC/runs/isr/20261120T031500Z"])) == 1
    assert registry.rejects() == []
    (report,) = inv.reports
    assert report["init_ms"] > 0 and report["max_rss_mb"] > 10


@pytest.fixture(scope="module")
def hsc_raw(reference_dir) -> bytes:
    """A full-size HSC raw (zero pixels) with a real detector-50 header."""
    return hsc_raw_bytes(reference_dir)


def test_ingest_events(lambdas, stack, hsc_raw):
    s3, sfn = stack.client("s3"), stack.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"{stack.names['stack']}-ProcessVisit",
        roleArn=f"arn:aws:iam::{stack.names['account']}:role/sfn",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
    )["stateMachineArn"]
    lambdas.with_env(
        "IngestFunction", {"ISRFLOW_PROMPT_PROCESSING": "true", "ISRFLOW_PROCESS_VISIT_ARN": machine}
    )

    # A real upload: the event names the object's own ETag and size (the sample's are examples).
    ev = event("ingest_object_created.json")
    key = ev["detail"]["object"]["key"]
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=hsc_raw)["ETag"].strip('"')
    ev["detail"]["object"].update(size=len(hsc_raw), etag=etag)
    outcome = IngestOutcome.model_validate(lambdas("IngestFunction", ev))
    assert outcome.status == "ingested" and outcome.instrument == "HSC", outcome
    assert outcome.header_bytes < len(hsc_raw) // 100  # ranged GETs of the header, not the pixels
    kinds = [m["kind"] for m in _queued(stack)]
    assert "dataset" in kinds and "exposure" in kinds
    (started,) = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert started["name"] == outcome.execution.name

    ev = event("ingest_object_created_not_fits.json")
    key = ev["detail"]["object"]["key"]
    body = (b"2026-11-20 01:02 seeing 0.6 arcsec, dome open\n" * 100)[:4123]
    ev["detail"]["object"]["etag"] = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
    outcome = IngestOutcome.model_validate(lambdas("IngestFunction", ev))
    assert outcome.status == "quarantined" and outcome.reason.startswith("NotFitsError")
    record = QuarantineRecord.model_validate_json(
        s3.get_object(Bucket=BUCKET, Key=f"quarantine/{key}.json")["Body"].read()
    )
    assert record.error == "NotFitsError" and _queued(stack) == []


@pytest.mark.fullsize
def test_process_visit_events(lambdas, stack, registry, tmp_path, monkeypatch):
    s3 = stack.client("s3")
    stage_hsc_visit(simulate_hsc_visit(tmp_path / "sim"), s3, registry)
    out = run_process_visit_chain(lambdas, _draining(lambdas, stack))
    assert out["plan"]["quanta"] == 1 and out["plan"]["clusters"] == 1
    assert out["isr"] == {"cluster_id": "HSC-50-904000", "succeeded": 1, "failed": 0}
    summary = out["summary"]
    assert (summary["quanta"], summary["succeeded"], summary["failed"]) == (1, 1, 0)

    body = s3.get_object(Bucket=BUCKET, Key=out["output_key"])["Body"].read()
    with fits.open(io.BytesIO(body)) as hdus:
        planes = {h.name: h for h in hdus}
        assert {"IMAGE", "MASK", "VARIANCE"} <= set(planes)
        assert planes["IMAGE"].data.shape == (4176, 2048)
        assert np.isfinite(planes["IMAGE"].data).mean() > 0.99
    (output,) = registry.query_datasets("postISRCCD", ["HSC/runs/example"])
    assert output.uri == f"{ROOT}/{out['output_key']}"
    assert sorted(role for _, role in registry.provenance(output.id)) == [
        "bias",
        "dark",
        "defects",
        "flat",
        "raw",
    ]

    # the mosaic is made of the detectors' previews: write the one of this output (this process
    # talks to moto as the functions do)
    use_fake_aws(
        monkeypatch, ISRFLOW_AWS_ENDPOINT_URL=stack.endpoint, AWS_DEFAULT_REGION=stack.names["region"]
    )
    (tmp_path / "output.fits").write_bytes(body)
    write_detector_preview(read_exposure(tmp_path / "output.fits"), output.uri, "HSC", 50)
    mosaic = event("isr_mosaic.json")
    s3.put_object(
        Bucket=BUCKET,
        Key=key_of(mosaic["manifest_uri"]),
        Body=json.dumps([event("isr_cluster.json")["cluster"]]),
    )
    (png,) = lambdas("MosaicFunction", mosaic)["mosaics"]
    assert s3.get_object(Bucket=BUCKET, Key=key_of(png))["Body"].read()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summarize_records_a_crashed_cluster(lambdas, stack):
    """The Catch of a cluster whose worker died: its detectors are recorded as failed, with the error."""
    s3 = stack.client("s3")
    assert lambdas("RecordFailureFunction", event("summarize_record_failure.json")) == {"recorded": 1}
    prefix = key_of(event("summarize_record_failure.json")["results_prefix"])
    (key,) = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    (body,) = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())  # one file per cluster
    assert body["status"] == "failed" and body["error"].startswith("Sandbox.Timedout: Task timed out")


def test_calibration_events(lambdas, stack, registry, tmp_path):
    s3 = stack.client("s3")
    stage_calib_inputs(tmp_path, s3, registry)
    seen = []

    def check(name, ev):
        assert ev == event(name), f"{name} differs from what the functions send"
        seen.append(name)

    out = run_calib_chain(lambdas, check, s3, _draining(lambdas, stack))
    assert sorted(seen) == sorted(
        n for n, f in FUNCTION_OF_EVENT.items() if n.startswith(("calib_", "combine"))
    )
    assert [c["status"] for c in out["combined"]] == ["succeeded", "succeeded"]
    assert out["deleted"] == {"masters": 2, "deleted": 6}
    summary = out["summary"]
    assert (summary["masters"], summary["succeeded"], summary["certified"], summary["inputs"]) == (2, 2, 2, 6)
    certified = registry.query_datasets("flat", ["Generic/calib"])
    assert sorted(r.data_id["detector"] for r in certified) == [0, 1]
    for master in certified:
        with fits.open(
            io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key_of(master.uri))["Body"].read())
        ) as hdus:
            image = hdus[1].data if hdus[0].data is None else hdus[0].data
            assert abs(float(np.nanmedian(image)) - 1.0) < 0.05  # a normalised flat
    assert out["recorded"]["error"].startswith("FargateTaskFailed: exit code 137")


class _ResponseReceiver(http.server.BaseHTTPRequestHandler):
    """Stands in for CloudFormation's pre-signed response URL (an S3 PUT)."""

    bodies: ClassVar[list[dict]] = []

    def do_PUT(self):
        self.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_migrate_event_creates_the_registry_schema(lambdas, stack, pg_schema_url):
    server = http.server.HTTPServer((stack.host, 0), _ResponseReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ev = event("migrate_create.json")
        ev["ResponseURL"] = f"http://{stack.host}:{server.server_address[1]}/response"
        lambdas("MigrateFunction", ev)
    finally:
        server.shutdown()
    (reply,) = _ResponseReceiver.bodies
    assert reply["Status"] == "SUCCESS", reply
    assert (reply["RequestId"], reply["LogicalResourceId"]) == (ev["RequestId"], ev["LogicalResourceId"])
    with Registry.open(pg_schema_url, ROOT) as reg:  # the schema is there: an empty registry opens
        assert reg.rejects() == []
        reg.register_collection("HSC/raw/all", "RUN")
        assert reg.query_datasets("raw", ["HSC/raw/all"]) == []
