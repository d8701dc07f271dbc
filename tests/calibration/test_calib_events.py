"""The BuildCalibration sample events (``events/calib_*.json``, ``events/combine.json``,
``events/build_calibration_input.json``) validate and run through their handlers, in the
order the state machine calls them, against moto S3/SQS and a registry with s3:// URIs.

Each event the chain makes is compared with its file, so the files stay what the handlers
really receive. After a deliberate change, rewrite them with
``python -m tests.calibration.test_calib_events --write`` (from the repository root).
The same chain runs in the Lambda containers in tests/containers (tests/event_chains.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from functions.calib_plan.app import (
    delete_intermediates_handler,
    normalize_handler,
    plan_handler,
    prepare_combine_handler,
)
from functions.combine.app import lambda_handler as combine_handler
from functions.isr.app import isr_handler
from functions.summarize.app import (
    certify_calib_handler,
    record_combine_failure_handler,
    summarize_calib_handler,
)
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
)
from isrflow.registry import Registry
from tests.event_chains import BUCKET, EVENTS, ROOT, run_calib_chain, stage_calib_inputs
from tests.fake_aws import FAKE_AWS_ENV, use_fake_aws
from tests.sqs_writer_drain import writer_draining

FILES = {
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
}


class _Context:
    memory_limit_in_mb = "2048"


@pytest.mark.parametrize("name", sorted(FILES))
def test_event_file_validates(name):
    FILES[name](json.loads((EVENTS / name).read_text()))


HANDLERS = {
    "CalibPlanFunction": plan_handler,
    "IsrFunction": isr_handler,
    "NormalizeFlatsFunction": normalize_handler,
    "PrepareCombineFunction": prepare_combine_handler,
    "CombineFunction": combine_handler,
    "DeleteIntermediatesFunction": delete_intermediates_handler,
    "CertifyCalibFunction": certify_calib_handler,
    "SummarizeCalibFunction": summarize_calib_handler,
    "RecordCombineFailureFunction": record_combine_failure_handler,
}


def _in_process(function: str, event: dict):
    return HANDLERS[function](event, _Context())


def run_chain(tmp: Path, check) -> dict:
    """The BuildCalibration calls for the sample input, in process against moto; ``check(name,
    event)`` sees each event that has a file before it goes to its handler."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    queue_url = boto3.client("sqs").create_queue(QueueName="registry")["QueueUrl"]
    registry = Registry.create(f"sqlite:///{tmp / 'registry.sqlite3'}", ROOT)
    stage_calib_inputs(tmp, s3, registry)
    import os

    os.environ.update(
        {
            ENV_DATASTORE_ROOT: ROOT,
            ENV_REGISTRY_QUEUE_URL: queue_url,
            ENV_REGISTRY_URL: registry.url,
            ENV_REGISTRY_SECRET_ARN: "",
        }
    )
    out = run_calib_chain(_in_process, check, s3, lambda: writer_draining(queue_url))
    assert (out["normalized"]["filters"], out["normalized"]["exposures"], out["normalized"]["detectors"]) == (
        1,
        3,
        2,
    )
    assert out["prepared"]["masters"] == 2 and out["prepared"]["routes"] == {"lambda": 2, "fargate": 0}
    assert all(answer["status"] == "succeeded" for answer in out["combined"]), out["combined"]
    assert out["deleted"] == {"masters": 2, "deleted": 6}  # the 3 cpFlatProc of each master
    assert out["certified"]["certified"] == 2
    return {**out, "registry": registry}


@pytest.fixture
def aws(monkeypatch):
    use_fake_aws(monkeypatch)
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
    assert out["recorded"]["error"] == (
        "FargateTaskFailed: exit code 137; OutOfMemoryError: Container killed due to "
        "memory usage; Essential container in task exited after the master was written"
    )


def _write() -> None:
    import os
    import tempfile

    os.environ.update(FAKE_AWS_ENV)

    def write(name, event):
        (EVENTS / name).write_text(json.dumps(event, indent=2) + "\n")
        print("wrote", EVENTS / name)

    with mock_aws(), tempfile.TemporaryDirectory() as tmp:
        run_chain(Path(tmp), write)


if __name__ == "__main__" and "--write" in sys.argv:
    _write()
