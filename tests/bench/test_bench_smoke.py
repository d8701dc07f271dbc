"""The benchmark scripts run (--quick) and print their figures; no timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_isr_bench_quick():
    proc = subprocess.run([sys.executable, str(BENCH / "isr.py"), "--quick"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    for key in ("full_isr_s", "io_floor_s", "isr_over_io_floor", "peak_traced_mb", "ccdproc_subset_s",
                "ccdproc_over_ours_subset"):
        assert key in figures, key
    assert figures["full_isr_s"] > 0 and figures["io_floor_s"] > 0


def test_products_bench_quick():
    """bench/products.py: bytes, times and residuals per compression mode; compressed is smaller."""
    proc = subprocess.run([sys.executable, str(BENCH / "products.py"), "--quick"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert set(figures["modes"]) == {"none", "lossless", "quantized"}
    none, quantized = figures["modes"]["none"], figures["modes"]["quantized"]
    for key in ("postISRCCD", "masters", "isr_calibration_load_s", "cold_worker_bytes", "chi"):
        assert key in quantized, key
    assert quantized["postISRCCD"]["bytes"] < none["postISRCCD"]["bytes"]
    assert all(quantized["masters"][t]["bytes"] < none["masters"][t]["bytes"] for t in ("bias", "dark", "flat"))
    assert abs(quantized["chi_change_vs_none"]["std"]) < 0.002
