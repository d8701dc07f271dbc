"""bench/orchestration.py --quick runs and prints its figures (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "orchestration.py"


def test_orchestration_bench_quick():
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout)
    assert [m["items"] for m in figures["map_overhead"]] == [100, 1000]
    assert figures["end_to_end"]["detectors"] == 8
    assert figures["queue_to_writer"]["rows"] == figures["queue_to_writer"]["messages"] == 2000
