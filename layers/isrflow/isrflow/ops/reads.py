"""Datastore reads of an execution: calibration cache hit rate and bytes read per detector.

Summarises the ``reads`` of the quantum results (:class:`isrflow.model.messages.QuantumReads`,
filled by the ISR worker from :mod:`isrflow.io.calib_cache`). Sizes in bytes.
"""

from __future__ import annotations

from pydantic import BaseModel

from isrflow.model.messages import QuantumReads


class ReadsSummary(BaseModel):
    """Totals over the detectors whose results carry reads, and the means per detector."""

    detectors: int
    calib_lookups: int
    calib_memory_hits: int
    calib_disk_hits: int
    calib_misses: int
    hit_rate: float | None  # (memory + disk hits) / lookups; None without lookups
    raw_bytes_per_detector: float
    calib_bytes_per_detector: float
    datastore_bytes_per_detector: float  # raw + calibrations: the S3 GET bytes of one detector-ISR


def summarize_reads(results: list[dict]) -> ReadsSummary | None:
    """The summary of the results' reads; None when no result carries any (older workers)."""
    reads = [QuantumReads.model_validate(r["reads"]) for r in results if r.get("reads")]
    if not reads:
        return None
    total = QuantumReads()
    for r in reads:
        for name, value in r:
            setattr(total, name, getattr(total, name) + value)
    lookups = total.calib_memory_hits + total.calib_disk_hits + total.calib_misses
    n = len(reads)
    return ReadsSummary(
        detectors=n,
        calib_lookups=lookups,
        calib_memory_hits=total.calib_memory_hits,
        calib_disk_hits=total.calib_disk_hits,
        calib_misses=total.calib_misses,
        hit_rate=(total.calib_memory_hits + total.calib_disk_hits) / lookups if lookups else None,
        raw_bytes_per_detector=total.raw_bytes / n,
        calib_bytes_per_detector=total.calib_bytes / n,
        datastore_bytes_per_detector=(total.raw_bytes + total.calib_bytes) / n,
    )


def reads_line(summary: ReadsSummary) -> str:
    """One line for ``isrflow status``."""
    rate = f"{summary.hit_rate:.0%}" if summary.hit_rate is not None else "-"
    s, mb = summary, 1e6
    return (
        f"calibration cache: {rate} hits ({s.calib_memory_hits} memory, {s.calib_disk_hits} disk, "
        f"{s.calib_misses} datastore of {s.calib_lookups} reads); datastore read "
        f"{s.datastore_bytes_per_detector / mb:.1f} MB per detector (raw {s.raw_bytes_per_detector / mb:.1f} MB, "
        f"calibrations {s.calib_bytes_per_detector / mb:.1f} MB)"
    )


__all__ = ["ReadsSummary", "reads_line", "summarize_reads"]
