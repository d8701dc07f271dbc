"""`isrflow status` (per-detector rows, totals, estimated AWS cost) and `isrflow rerun --failed` on a
known small local execution: 2 detectors, one corrupt raw, one cluster per detector."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from ops_helpers import CALIB_COLLECTION, make_prompt_repo

from isrflow.cli import cli
from isrflow.local.records import load_record
from isrflow.registry import ingest, uri_to_path

PRICES = Path(__file__).resolve().parents[2] / "layers" / "isrflow" / "isrflow" / "ops" / "prices.yaml"
RUN = "Generic/runs/status"

# Round prices, so the hand computation below reads as counting: $1 per Lambda request and per GB-s,
# per state transition, per SQS request and per S3 PUT/LIST; $0.10 per S3 GET.
ROUND_PRICES = {
    "lambda": {"requests_per_million": 1e6, "gb_second": {"arm64": 1.0, "x86_64": 1.0}},
    "stepfunctions": {"standard_per_1000_transitions": 1000.0},
    "sqs": {"requests_per_million": 1e6},
    "s3": {"put_copy_post_list_per_1000": 1000.0, "get_select_per_1000": 100.0},
}


def _cli(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def execution(tmp_path_factory):
    """Detectors 0 and 1 of one exposure, detector 1's raw truncated: one success, one failure."""
    tmp = tmp_path_factory.mktemp("status")
    repo = make_prompt_repo(tmp)
    assert ingest(repo.registry, [r.path for r in repo.night.raws]).ok
    (bad,) = repo.registry.query_datasets("raw", where="detector = 1")
    path = uri_to_path(bad.uri)
    good_bytes = path.read_bytes()
    path.write_bytes(good_bytes[:3000])
    report = json.loads(
        _cli(
            "run",
            "process-visit",
            "--repo",
            repo.root,
            "--where",
            "instrument = 'Generic'",
            "--output-run",
            RUN,
            "--calib-collection",
            CALIB_COLLECTION,
            "--cluster-size",
            1,
            "--max-failure-fraction",
            0.5,
            "--workers",
            2,
            "--json",
        )
    )
    assert report["status"] == "SUCCEEDED"
    return repo, report["execution"], path, good_bytes


def test_status_cost_matches_a_hand_computation(execution, tmp_path):
    repo, arn, _, _ = execution
    prices_file = tmp_path / "round.yaml"
    prices_file.write_text(yaml.safe_dump(ROUND_PRICES))
    status = json.loads(_cli("status", arn, "--repo", repo.root, "--json", "--prices", prices_file))
    record = load_record(repo.root, arn)

    # Counted by hand from the state machine: the parent enters Plan, AnyWork, ProcessClusters,
    # WantMosaics and Summarize; each of the 2 clusters' child executions enters IsrCluster once.
    transitions = 5 + 2
    # Lambda: Plan, 2 ISR clusters, Summarize (durations measured in the workers), and the writer's
    # share of its batch: 3 registry messages (1 output dataset + 2 processing records) at 0.2 ms each.
    invocations = [(i.memory_mb, i.duration_s) for i in record.invocations]
    assert sorted(i.function for i in record.invocations) == [
        "IsrFunction",
        "IsrFunction",
        "PlanFunction",
        "SummarizeFunction",
    ]
    messages = 3
    invocations.append((1024, messages * 0.0002))
    gb_seconds = sum(mb / 1024 * math.ceil(round(s * 1000, 6)) / 1000 for mb, s in invocations)
    # SQS: 1 SendMessageBatch from the worker that succeeded, 1 for the 2 records, 1 for the completion
    # marker; the writer receives and deletes the 3 messages in 1 batch each.
    sqs = 3 + 2
    # S3 PUT/LIST: manifest, 2 result files, 1 output, 1 listing of results/. GET: the manifest (Map
    # ItemReader), 4 calibrations per cluster, 2 raws, 2 result files and the manifest (Summarize).
    s3_put, s3_get = 1 + 2 + 1 + 1, 1 + 2 * 4 + 2 + 2 + 1

    usage = status["usage"]
    assert (usage["state_transitions"], usage["lambda_requests"], usage["sqs_requests"]) == (
        transitions,
        5,
        sqs,
    )
    assert (usage["s3_put_requests"], usage["s3_get_requests"], usage["registry_messages"]) == (
        s3_put,
        s3_get,
        messages,
    )
    assert record.state_transitions == transitions
    hand = 5 * 1.0 + gb_seconds * 1.0 + transitions * 1.0 + sqs * 1.0 + s3_put * 1.0 + s3_get * 0.1
    assert status["cost_usd"] == pytest.approx(hand, rel=1e-9)
    assert status["breakdown"]["lambda"]["gb_seconds"] == pytest.approx(gb_seconds, rel=1e-9)
    assert status["cost_per_1000_detectors"] == pytest.approx(hand / 2 * 1000, rel=1e-9)

    # The same quantities priced with the built-in table (us-east-1 list prices, arm64 functions).
    table = yaml.safe_load(PRICES.read_text())
    listed = (
        5 * table["lambda"]["requests_per_million"] / 1e6
        + gb_seconds * table["lambda"]["gb_second"]["arm64"]
        + transitions * table["stepfunctions"]["standard_per_1000_transitions"] / 1000
        + sqs * table["sqs"]["requests_per_million"] / 1e6
        + s3_put * table["s3"]["put_copy_post_list_per_1000"] / 1000
        + s3_get * table["s3"]["get_select_per_1000"] / 1000
    )
    default = json.loads(_cli("status", arn, "--repo", repo.root, "--json"))
    assert default["cost_usd"] == pytest.approx(listed, rel=1e-9)
    assert default["breakdown"]["fargate"] == {"tasks": 0, "vcpu_seconds": 0.0, "gb_seconds": 0.0, "usd": 0.0}


