"""``isrflow plan-night``: the night model against a hand computation with round prices, its
execution layouts (per visit, batched clusters, prompt), and figures taken from a real execution."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import yaml
from click.testing import CliRunner
from ops_helpers import CALIB_COLLECTION, make_prompt_repo

from isrflow.cli import cli
from isrflow.ops.night import (
    PLAN_SECONDS_PER_DETECTOR,
    SUMMARIZE_SECONDS_PER_DETECTOR,
    NightFigures,
    NightSetup,
    camera_pixels,
    figures_from_execution,
    model_night,
)
from isrflow.ops.prices import load_prices
from isrflow.registry import ingest

# $1 per Lambda request and GB-s, per state transition, per SQS request and per S3 PUT/LIST; $0.10 per GET
ROUND = {
    "lambda": {"requests_per_million": 1e6, "gb_second": {"arm64": 1.0, "x86_64": 1.0}},
    "stepfunctions": {"standard_per_1000_transitions": 1000.0},
    "sqs": {"requests_per_million": 1e6},
    "s3": {
        "put_copy_post_list_per_1000": 1000.0,
        "get_select_per_1000": 100.0,
        "storage_gb_month": {"STANDARD": 1.0, "STANDARD_IA": 0.5},
    },
}

FIGURES = NightFigures(
    isr_seconds=2.0,
    raw_mb=10.0,
    calib_mb=20.0,
    output_mb=10.0,
    plan_seconds=1.0,
    summarize_seconds=2.0,
    figures_detectors=3,
    ingest_seconds=0.5,
    transitions_per_execution=5,
    transitions_per_cluster=1,
)


@pytest.fixture(scope="module")
def round_prices(tmp_path_factory):
    path = tmp_path_factory.mktemp("prices") / "round.yaml"
    path.write_text(yaml.safe_dump(ROUND))
    return load_prices(path)


def _setup(**kw) -> NightSetup:
    base = {
        "camera": "lsstcam",
        "visits": 2,
        "detectors_per_visit": 3,
        "concurrency": 2,
        "isr_memory_mb": 1769,
        "plan_memory_mb": 1024,
        "summarize_memory_mb": 1024,
        "ingest_memory_mb": 512,
        "writer_memory_mb": 1024,
        "writer_batch": 5000,
        "s3_mbps": 10.0,
    }
    return NightSetup(**(base | kw))


def _service(model, name):
    return next(s.usd for s in model.services if s.service == name)


def test_one_execution_per_visit_matches_a_hand_computation(round_prices):
    m = model_night(_setup(), FIGURES, round_prices)
    assert (m.detectors, m.executions, m.clusters) == (6, 2, 6)
    isr_s = 2.0 + (10 + 10) / 10 + 20 / 10  # compute + raw and output + the cluster's calibrations at 10 MB/s
    assert m.cluster_seconds == pytest.approx(isr_s)
    gbs = 1769 / 1024 * isr_s
    assert _service(m, "Lambda Isr") == pytest.approx(2 * 3 * (1 + gbs))
    assert _service(m, "Lambda Plan") == pytest.approx(2 * (1 + 1.0))
    assert _service(m, "Lambda Summarize") == pytest.approx(2 * (1 + 2.0))
    assert _service(m, "Lambda Ingest") == pytest.approx(6 * (1 + 0.5 * 0.5))
    assert _service(m, "Step Functions") == pytest.approx(2 * (5 + 3))
    # per execution: PUT manifest, 3 results, 3 outputs, LIST results = 8; GET ItemReader, 4 calibrations x 3
    # clusters, 3 raws, 3 results, manifest = 20, + 2 ranged header GETs per ingested raw
    assert _service(m, "S3 requests") == pytest.approx(2 * (8 + 0.1 * (20 + 6)))
    # 3 dataset sends, 1 records batch, the completion, receive + delete of the 7 messages; 3 ingest sends
    assert _service(m, "SQS") == pytest.approx(2 * (3 + 1 + 1 + 2 + 3))
    assert m.total_usd == pytest.approx(sum(s.usd for s in m.services))
    assert m.per_1000_detectors_usd == pytest.approx(m.total_usd / 6 * 1000)
    assert m.wall_seconds == pytest.approx(math.ceil(6 / 2) * isr_s + 1.0 + 2.0)
    assert not m.within_budget and m.budget_usd == 10
    assert m.storage_month_usd == pytest.approx({"STANDARD": 6 * 10 / 1e3, "STANDARD_IA": 6 * 10 / 1e3 / 2})


def test_below_one_vcpu_the_compute_stretches(round_prices):
    m = model_night(_setup(isr_memory_mb=1024), FIGURES, round_prices)
    assert m.cluster_seconds == pytest.approx(2.0 * 1769 / 1024 + 2.0 + 2.0)


def test_clusters_of_several_visits_read_calibrations_once_per_cluster(round_prices):
    one = model_night(_setup(visits=4, visits_per_execution=4, cluster_size=1), FIGURES, round_prices)
    four = model_night(_setup(visits=4, visits_per_execution=4, cluster_size=4), FIGURES, round_prices)
    assert (one.executions, one.clusters, four.clusters) == (1, 12, 3)
    assert four.cluster_seconds == pytest.approx(4 * 2.0 + 4 * 20 / 10 + 20 / 10)
    # per cluster 4 calibration GETs, a results file PUT and its GET by Summarize: 9 clusters fewer
    assert _service(one, "S3 requests") - _service(four, "S3 requests") == pytest.approx(
        (36 + 9) * 0.1 + 9 * 1.0
    )
    assert _service(four, "Step Functions") == pytest.approx(5 + 3)


def test_a_warm_cache_saves_calibration_reads_and_their_transfer(round_prices):
    cold = model_night(_setup(), FIGURES, round_prices)
    warm = model_night(_setup(cache_hit_rate=0.5), FIGURES, round_prices)
    assert cold.cluster_seconds - warm.cluster_seconds == pytest.approx(0.5 * 20 / 10)
    assert _service(cold, "S3 requests") - _service(warm, "S3 requests") == pytest.approx(2 * 6 * 0.1)


def test_prompt_processing_runs_one_execution_per_raw_file(round_prices):
    m = model_night(_setup(prompt=True), FIGURES, round_prices)
    assert (m.executions, m.clusters) == (6, 6)
    assert _service(m, "Step Functions") == pytest.approx(6 * (5 + 1))
    # measured on 3 detectors, run on 1: two detectors' share fewer
    assert _service(m, "Lambda Plan") == pytest.approx(6 * (1 + 1.0 - 2 * PLAN_SECONDS_PER_DETECTOR))
    assert _service(m, "Lambda Summarize") == pytest.approx(
        6 * (1 + 2.0 - 2 * SUMMARIZE_SECONDS_PER_DETECTOR)
    )


def test_plan_and_summarize_scale_with_every_visit_of_an_execution(round_prices):
    m = model_night(_setup(visits=4, visits_per_execution=4), FIGURES, round_prices)
    assert (m.executions, m.detectors) == (1, 12)
    # measured on 3 detectors, one execution holds 12: nine detectors' share more
    assert _service(m, "Lambda Plan") == pytest.approx(1 + 1.0 + 9 * PLAN_SECONDS_PER_DETECTOR)
    assert _service(m, "Lambda Summarize") == pytest.approx(1 + 2.0 + 9 * SUMMARIZE_SECONDS_PER_DETECTOR)
    assert not any(a.startswith("WARNING") for a in m.assumptions)


def test_an_execution_too_big_for_summarize_is_flagged(round_prices):
    m = model_night(
        _setup(visits=1000, visits_per_execution=1000, detectors_per_visit=189), FIGURES, round_prices
    )
    warnings = [a for a in m.assumptions if a.startswith("WARNING")]
    assert [w.split(" needs ")[1].split(" ")[0] for w in warnings] == ["Plan", "Summarize"]
    assert "189,000 detectors" in warnings[1] and "past its 900 s timeout" in warnings[1]
    assert "past its 300 s timeout" in warnings[0]


def test_default_figures_scale_with_the_camera():
    lsst, hsc = camera_pixels("lsstcam"), camera_pixels("hsc")
    assert lsst[2] == 189 and hsc[2] == 112
    assert 15 < lsst[0] < 17 and 8 < hsc[0] < 9


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("night")
    repo = make_prompt_repo(tmp, detectors=(0, 1, 2), science=2)
    assert ingest(repo.registry, [r.path for r in repo.night.raws]).ok
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "process-visit",
            "--repo",
            str(repo.root),
            "--where",
            "instrument = 'Generic'",
            "--output-run",
            "Generic/runs/night",
            "--calib-collection",
            CALIB_COLLECTION,
            "--cluster-size",
            "2",
            "--workers",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return repo, json.loads(result.stdout)["execution"]


def test_figures_come_from_the_execution_records(measured):
    from isrflow.local.records import load_record

    repo, arn = measured
    name = arn.rsplit(":", 1)[-1]
    figures = figures_from_execution(repo.root, name, "lsstcam")  # generic: no camera model, used as measured
    records = repo.registry.processing_records(arn)
    assert figures.isr_seconds == pytest.approx(statistics.median(r["duration_s"] for r in records))
    record = load_record(repo.root, name)
    assert figures.transitions_per_execution == record.state_transitions_top
    assert figures.transitions_per_cluster * record.child_executions == pytest.approx(
        record.state_transitions - record.state_transitions_top
    )
    assert figures.figures_detectors == 6 and 0 < figures.output_mb < 1
    refs = {r.id: r for r in repo.registry.query_datasets("raw")}
    assert figures.raw_mb == pytest.approx(statistics.fmean(r.size for r in refs.values()) / 1e6)
    calibs = repo.registry.query_datasets("bias", [CALIB_COLLECTION])
    assert figures.calib_mb > calibs[0].size / 1e6  # bias + dark + flat + defects of a detector
    assert "execution" in figures.sources["isr_seconds"]


def test_cli_prints_the_breakdown_the_verdict_and_the_assumptions(measured):
    repo, arn = measured
    result = CliRunner().invoke(
        cli,
        [
            "plan-night",
            "--visits",
            "10",
            "--camera",
            "lsstcam",
            "--concurrency",
            "100",
            "--from-execution",
            arn.rsplit(":", 1)[-1],
            "--repo",
            str(repo.root),
        ],
    )
    assert result.exit_code == 0, result.output
    for text in (
        "10 visits x 189 detectors",
        "modelled wall time at concurrency 100",
        "Step Functions",
        "S3 requests",
        "total per night",
        "budget per night",
        "assumptions:",
        "STANDARD_IA",
    ):
        assert text in result.output, text
    data = json.loads(CliRunner().invoke(cli, ["plan-night", "--json"]).stdout)
    assert data["detectors"] == 189_000 and data["within_budget"] == (data["total_usd"] <= 10)
    assert data["setup"]["isr_memory_mb"] > 0 and data["assumptions"]
