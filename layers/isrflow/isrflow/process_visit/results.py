"""Quantum results under an execution's results prefix: one JSON file per writer, not per detector.

Each writer of results puts one object holding a JSON array of :class:`QuantumResult`:

============================== ==================================================================
file (under the prefix)        written by
============================== ==================================================================
``cluster-<cluster id>.json``  the ISR worker, once its cluster is done; RecordFailure, merged
                               into it when the worker itself failed
``plan.json``                  the plan: quanta failed before any worker ran (missing calibrations)
============================== ==================================================================

One S3 PUT per cluster instead of one per detector (at clusters of 10 visits, 170k fewer PUTs in
an LSST night, $0.85), and Summarize reads one object per cluster. The price: a worker that dies
in the middle of its cluster (timeout, out of memory) has written no results, so RecordFailure
records all of its quanta as failed, including any whose output it had already written and sent
to the registry. Then:

- ProcessVisit: those quanta are FAILED in the processing records while their datasets may be
  registered, and Summarize's expected message count leaves their dataset messages out (it may
  finish before the writer applies them; a rejection of one goes unreported, the quantum being
  failed already). ``isrflow rerun --failed`` (mode ``replace``) reprocesses them and makes the
  registry consistent.
- BuildCalibration: those inputs count as failed in NormalizeFlats and PrepareCombine, so a
  master may have fewer inputs (below ``min_inputs``: not built); build it again.

Files holding a single result object (the layout before this module: one file per quantum) are
still read, so ``isrflow status`` works on older executions. Where two files name the same
quantum, a succeeded result wins over a failed one.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from isrflow.io.storage import ObjectNotFoundError, storage_for
from isrflow.model.datasets import Quantum
from isrflow.model.errors import IsrflowError
from isrflow.model.messages import QuantumResult
from isrflow.process_visit.layout import path_safe

#: The plan's file of quanta it failed itself.
PLAN_FILE = "plan"

ResultKey = tuple[str, int, int]


class ResultsFileError(IsrflowError):
    """A file under a results prefix that is not a quantum result or an array of them."""


def results_file_uri(prefix: str, name: str) -> str:
    """The URI of the results file ``name`` (a cluster id or :data:`PLAN_FILE`) under ``prefix``."""
    return f"{prefix}{name}.json"


def cluster_file_uri(prefix: str, cluster_id: str) -> str:
    """The results file of one cluster (its id made one path component: it holds the instrument name)."""
    return results_file_uri(prefix, f"cluster-{path_safe(cluster_id)}")


def missing_calibration_result(q: Quantum, calib_collection: str | None) -> QuantumResult:
    """The failed result the plan records for a quantum with no certified calibration of a needed type."""
    return QuantumResult(
        instrument=q.instrument,
        exposure=q.exposure,
        detector=q.detector,
        status="failed",
        error="MissingCalibrationError: no certified "
        + ", ".join(q.missing_calibs)
        + f" in {calib_collection} valid at {q.exposure_begin.isoformat()}",
    )


def write_plan_failures(prefix: str, quanta: list[Quantum], calib_collection: str | None) -> int:
    """Record the quanta missing a calibration as failed (one file, none when there are none)."""
    failed = [missing_calibration_result(q, calib_collection) for q in quanta if q.missing_calibs]
    if failed:
        write_results(results_file_uri(prefix, PLAN_FILE), failed)
    return len(failed)


def write_results(uri: str, results: list[QuantumResult]) -> None:
    """Write ``results`` as one JSON array to ``uri`` (one PUT)."""
    data = "[" + ",".join(r.model_dump_json() for r in results) + "]"
    storage_for(uri).write_bytes(uri, data.encode())


def parse_results(data: bytes, label: str) -> list[QuantumResult]:
    """The results in one file: a JSON array of results, or one result object (the older layout).
    Anything else raises ResultsFileError naming ``label``."""
    try:
        parsed = json.loads(data)
        if isinstance(parsed, dict):
            return [QuantumResult.model_validate(parsed)]
        if isinstance(parsed, list):
            return [QuantumResult.model_validate(item) for item in parsed]
    except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
        raise ResultsFileError(f"{label}: not a quantum results file: {exc}"[:2000]) from None
    raise ResultsFileError(f"{label}: a results file holds a JSON array of quantum results")


def read_file(uri: str) -> list[QuantumResult]:
    """The results in the file at ``uri``; [] when it does not exist."""
    try:
        data = storage_for(uri).read_bytes(uri)
    except ObjectNotFoundError:
        return []
    return parse_results(data, uri)


def key_of(result: QuantumResult) -> ResultKey:
    return result.instrument, result.exposure, result.detector


def merge(results: list[QuantumResult]) -> dict[ResultKey, QuantumResult]:
    """One result per quantum: a succeeded result wins over a failed one, else the last one read."""
    out: dict[ResultKey, QuantumResult] = {}
    for r in results:
        seen = out.get(key_of(r))
        if seen is None or seen.status != "succeeded" or r.status == "succeeded":
            out[key_of(r)] = r
    return out


def results_so_far(prefix: str) -> list[QuantumResult]:
    """The quantum results under ``prefix`` as a reader beside a running (or killed) execution
    finds them, for progress and ``isrflow status``: unlike :func:`read_results`, nothing is
    merged and nothing raises. A file that is not a quantum results file is passed over (a
    BuildCalibration keeps its ``masters/`` results and ``certified.json`` beside its ISR results),
    and so is one removed since the listing."""
    store = storage_for(prefix)
    found: list[QuantumResult] = []
    for uri in sorted(store.list(prefix)):
        if uri.endswith(".json"):
            try:
                found += parse_results(store.read_bytes(uri), uri)
            except (ResultsFileError, ObjectNotFoundError):
                continue
    return found


def read_results(prefix: str) -> dict[ResultKey, QuantumResult]:
    """Every quantum result under ``prefix``, one per (instrument, exposure, detector)."""
    store = storage_for(prefix)
    found: list[QuantumResult] = []
    for uri in sorted(store.list(prefix)):
        if uri.endswith(".json"):
            found += parse_results(store.read_bytes(uri), uri)
    return merge(found)


__all__ = [
    "PLAN_FILE",
    "ResultsFileError",
    "cluster_file_uri",
    "merge",
    "missing_calibration_result",
    "parse_results",
    "read_file",
    "read_results",
    "results_file_uri",
    "results_so_far",
    "write_plan_failures",
    "write_results",
]
