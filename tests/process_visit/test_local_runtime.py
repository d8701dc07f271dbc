"""ProcessVisit end to end through the real state machine on the embedded runtime: template.yaml
-> the project's ASL interpreter -> process-pool handlers -> durable queue -> batched writer."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from visit_helpers import CALIB_COLLECTION, make_repo, visit_input

from isrflow.cli import cli
from isrflow.local.runtime import LocalRuntime
from isrflow.registry import ingest, uri_to_path
from isrflow.registry.calib_import import import_calibrations
from isrflow.simulate import SimulationRequest, simulate

MACHINE = "ProcessVisitStateMachine"


def _input(**extra):
    return visit_input(**{"output_run": "Generic/runs/e2e", **extra})


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path, detectors=(0, 1, 2, 3), science=1)


def test_success_rows_visible_when_run_returns(repo):
    with LocalRuntime(repo.root, processes=2) as runtime:
        execution = runtime.run(MACHINE, _input())
    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output["succeeded"] == 4 and execution.output["failed"] == 0
    outputs = repo.registry.query_datasets("postISRCCD", ["Generic/runs/e2e"])
    assert len(outputs) == 4 and all(uri_to_path(o.uri).is_file() for o in outputs)
    for o in outputs:
        assert len(repo.registry.provenance(o.id)) == 5
    assert len(repo.registry.processing_records(execution.execution_arn)) == 4
    # the Map's child executions (one per cluster: here one detector each) count too
    assert execution.state_transitions() == execution.state_transitions(include_children=False) + 4


def test_corrupt_raw_tolerated_then_too_many_failures_fail(repo):
    raws = repo.registry.query_datasets("raw", ["Generic/raw/all"])
    with open(uri_to_path(raws[0].uri), "r+b") as fh:
        fh.truncate(3000)
    with LocalRuntime(repo.root, processes=2) as runtime:
        ok = runtime.run(MACHINE, _input(max_failure_fraction=0.25))
        assert ok.status == "SUCCEEDED", ok.cause
        assert ok.output["failed"] == 1 and "IsrInputError" in ok.output["failures"][0]["error"]
        assert len(repo.registry.query_datasets("postISRCCD", ["Generic/runs/e2e"])) == 3
        bad = runtime.run(MACHINE, _input(output_run="Generic/runs/strict", max_failure_fraction=0.0))
    assert bad.status == "FAILED" and bad.error == "TooManyFailuresError"
    assert "1 of 4 quanta failed" in json.loads(bad.cause)["errorMessage"]
    assert "IsrInputError" in json.loads(bad.cause)["errorMessage"]


def test_skip_existing_rerun_does_no_isr_and_no_duplicates(repo):
    with LocalRuntime(repo.root, processes=2) as runtime:
        first = runtime.run(MACHINE, _input())
        before = repo.registry.query_datasets("postISRCCD", ["Generic/runs/e2e"])
        again = runtime.run(MACHINE, _input(mode="skip-existing"))
        isr_invocations = [e for e in again.history if e["type"] == "TaskScheduled"]
    assert first.status == again.status == "SUCCEEDED"
    assert again.output["quanta"] == 0 and again.output["skipped_existing"] == 4
    # only Plan and Summarize ran: no ISR task was scheduled
    assert len(isr_invocations) == 2 and again.children() == []
    after = repo.registry.query_datasets("postISRCCD", ["Generic/runs/e2e"])
    assert sorted(r.id for r in after) == sorted(r.id for r in before)


def test_cli_reports_success_after_rows_are_visible(repo):
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "process-visit",
            "--repo",
            str(repo.root),
            "--where",
            "detector IN (0..1)",
            "--output-run",
            "Generic/runs/cli",
            "--workers",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["status"] == "SUCCEEDED" and len(report["records"]) == 2
    assert len(repo.registry.query_datasets("postISRCCD", ["Generic/runs/cli"])) == 2


@pytest.mark.fullsize
def test_two_cameras_in_one_execution(tmp_path):
    """Small generic frames and a DECam exposure file holding two CCDs, one execution."""
    repo = make_repo(tmp_path, detectors=(0, 1), science=1)
    night = simulate(
        SimulationRequest(camera="decam", detectors=[25, 26], science=1, seed=4, out=tmp_path / "decam")
    )
    assert ingest(repo.registry, [r.path for r in night.raws]).ok
    files = [
        f
        for cal in night.calibrations.values()
        for f in (cal.bias, cal.dark, cal.defects, *cal.flat.values())
    ]
    refs = import_calibrations(repo.registry, files, "DECam/calib/truth")
    repo.registry.register_collection("DECam/calib", "CALIBRATION")
    repo.registry.certify([r.id for r in refs], "DECam/calib", None, None)
    repo.registry.set_chain("calib/all", [CALIB_COLLECTION, "DECam/calib"])
    payload = {
        "where": "instrument IN ('Generic', 'DECam')",
        "input_collections": ["Generic/raw/all", "DECam/raw/all"],
        "calib_collection": "calib/all",
        "output_run": "multi/runs/e2e",
        "cluster_size": 1,
    }
    with LocalRuntime(repo.root, processes=2) as runtime:
        execution = runtime.run(MACHINE, payload)
    assert execution.status == "SUCCEEDED", execution.cause
    outputs = repo.registry.query_datasets("postISRCCD", ["multi/runs/e2e"])
    assert sorted((o.data_id["instrument"], o.data_id["detector"]) for o in outputs) == [
        ("DECam", 25),
        ("DECam", 26),
        ("Generic", 0),
        ("Generic", 1),
    ]
