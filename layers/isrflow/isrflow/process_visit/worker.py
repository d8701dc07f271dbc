"""ISR of one cluster: read inputs, run ISR per quantum, write outputs and results, send
dataset + provenance messages. One bad quantum never fails the others."""

from __future__ import annotations

import hashlib
import json
import logging
import resource
import time
import uuid

from ..messages import ClusterSummary, DatasetMessage, IsrClusterEvent, ProvenanceInput, QuantumResult
from ..queues import QueueSender
from ..registry.models import DatasetRef, Quantum
from ..storage import storage_for
from . import layout

OUTPUT_TYPE = "postISRCCD"
_MESSAGE_NS = uuid.UUID("6f1d7b8e-3c1a-5d7e-9a53-1f0c2b7d4e91")

logger = logging.getLogger("isrflow.isr")


def message_id(execution_id: str, subject: object, kind: str = "dataset") -> str:
    """Deterministic per (execution, dataset): a retried worker re-sends the same message ids."""
    return uuid.uuid5(_MESSAGE_NS, f"{execution_id}/{kind}/{subject}").hex


def peak_memory_mb() -> float:
    """This process's peak resident memory so far, MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _CalibrationCache:
    """Calibrations of a cluster, read once by dataset id, in background threads."""

    def __init__(self):
        self._items: dict[str, object] = {}

    def prefetch(self, q: Quantum) -> None:
        for kind, ref in q.calibs.items():
            if ref is not None and str(ref.id) not in self._items:
                self._items[str(ref.id)] = _submit(kind, ref)

    def calibrations(self, q: Quantum):
        """The quantum's calibrations, pending (run_isr resolves them after the overscan stage)."""
        from ..isr.pipeline import PendingCalibrations

        self.prefetch(q)
        return PendingCalibrations({k: self._items[str(ref.id)] for k, ref in q.calibs.items() if ref is not None})


def _submit(kind: str, ref: DatasetRef):
    from ..isr.pipeline import _pool, calibration_from_bytes

    # the registered sha256 is verified once per cached copy (ChecksumMismatchError fails the detector)
    return _pool().submit(lambda: calibration_from_bytes(kind, storage_for(ref.uri).read_bytes(ref.uri), ref.uri,
                                                         expected_sha256=ref.sha256))


def process_quantum(q: Quantum, event: IsrClusterEvent, cache: _CalibrationCache, sender: QueueSender) -> QuantumResult:
    from ..exposure_io import exposure_to_bytes
    from ..isr import IsrConfig
    from ..isr.pipeline import run_isr
    from ..rawio import read_raw

    start = time.perf_counter()
    base = dict(instrument=q.instrument, exposure=q.exposure, detector=q.detector)
    try:
        calibs = cache.calibrations(q)  # read in the background while the raw is read and assembled
        frame = read_raw(storage_for(q.raw.uri).read_bytes(q.raw.uri), detector=q.detector, name=q.raw.uri)
        result = run_isr(frame, calibs, IsrConfig.model_validate(event.isr_config))
        data = exposure_to_bytes(result)
        storage_for(q.output.uri).write_bytes(q.output.uri, data)
        inputs = [ProvenanceInput(dataset_id=q.raw.id, role="raw")]
        inputs += [ProvenanceInput(dataset_id=ref.id, role=k) for k, ref in sorted(q.calibs.items()) if ref is not None]
        message = DatasetMessage(
            dataset_type=q.output.dataset_type or OUTPUT_TYPE, run=event.output_run, data_id=q.output.data_id, uri=q.output.uri,
            size=len(data), sha256=hashlib.sha256(data).hexdigest(), inputs=inputs, replace=q.replace,
            execution_id=event.execution_id, message_id=message_id(event.execution_id, q.output.id),
        )
        sender.send([message])
        if event.previews:
            _write_preview(result, q)
        stats = None
        if event.measure:  # calibration inputs: the statistics flat normalisation and routing use
            from ..calibration.stats import measure_input

            stats = measure_input(result.image, result.mask, result.header)
        return QuantumResult(**base, status="succeeded", output_uri=q.output.uri,
                             duration_s=time.perf_counter() - start, peak_memory_mb=peak_memory_mb(), messages_sent=1,
                             output_size=len(data), stats=stats)
    except Exception as exc:  # one bad detector must not fail the others: record it
        return QuantumResult(**base, status="failed", duration_s=time.perf_counter() - start,
                             peak_memory_mb=peak_memory_mb(), error=f"{type(exc).__name__}: {exc}"[:2000])


def _write_preview(exposure, q: Quantum) -> None:
    """PNG + mosaic thumbnail next to the output; best effort (a preview never fails a quantum)."""
    from ..ops.previews import write_detector_preview

    try:
        write_detector_preview(exposure, q.output.uri, q.instrument, q.detector)
    except Exception as exc:  # noqa: BLE001 - logged, the ISR output itself is complete
        logger.warning(json.dumps({"message": "preview not written", "output": q.output.uri,
                                   "error": f"{type(exc).__name__}: {exc}"}))


def process_cluster(event: IsrClusterEvent, sender: QueueSender) -> ClusterSummary:
    """Run every quantum of the cluster; write each one's result JSON next to the others."""
    cache = _CalibrationCache()
    results_store = storage_for(event.results_prefix)
    ok = failed = 0
    for q in event.cluster.quanta:
        outcome = process_quantum(q, event, cache, sender)
        results_store.write_bytes(layout.result_uri(event.results_prefix, q.instrument, q.exposure, q.detector),
                                  outcome.model_dump_json().encode())
        ok += outcome.status == "succeeded"
        failed += outcome.status == "failed"
    return ClusterSummary(cluster_id=event.cluster.cluster_id, succeeded=ok, failed=failed)
