"""``isrflow tune``: Lambda's CPU share and memory limit emulated per setting, priced per detector.

No timing assertions: the tests check what each setting's process was given (cores, the memory
variable), what it used (peak RSS against the setting) and the arithmetic of the price."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from isrflow.cli import cli
from isrflow.local.lambdas import LocalFunction
from isrflow.model.errors import ConfigError
from isrflow.ops.prices import load_prices
from isrflow.ops.tune import Invocation, Measurement, cpu_share, judge, parse_settings, tune

PRICES = load_prices()

HANDLER = """
import json, os

def handler(event, context):
    hold = b"\\x01" * (event["mib"] << 20)  # touched: counts in the resident set
    with open(event["out"], "a") as f:
        f.write(json.dumps({"cores": sorted(os.sched_getaffinity(0)),
                            "memory": os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
                            "context_mb": context.memory_limit_in_mb, "held": len(hold)}) + "\\n")
    return {"ok": True}
"""


@pytest.mark.parametrize(
    ("memory", "cores", "expected"),
    [
        (1024, [0, 1], ((0,), 1024 / 1769, False)),
        (1769, [0, 1], ((0,), 1.0, False)),
        (3008, [0, 1], ((0, 1), 3008 / 1769 / 2, False)),
        (10240, [0, 1], ((0, 1), 1.0, True)),
        (512, [3, 5], ((3,), 512 / 1769, False)),
    ],
)
def test_cpu_share_follows_lambdas_vcpu_per_1769_mb(memory, cores, expected):
    share = cpu_share(memory, cores)
    assert (share.cores, round(share.duty, 6), share.capped) == (
        expected[0],
        round(expected[1], 6),
        expected[2],
    )
    assert share.vcpus == pytest.approx(min(memory / 1769, 6))


def test_settings_are_checked():
    assert parse_settings("3008, 1024,1024") == [1024, 3008]
    for bad in ("64", "20000", "1k", ""):
        with pytest.raises(ConfigError):
            parse_settings(bad)


def test_a_setting_below_the_peak_fails_and_costs_are_the_price_tables():
    share = cpu_share(1024, [0])
    m = Measurement(
        invocations=[
            Invocation(ok=True, duration_s=4.0),
            Invocation(ok=True, duration_s=2.0),
            Invocation(ok=True, duration_s=3.0),
        ],
        peak_rss_mb=900.0,
        exit_code=0,
    )
    row = judge(1024, share, m, detectors_per_invocation=2, architecture="arm64", prices=PRICES, function="f")
    assert row.fits and (row.cold_s, row.warm_s) == (4.0, 2.5)
    usd = 1.0 * 2.5 * PRICES.lambda_.gb_second["arm64"] + PRICES.lambda_.requests_per_million / 1e6
    assert row.usd_per_invocation == pytest.approx(usd)
    assert row.cost_per_1000_detectors == pytest.approx(usd / 2 * 1000)
    small = judge(
        512,
        cpu_share(512, [0]),
        m,
        detectors_per_invocation=2,
        architecture="arm64",
        prices=PRICES,
        function="f",
    )
    assert not small.fits and "OutOfMemory" in small.why_not


def test_each_setting_runs_in_its_own_process_with_its_cores_and_memory(tmp_path):
    (tmp_path / "app.py").write_text(HANDLER)
    out = tmp_path / "calls.jsonl"
    fn = LocalFunction(
        name="f", handler_file=str(tmp_path / "app.py"), handler_attr="handler", timeout_s=60, memory_mb=128
    )
    cores = sorted(os.sched_getaffinity(0))
    report = tune(
        fn,
        [{"mib": 300, "out": str(out)}],
        [256, 2048],
        invocations=2,
        detectors_per_invocation=1,
        architecture="arm64",
        prices=PRICES,
        workload="test",
        workdir=tmp_path,
        available=cores,
    )
    small, large = report.settings
    assert small.peak_rss_mb > 300 and not small.fits and "256 MB" in small.why_not
    assert large.fits and large.invocations == 2 and large.failed_invocations == 0
    assert report.cheapest_mb == report.fastest_mb == 2048
    calls = [json.loads(line) for line in out.read_text().splitlines()]
    assert [c["memory"] for c in calls] == ["256", "256", "2048", "2048"]
    assert [c["context_mb"] for c in calls] == [256, 256, 2048, 2048]
    assert calls[0]["cores"] == cores[:1]
    assert calls[2]["cores"] == cores[: min(2, len(cores))]


def test_cli_tunes_the_isr_worker_on_a_tiny_simulated_workload(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "tune",
            "isr",
            "--camera",
            "generic",
            "--small",
            "--exposures",
            "2",
            "--cluster-size",
            "2",
            "--memory",
            "1024,2048",
            "--invocations",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["function"].endswith("IsrFunction") or "Isr" in report["function"]
    assert report["detectors_per_invocation"] == 2
    assert [r["memory_mb"] for r in report["settings"]] == [1024, 2048]
    for row in report["settings"]:
        assert row["fits"], row
        assert row["invocations"] == 2 and row["failed_invocations"] == 0
        assert 0 < row["peak_rss_mb"] < row["memory_mb"]
        assert row["cost_per_1000_detectors"] > 0
    assert report["cheapest_mb"] in (1024, 2048)


def test_cli_needs_an_event_for_other_functions():
    result = CliRunner().invoke(cli, ["tune", "SummarizeFunction"])
    assert result.exit_code != 0 and "--event" in result.output
    result = CliRunner().invoke(cli, ["tune", "NoSuchFunction"])
    assert result.exit_code != 0 and "known:" in result.output


def test_tune_needs_events(tmp_path):
    fn = LocalFunction(name="f", handler_file=str(Path(tmp_path) / "app.py"))
    with pytest.raises(ConfigError):
        tune(
            fn,
            [],
            [1024],
            invocations=1,
            detectors_per_invocation=1,
            architecture="arm64",
            prices=PRICES,
            workload="none",
        )
