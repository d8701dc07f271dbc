"""The zscale display range (the IRAF ``display`` algorithm), for preview stretches.

Take an evenly spaced sample of the (finite, unmasked) pixels and sort it: plotted against
its rank, the sorted sample of a sky image is close to a straight line in the middle (the
noise) with steep ends (stars, cosmic rays, dead pixels). Fit that line with iterative k-sigma
rejection of outliers (rejected points grow by 1% of the sample to catch their wings), divide
its slope by the *contrast* and span the rank range around the median with it::

    z1 = median - (centre - 1) * slope / contrast
    z2 = median + (n - centre) * slope / contrast

clipped to the sample's minimum and maximum. If too many points are rejected, the full sample
range is used.
"""

from __future__ import annotations

import numpy as np

SAMPLES = 1000
CONTRAST = 0.25
KREJ = 2.5
MAX_ITERATIONS = 5
MAX_REJECT = 0.5
MIN_PIXELS = 5


def _sample(values: np.ndarray, n: int) -> np.ndarray:
    flat = values[np.isfinite(values)].ravel()
    if flat.size > n:
        flat = flat[:: int(np.ceil(flat.size / n))]
    return np.sort(flat.astype(np.float64))


def zscale(values: np.ndarray, *, samples: int = SAMPLES, contrast: float = CONTRAST) -> tuple[float, float]:
    """(z1, z2) for the finite entries of ``values`` (pass only the pixels that should count)."""
    sample = _sample(np.asarray(values), samples)
    n = sample.size
    if n == 0:
        return 0.0, 1.0
    lo, hi = float(sample[0]), float(sample[-1])
    centre = (n - 1) // 2
    median = float(sample[centre]) if n % 2 else float(0.5 * (sample[centre] + sample[centre + 1]))
    min_pixels = max(MIN_PIXELS, int(n * MAX_REJECT))
    grow = max(1, int(n * 0.01))
    x = np.arange(n, dtype=np.float64)
    good = np.ones(n, dtype=bool)
    slope = 0.0
    for _ in range(MAX_ITERATIONS):
        if good.sum() < min_pixels:
            break
        slope, intercept = np.polyfit(x[good], sample[good], 1)
        residual = sample - (intercept + slope * x)
        sigma = residual[good].std()
        bad = np.abs(residual) > KREJ * sigma if sigma > 0 else np.zeros(n, dtype=bool)
        if grow > 1 and bad.any():  # reject the neighbours of an outlier too
            bad = np.convolve(bad.astype(np.int8), np.ones(2 * grow + 1, dtype=np.int8), mode="same") > 0
        new_good = ~bad
        if np.array_equal(new_good, good):
            break
        good = new_good
    if good.sum() < min_pixels:
        return lo, hi
    if contrast > 0:
        slope /= contrast
    z1 = max(lo, median - (centre - 1) * slope)
    z2 = min(hi, median + (n - centre) * slope)
    if not z2 > z1:
        return lo, hi if hi > lo else lo + 1.0
    return float(z1), float(z2)


__all__ = ["zscale"]
