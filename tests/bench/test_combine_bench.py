"""bench/combine.py --quick runs and prints every figure (keys only; no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_combine_bench_quick():
    proc = subprocess.run(
        [sys.executable, str(BENCH / "combine.py"), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    for key in (
        "frames",
        "shape",
        "cores",
        "input_mb",
        "budget_mb",
        "ours_files",
        "ours_in_memory",
        "banzai_median",
        "ccdproc",
        "ratios",
        "memory",
        "throughput_mb_s",
    ):
        assert key in figures, key
    for label in ("ours_files", "ours_in_memory"):
        for statistic in ("median", "meanclip"):
            for threads in ("1", "all"):
                assert "seconds" in figures[label][statistic][threads], (label, statistic, threads)
    assert "seconds" in figures["ccdproc"]["median"] and "seconds" in figures["ccdproc"]["meanclip"]
    assert "available" in figures["banzai_median"]
    for key in (
        "banzai_median_over_ours_median_1",
        "ccdproc_median_over_ours_median_1",
        "ccdproc_sigma_clip_average_over_ours_meanclip_1",
    ):
        assert key in figures["ratios"]
    assert figures["memory"]["within_budget"] is True
