"""ProcessVisit's handlers called one after another (no state machine): plan -> ISR per cluster
-> registry writer -> summarize; outputs and registry rows checked."""

from __future__ import annotations

import json

import pytest
from astropy.io import fits
from visit_helpers import CALIB_COLLECTION

from functions.isr.app import isr_handler
from functions.plan.app import lambda_handler as plan_handler
from functions.registry_writer.app import lambda_handler as writer_handler
from functions.summarize.app import record_failure_handler, summarize_handler
from isrflow.io.storage import storage_for
from isrflow.local.event_source import QueuePoller
from isrflow.model.messages import QuantumResult
from isrflow.process_visit.results import (
    ResultsFileError,
    cluster_file_uri,
    read_file,
    read_results,
    write_results,
)
from isrflow.process_visit.summary import TooManyFailuresError
from isrflow.registry import uri_to_path


def _input(**extra):
    base = {
        "where": "instrument = 'Generic'",
        "input_collections": ["Generic/raw/all"],
        "calib_collection": CALIB_COLLECTION,
        "output_run": "Generic/runs/test",
        "cluster_size": 2,
    }
    base.update(extra)
    return base


def _run(repo, execution_id="arn:aws:states:local:0:execution:ProcessVisit:t1", **extra):
    plan = plan_handler({"input": _input(**extra), "execution_id": execution_id})
    clusters = json.loads(storage_for(plan["manifest_uri"]).read_bytes(plan["manifest_uri"]))
    for cluster in clusters:
        isr_handler(
            {
                "cluster": cluster,
                "execution_id": plan["execution_id"],
                "results_prefix": plan["results_prefix"],
                "output_run": plan["output_run"],
                "isr_config": plan["isr_config"],
            }
        )
    poller = QueuePoller(repo.queue, writer_handler, batch_size=1000, window_s=0, retry_delay_s=0).start()
    try:
        return plan, clusters, summarize_handler({"plan": plan})
    finally:
        poller.stop()


def test_plan_clusters_by_detector(local_repo):
    plan = plan_handler({"input": _input(), "execution_id": "exec-1"})
    clusters = json.loads(storage_for(plan["manifest_uri"]).read_bytes(plan["manifest_uri"]))
    assert plan["quanta"] == 4 and plan["clusters"] == 2 == len(clusters)
    for cluster in clusters:
        assert len({q["detector"] for q in cluster["quanta"]}) == 1  # same detector: calibrations read once
        assert len(cluster["quanta"]) == 2
    assert plan["manifest_uri"].endswith(plan["manifest_key"])


def test_end_to_end_outputs_and_registry_rows(local_repo):
    plan, _clusters, summary = _run(local_repo)
    assert summary["succeeded"] == 4 and summary["failed"] == 0
    outputs = local_repo.registry.query_datasets("postISRCCD", ["Generic/runs/test"])
    assert len(outputs) == 4
    for ref in outputs:
        with fits.open(uri_to_path(ref.uri)) as hdul:
            assert [h.name for h in hdul] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]
        roles = sorted(role for _, role in local_repo.registry.provenance(ref.id))
        assert roles == ["bias", "dark", "defects", "flat", "raw"]
    records = local_repo.registry.processing_records(plan["execution_id"])
    assert len(records) == 4 and all(r["status"] == "succeeded" for r in records)


@pytest.mark.corrupts_datastore
def test_corrupt_raw_is_recorded_and_tolerated(local_repo):
    raws = local_repo.registry.query_datasets("raw", ["Generic/raw/all"])
    victim = raws[0]
    path = victim.uri.replace("file://", "")
    with open(path, "r+b") as fh:
        fh.truncate(5000)
    _plan, _, summary = _run(local_repo, max_failure_fraction=0.5)
    assert summary["failed"] == 1 and summary["succeeded"] == 3
    failure = summary["failures"][0]
    assert (failure["exposure"], failure["detector"]) == (
        victim.data_id["exposure"],
        victim.data_id["detector"],
    )
    assert "IsrInputError" in failure["error"]


@pytest.mark.corrupts_datastore
def test_too_many_failures_fail_the_summary(local_repo):
    for ref in local_repo.registry.query_datasets("raw", ["Generic/raw/all"])[:2]:
        with open(ref.uri.replace("file://", ""), "r+b") as fh:
            fh.truncate(100)
    with pytest.raises(TooManyFailuresError, match="2 of 4 quanta failed"):
        _run(local_repo, max_failure_fraction=0.25)


def test_skip_existing_rerun_does_nothing(local_repo):
    _run(local_repo)
    plan, clusters, _summary = _run(local_repo, execution_id="exec-2", mode="skip-existing")
    assert plan["quanta"] == 0 and plan["skipped_existing"] == 4 and clusters == []
    assert len(local_repo.registry.query_datasets("postISRCCD", ["Generic/runs/test"])) == 4


