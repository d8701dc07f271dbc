"""A deliberately simple float64 reference of the combine: one pixel at a time, a sort-based
median with linear interpolation, and an explicit clipping loop (afw MEANCLIP semantics)."""

from __future__ import annotations

import math

import numpy as np

IQR_TO_SIGMA = 0.7413011092528009


def quantile(sorted_values: list[float], q: float) -> float:
    n = len(sorted_values)
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo])


def combine_pixel(values, variances, statistic: str, clip: float = 3.0, iterations: int = 3):
    """(value, variance, n_used) of one pixel's stack; NaN values are unusable."""
    pairs = [(float(v), float(w)) for v, w in zip(values, variances, strict=False) if np.isfinite(v)]
    if not pairs:
        return math.nan, math.nan, 0
    sample = sorted(v for v, _ in pairs)
    if statistic == "median":
        used = pairs
        value = quantile(sample, 0.5)
    elif statistic == "mean":
        used = pairs
        value = sum(v for v, _ in pairs) / len(pairs)
    else:
        center = quantile(sample, 0.5)
        width = IQR_TO_SIGMA * (quantile(sample, 0.75) - quantile(sample, 0.25))
        value, used = center, pairs
        for _ in range(iterations):
            kept = [(v, w) for v, w in pairs if abs(v - center) <= clip * width]
            if not kept:
                break
            mean = sum(v for v, _ in kept) / len(kept)
            std = math.sqrt(sum((v - mean) ** 2 for v, _ in kept) / (len(kept) - 1)) if len(kept) > 1 else 0.0
            value, used = mean, kept
            center, width = mean, std
    n = len(used)
    variance = sum(w for _, w in used) / n**2
    if statistic == "median" and n > 2:
        variance *= math.pi / 2
    return value, variance, n


def combine(
    values: np.ndarray, variances: np.ndarray, statistic: str, clip: float = 3.0, iterations: int = 3
):
    """Every pixel of an (N, P) stack: arrays (value, variance, n_used)."""
    out = [
        combine_pixel(values[:, k], variances[:, k], statistic, clip, iterations)
        for k in range(values.shape[1])
    ]
    return (np.array([o[0] for o in out]), np.array([o[1] for o in out]), np.array([o[2] for o in out]))
