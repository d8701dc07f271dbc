"""``isrflow demo --containers``: the two state machines' inputs (events/process_visit_input.json's
and build_calibration_input.json's shapes) run whole with every Task in its Lambda container
(``sam local start-lambda``), the raws uploaded to moto's S3 and ingested by the IngestFunction
container, the registry queue on moto's SQS drained by the writer's container, the registry in
PostgreSQL. The science must come out as in the process-pool mode: residuals against the
simulator's truth with mean ~0 and std ~1 in units of the noise."""

from __future__ import annotations

import re

from click.testing import CliRunner

from isrflow.cli import cli

ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\w+)\s+[\d.]+\s+\d+\s+[\d.]+\s+(-?[\d.]+)\s+([\d.]+)\s*$")


def test_demo_in_containers_matches_the_truth(sam_project, tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "demo",
            "--containers",
            "--repo",
            str(tmp_path / "repo"),
            "--camera",
            "generic",
            "--small",
            "--detectors",
            "0,1",
            "--science",
            "1",
            "--bias",
            "3",
            "--dark",
            "3",
            "--flat",
            "3",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output[-6000:] + repr(result.exception)
    out = result.output
    assert "ingested them in the IngestFunction container" in out
    for calib_type in ("bias", "dark", "flat", "defects"):
        assert re.search(rf"2 {calib_type} masters in .* certified 2 into", out), out
    rows = [ROW.match(line) for line in out.splitlines()]
    rows = [m.groups() for m in rows if m]
    assert len(rows) == 2, out
    for _exposure, _detector, status, mean, std in rows:
        assert status == "succeeded"
        assert abs(float(mean)) < 0.05 and abs(float(std) - 1.0) < 0.05, (mean, std)
    assert "execution SUCCEEDED" in out
    functions = {
        line.split()[0]
        for line in out.splitlines()
        if line.strip().endswith(tuple("0123456789")) and line.split()[0].endswith("Function")
    }
    assert {
        "IngestFunction",
        "RegistryWriterFunction",
        "IsrFunction",
        "CombineFunction",
        "CalibPlanFunction",
        "NormalizeFlatsFunction",
        "PrepareCombineFunction",
        "DeleteIntermediatesFunction",
        "CertifyCalibFunction",
        "SummarizeCalibFunction",
        "PlanFunction",
        "SummarizeFunction",
    } <= functions, out