def test_record_failure_marks_the_cluster(local_repo):
    plan = plan_handler({"input": _input(), "execution_id": "exec-3"})
    cluster = json.loads(storage_for(plan["manifest_uri"]).read_bytes(plan["manifest_uri"]))[0]
    out = record_failure_handler(
        {
            "cluster": cluster,
            "results_prefix": plan["results_prefix"],
            "error": {"Error": "Sandbox.Timedout", "Cause": json.dumps({"errorMessage": "timed out"})},
        }
    )
    assert out == {"recorded": 2}


def test_each_cluster_writes_one_results_file(local_repo):
    """One S3 PUT per cluster, not per detector: the worker writes its cluster's results together."""
    plan, clusters, _summary = _run(local_repo, execution_id="exec-4")
    store = storage_for(plan["results_prefix"])
    files = sorted(store.list(plan["results_prefix"]))
    assert files == sorted(cluster_file_uri(plan["results_prefix"], c["cluster_id"]) for c in clusters)
    for uri, cluster in zip(files, sorted(clusters, key=lambda c: c["cluster_id"]), strict=True):
        written = read_file(uri)
        assert [(r.exposure, r.detector) for r in written] == [
            (q["exposure"], q["detector"]) for q in cluster["quanta"]
        ]
        assert all(r.status == "succeeded" and r.output_uri for r in written)


def test_record_failure_keeps_what_the_worker_recorded(local_repo):
    """A worker that wrote its results and then failed: RecordFailure keeps its succeeded quanta,
    records the others as failed, and the file stays one per cluster."""
    plan = plan_handler({"input": _input(), "execution_id": "exec-5"})
    cluster = json.loads(storage_for(plan["manifest_uri"]).read_bytes(plan["manifest_uri"]))[0]
    first, second = cluster["quanta"]
    uri = cluster_file_uri(plan["results_prefix"], cluster["cluster_id"])
    done = QuantumResult(
        instrument=first["instrument"],
        exposure=first["exposure"],
        detector=first["detector"],
        status="succeeded",
    )
    write_results(uri, [done])
    out = record_failure_handler(
        {
            "cluster": cluster,
            "results_prefix": plan["results_prefix"],
            "error": {"Error": "Runtime.OutOfMemory"},
        }
    )
    assert out == {"recorded": 1}
    recorded = {(r.exposure, r.status, r.error) for r in read_file(uri)}
    assert recorded == {
        (first["exposure"], "succeeded", None),
        (second["exposure"], "failed", "Runtime.OutOfMemory"),
    }
    assert storage_for(uri).list(plan["results_prefix"]) == [uri]


def test_results_of_older_executions_are_still_read(tmp_path):
    """One result object per file (the layout before one file per cluster); a succeeded result wins."""
    prefix = tmp_path.as_uri() + "/"
    ok = QuantumResult(instrument="HSC", exposure=1, detector=2, status="succeeded")
    bad = ok.model_copy(update={"status": "failed", "error": "Sandbox.Timedout"})
    storage_for(prefix).write_bytes(prefix + "HSC_1_2.json", ok.model_dump_json().encode())
    write_results(cluster_file_uri(prefix, "HSC-2-1"), [bad])
    assert read_results(prefix) == {("HSC", 1, 2): ok}
    storage_for(prefix).write_bytes(prefix + "bad.json", b'{"results": 1}')
    with pytest.raises(ResultsFileError, match=r"bad\.json: not a quantum results file"):
        read_results(prefix)


def test_quanta_without_calibrations_are_recorded_by_the_plan_in_one_file(local_repo):
    local_repo.registry.register_collection("Generic/calib/empty", "CALIBRATION")
    plan, clusters, summary = _run(
        local_repo, execution_id="exec-6", calib_collection="Generic/calib/empty", max_failure_fraction=1.0
    )
    assert plan["failed_at_plan"] == 4 and clusters == []
    store = storage_for(plan["results_prefix"])
    assert store.list(plan["results_prefix"]) == [plan["results_prefix"] + "plan.json"]
    assert summary["failed"] == 4 and summary["succeeded"] == 0
    assert all(
        f["error"].startswith("MissingCalibrationError: no certified bias") for f in summary["failures"]
    )


def test_a_cluster_results_file_stays_one_path_component(tmp_path):
    prefix = tmp_path.as_uri() + "/"
    assert cluster_file_uri(prefix, "HSC-3-904030") == prefix + "cluster-HSC-3-904030.json"
    assert cluster_file_uri(prefix, "../My Cam/x-3-7") == prefix + "cluster-.._My_Cam_x-3-7.json"
