"""The registry-writer benchmark runs (``--quick``) and prints the documented JSON (timing not checked)."""

from __future__ import annotations

import json
import subprocess
import sys

import sqlalchemy as sa
from registry_helpers import PG_URL, REPO_ROOT


def test_bench_quick_prints_the_expected_json(pg_admin) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "registry_writer.py"), "--quick", "--url", PG_URL],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"database", "quick", "batched", "storm", "ratio", "target_datasets_per_s", "meets_target"} <= set(
        out
    )
    assert out["quick"] is True
    batched = out["batched"]
    assert {"datasets", "seconds", "datasets_per_s", "provenance_rows", "lost", "duplicated"} <= set(batched)
    assert batched["batch_size"] == 1000 and batched["provenance_rows"] == 2 * batched["datasets"]
    assert batched["lost"] == 0 and batched["duplicated"] == 0
    assert batched["applied_counted"] == batched["datasets"]
    storm = out["storm"]
    assert {
        "producers",
        "attempted",
        "committed",
        "connection_errors",
        "lost",
        "seconds",
        "datasets_per_s",
    } <= set(storm)
    assert (
        storm["producers"] == 200
        and storm["committed"] + storm["connection_errors"] + storm["other_errors"] == storm["attempted"]
    )
    with pg_admin.connect() as conn:  # the bench dropped its schema
        left = conn.execute(
            sa.text("SELECT count(*) FROM pg_namespace WHERE nspname LIKE :p"), {"p": "bench\\_%"}
        ).scalar()
    assert left == 0
