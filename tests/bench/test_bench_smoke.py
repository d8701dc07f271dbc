"""The benchmark scripts run (--quick) and print their figures; no timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_isr_bench_quick():
    proc = subprocess.run(
        [sys.executable, str(BENCH / "isr.py"), "--quick"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    for key in (
        "full_isr_s",
        "io_floor_s",
        "isr_over_io_floor",
        "peak_traced_mb",
        "ccdproc_subset_s",
        "ccdproc_over_ours_subset",
    ):
        assert key in figures, key
    assert figures["full_isr_s"] > 0 and figures["io_floor_s"] > 0


def test_products_bench_quick():
    """bench/products.py: bytes, times and residuals per compression mode; compressed is smaller."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "products.py"), "--quick"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert set(figures["modes"]) == {"none", "lossless", "quantized"}
    none, quantized = figures["modes"]["none"], figures["modes"]["quantized"]
    for key in ("postISRCCD", "masters", "isr_calibration_load_s", "cold_worker_bytes", "chi"):
        assert key in quantized, key
    assert quantized["postISRCCD"]["bytes"] < none["postISRCCD"]["bytes"]
    assert all(
        quantized["masters"][t]["bytes"] < none["masters"][t]["bytes"] for t in ("bias", "dark", "flat")
    )
    assert abs(quantized["chi_change_vs_none"]["std"]) < 0.002


def test_scaling_bench_quick(tmp_path):
    """bench/scaling.py: speedup curves for combine, ISR and end to end, and the PNG; no timings asserted."""
    png = tmp_path / "scaling.png"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "scaling.py"), "--quick", "--max-workers", "2", "--out-png", str(png)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert figures["cap"] == 2 and figures["counts"] == [1, 2]
    for key in (
        "combine_in_memory_median",
        "combine_in_memory_meanclip",
        "combine_files_median",
        "combine_files_meanclip",
        "combine_in_memory_meanclip_chunk16k",
        "io_floor_parallel_read",
        "isr",
        "end_to_end",
    ):
        assert set(figures["speedup_curves"][key]) == {"1", "2"}, key
    for key in ("wall_s", "isr_seconds_summed", "wall_x_workers_over_isr", "detectors_per_s"):
        assert set(figures["end_to_end"][key]) == {"1", "2"}, key
    assert set(figures["combine"]["io_floor"]["mb_s"]) == {"1", "2"}
    assert set(figures["isr"]["detectors_per_s"]) == {"1", "2"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
