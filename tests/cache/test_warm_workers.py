"""End to end on the embedded runtime: the pool's warm workers read each calibration from the
datastore once, and ``isrflow status`` shows the cache hit rate and the bytes read per detector."""

from __future__ import annotations

from click.testing import CliRunner

from isrflow.cli import cli
from isrflow.local.runtime import CALIB_CACHE_DIR, LocalRuntime
from isrflow.ops.status import execution_status
from tests.process_visit.visit_helpers import make_repo, visit_input

MACHINE = "ProcessVisitStateMachine"
PROCESSES = 2


def test_warm_workers_read_each_calibration_once(tmp_path):
    repo = make_repo(tmp_path, detectors=(0, 1), science=2)  # 4 quanta, 4 calibrations per detector
    with LocalRuntime(repo.root, processes=PROCESSES) as runtime:
        cold = runtime.run(MACHINE, visit_input("Generic/runs/cold", cluster_size=1))
        warm = runtime.run(MACHINE, visit_input("Generic/runs/warm", cluster_size=1))
    assert (cold.status, warm.status) == ("SUCCEEDED", "SUCCEEDED"), (cold.cause, warm.cause)
    calibs = 2 * 4
    cold_reads = execution_status(cold.execution_arn, repo=repo.root).reads
    warm_reads = execution_status(warm.execution_arn, repo=repo.root).reads
    assert cold_reads.detectors == warm_reads.detectors == 4
    # cold: each calibration read at most once per worker process (the disk tier is shared)
    assert calibs <= cold_reads.calib_misses <= PROCESSES * calibs
    # warm: no calibration read from the datastore at all, only the raws
    assert (warm_reads.calib_misses, warm_reads.calib_bytes_per_detector) == (0, 0)
    assert warm_reads.hit_rate == 1.0 and warm_reads.calib_lookups == 4 * 4
    assert warm_reads.datastore_bytes_per_detector == warm_reads.raw_bytes_per_detector > 0
    copies = list((repo.root / CALIB_CACHE_DIR).glob("*.calib"))
    assert len(copies) == calibs
    assert all(c.stat().st_nlink == 2 for c in copies)  # hard links to the datastore's files: no second copy

    shown = CliRunner().invoke(cli, ["status", warm.execution_arn, "--repo", str(repo.root)])
    assert shown.exit_code == 0, shown.output
    assert "calibration cache: 100% hits" in shown.output and "0 datastore of 16 reads" in shown.output
