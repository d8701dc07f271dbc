"""The ISR worker path of one detector, as a ProcessVisit worker runs it; used by bench/isr.py.

:func:`worker_figures` builds tile-compressed masters (IMAGE, MASK, VARIANCE, quantized: what the
combine writes) from the simulator's true calibrations, registers nothing, and runs
:func:`isrflow.process_visit.worker.process_quantum` on ``quanta`` quanta of one cluster (the same
raw, file:// datastore, a message sink) after one quantum of another cluster (imports, thread pool:
a warm worker): the cluster's first quantum reads, checksums and decodes the calibrations (its
cache is cold; no memory tier across clusters), the others find them decoded (warm). Per quantum it takes the wall
and CPU seconds (``time.process_time``: every thread of this process); CPU seconds are what a
dedicated vCPU would spend, whatever else shares this machine.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


class _Sink:
    """A QueueSender that drops the messages."""

    def send(self, messages) -> int:
        return len(messages)


def _masters(paths: dict[str, str], work: Path) -> dict[str, Path]:
    """Quantized 3-plane masters from the true calibrations (variance ~ 1% of the level + 1)."""
    from isrflow.io.exposure_io import Exposure, read_exposure, write_exposure

    out = {}
    rng = np.random.default_rng(1)
    for kind in ("bias", "dark", "flat"):
        true = read_exposure(paths[kind])
        variance = np.abs(true.image) * 0.01 + 1.0 + rng.normal(0.0, 0.05, true.image.shape)
        master = Exposure(
            true.image, np.zeros(true.image.shape, np.int32), variance.astype(np.float32), true.header
        )
        out[kind] = write_exposure(work / f"master-{kind}.fits", master, compression="quantized")
    return out | {"defects": Path(paths["defects"])}


def worker_figures(raw_path: str, detector: int, paths: dict[str, str], work: Path, quanta: int) -> dict:
    """Wall and CPU seconds of a cold and the best warm quantum, and the output's bytes."""
    from isrflow.model.datasets import DatasetRef, Quantum
    from isrflow.model.messages import IsrClusterEvent
    from isrflow.process_visit.worker import _ClusterCalibrations, process_quantum

    def ref(kind: str, path: Path, data_id: dict | None = None) -> DatasetRef:
        data = path.read_bytes()
        return DatasetRef(
            id=uuid.uuid4(),
            dataset_type=kind,
            run="bench",
            data_id=data_id or {},
            uri=path.resolve().as_uri(),
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    calibs = {k: ref(k, p) for k, p in _masters(paths, work).items()}
    raw = ref("raw", Path(raw_path))
    out = work / "outputs"
    out.mkdir(exist_ok=True)
    event = IsrClusterEvent.model_construct(
        execution_id="bench", results_prefix=out.as_uri(), output_run="bench", isr_config={}, previews=False
    )
    walls, cpus, size = [], [], 0
    cache = _ClusterCalibrations()
    for i in range(-1, quanta):  # -1: the warm-up cluster, not counted
        if i == 0:
            cache = _ClusterCalibrations()  # the measured cluster: its calibrations not read yet
        data_id = {"instrument": "BENCH", "exposure": i, "detector": detector}
        q = Quantum(
            instrument="BENCH",
            exposure=i,
            detector=detector,
            detector_name=str(detector),
            physical_filter="",
            exposure_begin=datetime.now(UTC),
            raw=raw,
            calibs=calibs,
            output=DatasetRef(
                id=uuid.uuid4(),
                dataset_type="postISRCCD",
                run="bench",
                data_id=data_id,
                uri=(out / f"out-{i}.fits").as_uri(),
            ),
        )
        t0, c0 = time.perf_counter(), time.process_time()
        result = process_quantum(q, event, cache, _Sink())
        if i >= 0:
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        if result.status != "succeeded":
            raise RuntimeError(f"worker path failed: {result.error}")
        size = result.output_size or 0
    warm = slice(1, None) if quanta > 1 else slice(0, None)
    return {
        "worker_cold_cpu_s": round(cpus[0], 3),
        "worker_cold_wall_s": round(walls[0], 3),
        "worker_warm_cpu_s": round(min(cpus[warm]), 3),
        "worker_warm_wall_s": round(min(walls[warm]), 3),
        "worker_calib_decode_cpu_s": round(cpus[0] - min(cpus[warm]), 3),
        "worker_output_mb": round(size / 1e6, 2),
    }


def main(argv: list[str]) -> int:
    """``python bench/isr_worker.py SPEC.json``: run :func:`worker_figures` in this (fresh) process,
    on ``cores`` cores (Lambda's 1,769 MB is one vCPU), and print its figures with the process's
    peak resident memory (MiB; what a Lambda memory setting must hold) as JSON."""
    import json
    import os
    import resource
    import sys

    spec = json.loads(Path(argv[1]).read_text())
    if spec.get("cores"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: spec["cores"]])
    figures = worker_figures(spec["raw"], spec["detector"], spec["paths"], Path(spec["work"]), spec["quanta"])
    figures["worker_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    json.dump(figures, sys.stdout)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv))
