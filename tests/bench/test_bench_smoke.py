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
