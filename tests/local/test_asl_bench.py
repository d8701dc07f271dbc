"""bench/orchestration_map.py --quick runs and reports what it promises (keys only: timings are
machine-dependent; the numbers themselves are reported by the benchmark, not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "orchestration_map.py"


def test_orchestration_map_bench_quick_reports_per_item_overhead():
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"target_ms_per_item", "max_workers", "distributed", "meets_target"} <= set(out)
    assert set(out["distributed"]) == {"100", "1000", "10000"}
    for row in out["distributed"].values():
        assert {"items", "seconds", "ms_per_item", "state_transitions"} <= set(row)