def test_status_table(execution):
    repo, arn, _, _ = execution
    name = arn.rsplit(":", 1)[-1]
    out = _cli("status", name, "--repo", repo.root)
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("Generic")]
    assert [(r[2], r[3]) for r in rows] == [("0", "succeeded"), ("1", "failed")]
    assert "IsrInputError" in out and "totals: 2 detectors (registry), 1 succeeded, 1 failed" in out
    assert "estimated AWS cost (us-east-1 list prices" in out and "7 state transitions" in out
    status = json.loads(_cli("status", name, "--repo", repo.root, "--json"))
    failed = status["detectors"][1]
    assert (
        failed["status"] == "failed"
        and failed["error"].startswith("IsrInputError")
        and failed["retries"] == 0
    )
    assert status["detectors"][0]["duration_s"] > 0 and status["detectors"][0]["peak_memory_mb"] > 0
    result = CliRunner().invoke(cli, ["status", "no-such-execution", "--repo", str(repo.root)])
    assert result.exit_code == 1 and "ExecutionNotFoundError" in result.output


def test_rerun_failed_processes_exactly_the_failed_quanta_into_the_same_run(execution):
    repo, arn, path, good_bytes = execution
    dry = json.loads(_cli("rerun", arn, "--failed", "--repo", repo.root, "--dry-run"))
    assert dry["input"]["quanta"] == [{"instrument": "Generic", "exposure": 5000, "detector": 1}]
    assert (
        dry["input"]["output_run"] == RUN
        and dry["input"]["mode"] == "replace"
        and "where" not in dry["input"]
    )
    path.write_bytes(good_bytes)  # the cause is fixed: the raw is whole again
    report = json.loads(_cli("rerun", arn, "--failed", "--repo", repo.root, "--workers", 2, "--json"))
    assert report["status"] == "SUCCEEDED"
    assert (report["output"]["quanta"], report["output"]["succeeded"]) == (1, 1)
    assert sorted(o.data_id["detector"] for o in repo.registry.query_datasets("postISRCCD", [RUN])) == [0, 1]
    again = json.loads(_cli("rerun", report["execution"], "--failed", "--repo", repo.root, "--json"))
    assert again["failed"] == 0 and again["rerun"] is None


def test_status_rows_from_result_files_beside_a_calibration_builds_other_files(tmp_path):
    """Without registry records, the rows come from the result files; a BuildCalibration keeps its
    masters' results and certified.json under the same prefix, and a file may be unreadable while
    its writer works: those are passed over, the quantum results read (status used to fail)."""
    from isrflow.ops.status import detector_rows
    from isrflow.process_visit.results import results_so_far

    prefix = tmp_path / "results" / "k"
    (prefix / "masters").mkdir(parents=True)
    quantum = {"instrument": "HSC", "exposure": 7, "detector": 2, "status": "failed", "error": "boom"}
    (prefix / "cluster-a.json").write_text(
        json.dumps([quantum, {**quantum, "detector": 3, "status": "succeeded", "error": None}])
    )
    (prefix / "masters" / "bias-HSC-2.json").write_text(
        json.dumps({"status": "succeeded", "calib_type": "bias", "instrument": "HSC", "detector": 2})
    )
    (prefix / "certified.json").write_text(json.dumps({"certified": 1}))
    (prefix / "cluster-b.json").write_text('[{"instrument": "HSC"')  # cut short
    rows, rows_from, results = detector_rows(None, "arn:local:x", {"results_prefix": f"{prefix}/"})
    assert rows_from == "results"
    assert [(r.detector, r.status, r.error) for r in rows] == [(2, "failed", "boom"), (3, "succeeded", None)]
    assert results is not None and sum(r["messages_sent"] for r in results) == 0
    assert len(results_so_far(f"{prefix}/")) == 2
