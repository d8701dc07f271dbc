"""ISR of one cluster: read inputs, run ISR per quantum, write outputs and the cluster's results, send
dataset + provenance messages. One bad quantum never fails the others."""

from __future__ import annotations

import hashlib
import logging
import resource
import time
import uuid
from concurrent.futures import Future
from typing import TYPE_CHECKING

from isrflow.infra.edge import add_count
from isrflow.infra.queues import QueueSender
from isrflow.io.storage import storage_for
from isrflow.model.datasets import Quantum
from isrflow.model.messages import (
    ClusterSummary,
    DatasetMessage,
    IsrClusterEvent,
    ProvenanceInput,
    QuantumReads,
    QuantumResult,
)
from isrflow.process_visit import results

if TYPE_CHECKING:
    from isrflow.isr.pipeline import CalibrationInput

OUTPUT_TYPE = "postISRCCD"
_MESSAGE_NS = uuid.UUID("6f1d7b8e-3c1a-5d7e-9a53-1f0c2b7d4e91")

logger = logging.getLogger("isrflow.isr")


def message_id(execution_id: str, subject: object, kind: str = "dataset") -> str:
    """Deterministic per (execution, dataset): a retried worker re-sends the same message ids."""
    return uuid.uuid5(_MESSAGE_NS, f"{execution_id}/{kind}/{subject}").hex


def peak_memory_mb() -> float:
    """This process's peak resident memory so far, MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _ClusterCalibrations:
    """The calibrations of one cluster, each looked up once in the process's calibration cache
    (:mod:`isrflow.io.calib_cache`: read, sha256-verified and decoded there) in a background thread.
    The first quantum that needs a calibration owns its lookup; later quanta of the cluster count
    it as a memory hit."""

    def __init__(self):
        self._lookups: dict[str, Future] = {}  # dataset id -> Future[Fetched]
        self._owner: dict[str, tuple[str, int, int]] = {}

    def prefetch(self, q: Quantum) -> None:
        from isrflow.io.calib_cache import calibration_cache
        from isrflow.isr.pipeline import _pool

        cache = calibration_cache()
        for kind, ref in q.calibs.items():
            if ref is not None and str(ref.id) not in self._lookups:
                self._lookups[str(ref.id)] = _pool().submit(cache.get, kind, ref)
                self._owner[str(ref.id)] = _quantum_key(q)

    def calibrations(self, q: Quantum):
        """The quantum's calibrations, pending (run_isr resolves them after the overscan stage)."""
        from isrflow.isr.pipeline import PendingCalibrations

        self.prefetch(q)
        return PendingCalibrations(
            {k: _ItemOf(self._lookups[str(ref.id)]) for k, ref in q.calibs.items() if ref is not None}
        )

    def reads(self, q: Quantum, raw_bytes: int) -> QuantumReads:
        """What the quantum read: its raw's bytes and each calibration lookup that completed."""
        reads = QuantumReads(raw_bytes=raw_bytes)
        for ref in q.calibs.values():
            lookup = self._lookups.get(str(ref.id)) if ref is not None else None
            if ref is None or lookup is None or not lookup.done() or lookup.exception() is not None:
                continue
            fetched = lookup.result()
            if self._owner[str(ref.id)] != _quantum_key(q) or fetched.source == "memory":
                reads.calib_memory_hits += 1
            elif fetched.source == "disk":
                reads.calib_disk_hits += 1
            else:
                reads.calib_misses += 1
                reads.calib_bytes += fetched.datastore_bytes
        return reads


class _ItemOf:
    """The decoded calibration of a pending cache lookup (what PendingCalibrations resolves)."""

    def __init__(self, lookup: Future):
        self.lookup = lookup

    def result(self) -> CalibrationInput:
        return self.lookup.result().item


def _quantum_key(q: Quantum) -> tuple[str, int, int]:
    return q.instrument, q.exposure, q.detector


