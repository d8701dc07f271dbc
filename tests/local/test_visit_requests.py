"""The S3 and SQS requests the cost model counts for one ProcessVisit execution, by hand: one
results file per cluster (a PUT by its worker, a GET by Summarize), plan-time failures in one
file, and a crashed cluster's file written by RecordFailure instead of its worker."""

from __future__ import annotations

from collections import Counter

from isrflow.local.usage import visit_requests

CALIBS = {k: {"id": f"{k}-7"} for k in ("bias", "dark", "flat", "defects")}


def _cluster(exposures: list[int]) -> dict:
    return {
        "quanta": [{"instrument": "HSC", "exposure": e, "detector": 7, "calibs": CALIBS} for e in exposures]
    }


def _result(exposure: int, status: str) -> dict:
    return {"instrument": "HSC", "exposure": exposure, "detector": 7, "status": status}


def test_requests_of_two_clusters_of_three_one_crashed_and_a_plan_failure():
    clusters = [_cluster([1, 2, 3]), _cluster([4, 5, 6])]
    results = [_result(e, "succeeded") for e in (1, 2, 3)]
    results += [_result(e, "failed") for e in (4, 5, 6, 9)]  # 4-6: the crashed worker's; 9: no calibration
    states = Counter({"RecordFailure": 1, "Summarize": 1})
    messages = 3 + 7 + 1  # datasets, processing records, the completion marker
    puts, gets, sqs = visit_requests(
        {"previews": False, "failed_at_plan": 1}, clusters, results, states, messages
    )
    # PUT: manifest + plan.json; the surviving worker's results file + its 3 outputs; RecordFailure's
    # file for the crashed cluster; one LIST of results/ by Summarize
    assert puts == 2 + (1 + 3) + 1 + 1
    # GET: ItemReader; 4 calibrations per cluster; 6 raws; RecordFailure's look for its file;
    # Summarize's 3 results files and the manifest
    assert gets == 1 + 2 * 4 + 6 + 1 + 3 + 1
    # SQS: a send per succeeded quantum, one batch of 7 records, the marker; receive + delete per 10
    assert sqs == 3 + 1 + 1 + 2 * 2


def test_a_cluster_writes_one_results_file_whatever_its_size():
    one_each = [_cluster([e]) for e in range(1, 7)]
    together = [_cluster([1, 2, 3, 4, 5, 6])]
    results = [_result(e, "succeeded") for e in range(1, 7)]
    states = Counter({"Summarize": 1})
    plan = {"previews": False, "failed_at_plan": 0}
    puts_1, gets_1, _ = visit_requests(plan, one_each, results, states, 13)
    puts_6, gets_6, _ = visit_requests(plan, together, results, states, 13)
    assert puts_1 - puts_6 == 5  # five results files fewer
    assert gets_1 - gets_6 == 5 * 4 + 5  # five clusters' calibrations and results files fewer
