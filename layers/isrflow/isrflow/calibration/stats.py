"""Statistics of whole frames: afw-style clipped mean/sigma of a sample, and the per-input
statistics every ISR'd calibration input gets (what flat normalisation and the summaries use).

:func:`clipped_stats` applies the MEANCLIP rule of :mod:`isrflow.calibration.kernel` to one
1-D sample: pass 1 keeps values within ``clip x 0.7413 x IQR`` of the median, later passes
within ``clip x s`` of the previous mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from isrflow.calibration.kernel import IQR_TO_SIGMA
from isrflow.io import formats

#: Per-input statistics use every ``SUBSAMPLE``-th pixel in each direction: the level of a
#: million-pixel detector is known to 1e-5 from a sixteenth of its pixels, 16x faster.
SUBSAMPLE = 4


@dataclass(frozen=True)
class ClippedStats:
    mean: float
    std: float
    median: float
    n: int  # values kept by the last pass


def clipped_stats(values: np.ndarray, clip: float = 3.0, iterations: int = 3) -> ClippedStats:
    """Clipped mean, standard deviation and median of the finite values of ``values`` (any shape)."""
    sample = np.asarray(values, dtype=np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return ClippedStats(float("nan"), float("nan"), float("nan"), 0)
    q1, median, q3 = np.percentile(sample, [25.0, 50.0, 75.0])
    center, width = median, IQR_TO_SIGMA * (q3 - q1)
    mean, std, n = median, width, sample.size
    for _ in range(max(1, iterations)):
        kept = sample[np.abs(sample - center) <= clip * width]
        if kept.size == 0:
            break
        mean = float(kept.mean())
        std = float(kept.std(ddof=1)) if kept.size > 1 else 0.0
        n = int(kept.size)
        center, width = mean, std
    return ClippedStats(float(mean), float(std), float(median), n)


def measure_input(image: np.ndarray, mask: np.ndarray | None, header: dict) -> dict:
    """The statistics of one ISR'd input, as a JSON-ready dict: clipped mean, standard deviation,
    median and count of its unmasked pixels (subsampled), its dark and exposure time (s), and
    its shape. Image units (e-)."""
    sub = image[::SUBSAMPLE, ::SUBSAMPLE]
    if mask is not None:
        sub = np.where(mask[::SUBSAMPLE, ::SUBSAMPLE] == 0, sub, np.nan)
    stats = clipped_stats(sub)
    out = asdict(stats)
    out.update(
        rows=int(image.shape[0]),
        cols=int(image.shape[1]),
        darktime=float(header.get(formats.KW_DARKTIME, 0.0) or 0.0),
        exptime=float(header.get("EXPTIME", 0.0) or 0.0),
    )
    return out