def process_quantum(
    q: Quantum, event: IsrClusterEvent, cache: _ClusterCalibrations, sender: QueueSender
) -> QuantumResult:
    from isrflow.io.exposure_io import exposure_to_bytes
    from isrflow.io.rawio import read_raw
    from isrflow.isr import IsrConfig
    from isrflow.isr.pipeline import run_isr

    start = time.perf_counter()
    base = {"instrument": q.instrument, "exposure": q.exposure, "detector": q.detector}
    raw_bytes = 0
    try:
        calibs = cache.calibrations(q)  # read in the background while the raw is read and assembled
        raw = storage_for(q.raw.uri).read_bytes(q.raw.uri)
        raw_bytes = len(raw)
        frame = read_raw(raw, detector=q.detector, name=q.raw.uri)
        del raw
        result = run_isr(frame, calibs, IsrConfig.model_validate(event.isr_config))
        del frame  # the raw's pixels are not needed past ISR: not held while the output is encoded
        data = exposure_to_bytes(result)
        storage_for(q.output.uri).write_bytes(q.output.uri, data)
        inputs = [ProvenanceInput(dataset_id=q.raw.id, role="raw")]
        inputs += [
            ProvenanceInput(dataset_id=ref.id, role=k)
            for k, ref in sorted(q.calibs.items())
            if ref is not None
        ]
        message = DatasetMessage(
            dataset_type=q.output.dataset_type or OUTPUT_TYPE,
            run=event.output_run,
            data_id=q.output.data_id,
            uri=q.output.uri,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            inputs=inputs,
            replace=q.replace,
            execution_id=event.execution_id,
            message_id=message_id(event.execution_id, q.output.id),
        )
        sender.send([message])
        if event.previews:
            _write_preview(result, q, data)
        stats = None
        if event.measure:  # calibration inputs: the statistics flat normalisation and routing use
            from isrflow.calibration.stats import measure_input

            stats = measure_input(result.image, result.mask, result.header)
        return QuantumResult(
            **base,
            status="succeeded",
            output_uri=q.output.uri,
            duration_s=time.perf_counter() - start,
            peak_memory_mb=peak_memory_mb(),
            messages_sent=1,
            output_size=len(data),
            stats=stats,
            reads=cache.reads(q, raw_bytes),
        )
    except Exception as exc:  # one bad detector must not fail the others: record it
        return QuantumResult(
            **base,
            status="failed",
            duration_s=time.perf_counter() - start,
            peak_memory_mb=peak_memory_mb(),
            error=f"{type(exc).__name__}: {exc}"[:2000],
            reads=cache.reads(q, raw_bytes),
        )


def _write_preview(exposure, q: Quantum, data: bytes) -> None:
    """PNG + mosaic thumbnail next to the output; best effort (a preview never fails a quantum).
    Rendered from the stored pixels: a quantized output (``data``) decodes to slightly other
    values than ``exposure``, and ``isrflow preview`` re-renders from the file: the same PNG."""
    from isrflow.io.compression import current_mode
    from isrflow.io.exposure_io import read_exposure
    from isrflow.render.previews import write_detector_preview

    try:
        if current_mode() == "quantized":
            exposure = read_exposure(data, q.output.uri)
        write_detector_preview(exposure, q.output.uri, q.instrument, q.detector)
    except Exception as exc:
        logger.warning(
            "preview not written",
            extra={
                "output": q.output.uri,
                "exposure": q.exposure,
                "detector": q.detector,
                "error": f"{type(exc).__name__}: {exc}",
            },
        )


def process_cluster(event: IsrClusterEvent, sender: QueueSender) -> ClusterSummary:
    """Run every quantum of the cluster, then write their results as one file (one PUT per
    cluster: :mod:`isrflow.process_visit.results`)."""
    cache = _ClusterCalibrations()
    ok = failed = 0
    reads = QuantumReads()
    outcomes = []
    for q in event.cluster.quanta:
        outcome = process_quantum(q, event, cache, sender)
        outcomes.append(outcome)
        ok += outcome.status == "succeeded"
        failed += outcome.status == "failed"
        if outcome.status == "failed":
            log_detector_failure(outcome, execution=event.execution_id, cluster=event.cluster.cluster_id)
        for name, value in outcome.reads or QuantumReads():
            setattr(reads, name, getattr(reads, name) + value)
    results.write_results(results.cluster_file_uri(event.results_prefix, event.cluster.cluster_id), outcomes)
    _log_reads(event.cluster.cluster_id, reads)
    add_count("DetectorsSucceeded", ok)
    add_count("DetectorsFailed", failed)
    return ClusterSummary(cluster_id=event.cluster.cluster_id, succeeded=ok, failed=failed)


def _log_reads(cluster_id: str, reads: QuantumReads) -> None:
    """One structured log line per invocation: this cluster's reads and the warm process's cache totals."""
    from isrflow.io.calib_cache import calibration_cache

    logger.info(
        "calibration reads",
        extra={
            "cluster": cluster_id,
            **reads.model_dump(),
            "process_cache": calibration_cache().counters.as_dict(),
        },
    )


def log_detector_failure(result: QuantumResult, **ids: object) -> None:
    """One ERROR log line for a failed detector: its exposure, detector and error, plus ``ids``
    (execution, cluster, ...). Its count goes into the ``DetectorsFailed`` metric (the caller's)."""
    logger.error(
        "detector failed",
        extra={
            **ids,
            "instrument": result.instrument,
            "exposure": result.exposure,
            "detector": result.detector,
            "error": result.error,
        },
    )
