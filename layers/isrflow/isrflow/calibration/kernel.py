"""The per-pixel combination of a stack of frames: median, mean and clipped mean.

Everything here works on a *stack*: an ``(N, P)`` float32 array holding the same ``P``
pixels of ``N`` input frames, already scaled, with every value that must not be used (input
mask planes, non-finite values) set to NaN. Units are those of the inputs (e- for biases,
e-/s for darks, dimensionless for flats); variances are in those units squared.

Statistics (per pixel, over the ``n`` usable values):

- ``median``: the middle value; for even ``n`` the mean of the two middle values (the same as
  afw's linear interpolation at index ``0.5 (n - 1)``);
- ``mean``: the plain mean;
- ``meanclip`` (cp_pipe's MEANCLIP with afw semantics): pass 1 keeps the values within
  ``clip x 0.7413 x IQR`` of the median (quartiles interpolated at index ``q (n - 1)``);
  passes 2..``iterations`` keep the values within ``clip x s`` of the previous pass's mean,
  ``s`` its sample standard deviation (``n - 1`` normalisation); every pass re-selects from
  the whole sample (not cumulatively); the result is the last pass's mean. "Within" is
  inclusive (``|x - c| <= limit``). A pass that keeps nothing leaves the previous estimate.

Outputs (:class:`CombineOutput`): the combined value, its variance and the number of inputs
used per pixel (the values kept by the last clipping pass; every usable value for median and
mean). A pixel with no usable value is NaN with ``n_used = 0``; the caller flags it BAD.

Variance of the result: with input variance planes, the sum of the used inputs' variances
divided by ``n_used^2`` (the variance of a mean of independent values); without them, the
sample variance of the used values divided by ``n_used``. For the median of more than two
values either is multiplied by ``pi / 2`` (the large-n variance of the median of Gaussian
values relative to their mean).

Speed: the stack is processed in chunks of pixels sized for the CPU cache; order statistics
come from a Batcher odd-even merge sorting network applied to whole pixel planes
(elementwise ``minimum``/``maximum`` vectorised over a chunk), and the clipping passes are
array expressions over the whole chunk, so no per-pixel Python or sort call runs. Chunks are
spread over ``threads`` threads (numpy releases the GIL).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np

from isrflow.calibration.routing import chunk_pixels

Statistic = Literal["median", "mean", "meanclip"]
STATISTICS: tuple[str, ...] = ("median", "mean", "meanclip")

#: IQR -> sigma for Gaussian values: 1 / (2 x 0.67449) (afw's "0.741").
IQR_TO_SIGMA = 0.7413011092528009
#: Variance of the median of Gaussian values relative to the variance of their mean (large n).
MEDIAN_VARIANCE_FACTOR = math.pi / 2
#: Stands in for unusable (NaN) values while sorting and clipping: sorts last, is never within
#: a clipping limit, and stays finite so that multiplying it by 0 gives 0.
_FAR = np.float32(1e37)


@dataclass
class CombineOutput:
    """Per-pixel results: image and variance (float32; NaN where nothing was usable), inputs used (int16)."""

    image: np.ndarray
    variance: np.ndarray
    n_used: np.ndarray

    @classmethod
    def empty(cls, pixels: int) -> CombineOutput:
        return cls(np.empty(pixels, np.float32), np.empty(pixels, np.float32), np.empty(pixels, np.int16))


@cache
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort comparators ``(i, j)``, ``i < j``, for ``n`` inputs.

    Replacing ``a[i], a[j]`` by their minimum and maximum for every pair, in order, sorts any
    ``n`` values.
    """
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


class _Work:
    """Reusable buffers of one thread."""

    def __init__(self, n: int, size: int):
        self.n, self.size = n, size
        self.sorted = np.empty((n + 1, size), dtype=np.float32)  # sorted planes + one spare row
        self.x = np.empty((n, size), dtype=np.float32)  # the values, unusable ones set to _FAR
        self.d = np.empty((n, size), dtype=np.float32)
        self.a = np.empty((n, size), dtype=np.float32)
        self.v = np.empty((n, size), dtype=np.float32)
        self.keep = np.empty((n, size), dtype=bool)
        self.good = np.empty((n, size), dtype=bool)


class _Sorted:
    """The chunk sorted along the stack axis (NaN last): rank ``k`` is row ``order[k]``."""

    def __init__(self, work: _Work, x: np.ndarray, n: np.ndarray, all_good: bool):
        m, c = x.shape
        self.buf = work.sorted[:, :c]
        self.buf[:m] = x  # x has unusable values at _FAR: they sort last
        order = list(range(m))
        spare = m
        buf = self.buf
        for i, j in sorting_network(m):
            a, b = order[i], order[j]
            np.minimum(buf[a], buf[b], out=buf[spare])
            np.maximum(buf[a], buf[b], out=buf[b])
            order[i], spare = spare, a
        self.order = np.asarray(order, dtype=np.intp)
        self.m, self.n, self.all_good = m, n, all_good
        self.partial = None if all_good else np.flatnonzero(n < m)

    def quantile(self, q: float) -> np.ndarray:
        """Linear interpolation at index ``q (n - 1)`` of each pixel's usable values (float64)."""
        pos = q * (self.m - 1)
        lo = int(math.floor(pos))
        frac = pos - lo
        out = self.buf[self.order[lo]].astype(np.float64)
        if frac:
            out += frac * (self.buf[self.order[lo + 1]] - out)
        idx = self.partial
        if idx is not None and idx.size:
            count = np.maximum(self.n[idx], 1)
            pos_p = q * (count - 1)
            lo_p = np.floor(pos_p).astype(np.intp)
            hi_p = np.minimum(lo_p + 1, count - 1)
            low = self.buf[self.order[lo_p], idx].astype(np.float64)
            high = self.buf[self.order[hi_p], idx].astype(np.float64)
            out[idx] = low + (pos_p - lo_p) * (high - low)
        return out


def _sums(work: _Work, x: np.ndarray, center: np.ndarray, limit: np.ndarray | None, good: np.ndarray):
    """Over the values kept (``|x - center| <= limit``, or every usable value when ``limit`` is
    None): (count, sum of deviations, sum of squared deviations) and the keep mask. ``x`` holds
    unusable values at ``_FAR``."""
    m, c = x.shape
    d, keep = work.d[:, :c], work.keep[:, :c]
    np.subtract(x, center.astype(np.float32)[None, :], out=d)
    if limit is None:
        keep = good
    else:
        a = work.a[:, :c]
        np.abs(d, out=a)
        np.less_equal(a, limit.astype(np.float32)[None, :], out=keep)  # never true for _FAR
    np.multiply(d, keep, out=d)
    s = np.add.reduce(d, axis=0)
    np.square(d, out=d)
    ss = np.add.reduce(d, axis=0)
    return _count(keep), s, ss, keep


def _count(mask: np.ndarray) -> np.ndarray:
    """Per-pixel number of True values of an (N, c) mask, as int32."""
    if mask.shape[0] < 256:  # summing bytes is several times faster than summing with a cast
        return np.add.reduce(mask.view(np.uint8), axis=0, dtype=np.uint8).astype(np.int32)
    return np.add.reduce(mask, axis=0, dtype=np.int32)


def _moments(center: np.ndarray, count: np.ndarray, s: np.ndarray, ss: np.ndarray):
    """(mean, sample standard deviation) from the float32 sums of deviations about ``center``
    (float64); the mean is NaN and the deviation 0 where nothing was counted."""
    with np.errstate(invalid="ignore", divide="ignore"):
        k = count.astype(np.float32)
        shift = s / k
        var = (ss - s * shift) / (k - np.float32(1.0))
        var[count < 2] = 0.0
        np.maximum(var, np.float32(0.0), out=var)
        return center + shift, np.sqrt(var)


def _variance_sum(work: _Work, var: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Sum of the input variances over the used values (float64)."""
    m, c = var.shape
    v = work.v[:, :c]
    np.fmax(var, np.float32(0.0), out=v)  # NaN -> 0
    np.multiply(v, used, out=v)
    return np.add.reduce(v, axis=0, dtype=np.float64)


def _combine_chunk(
    x: np.ndarray,
    var: np.ndarray | None,
    statistic: str,
    clip: float,
    iterations: int,
    work: _Work,
    out: CombineOutput,
    sl: slice,
) -> None:
    m, c = x.shape
    good = work.good[:, :c]
    np.isfinite(x, out=good)
    n = _count(good)
    all_good = bool(n.min() == m)
    x = np.fmin(x, _FAR, out=work.x[:, :c])  # a copy with NaN -> _FAR
    if statistic == "mean":
        center = np.zeros(c)
        count, s, ss, used = _sums(work, x, center, None, good)
        result, std = _moments(center, count, s, ss)
    else:
        ordered = _Sorted(work, x, n, all_good)
        med = ordered.quantile(0.5)
        if statistic == "median":
            result, count, used = med, n, good
            std = None
            if var is None:
                k, s, ss, _ = _sums(work, x, med, None, good)
                _, std = _moments(med, k, s, ss)
        else:
            width = IQR_TO_SIGMA * (ordered.quantile(0.75) - ordered.quantile(0.25))
            center = med
            mean, std = med, width
            count = np.zeros(c, dtype=np.int32)
            used = None
            for _ in range(max(1, iterations)):
                k, s, ss, keep = _sums(work, x, center, clip * width, good)
                new_mean, new_std = _moments(center, k, s, ss)
                kept = k > 0
                if kept.all():
                    mean, std, count = new_mean, new_std, k
                else:
                    mean, std, count = (
                        np.where(kept, new_mean, mean),
                        np.where(kept, new_std, std),
                        np.where(kept, k, count),
                    )
                used = keep
                center, width = mean, std
            result = mean
            if not all_good:
                count = np.where(n > 0, count, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = count.astype(np.float64)
        if var is not None:
            variance = _variance_sum(work, var, used) / (k * k)
        else:
            variance = std * std / k
        if statistic == "median":  # for 1 or 2 values the median is their mean
            variance *= np.where(count > 2, MEDIAN_VARIANCE_FACTOR, 1.0)
    none = count == 0
    if none.any():
        result = np.where(none, np.nan, result)
        variance = np.where(none, np.nan, variance)
    out.image[sl] = result
    out.variance[sl] = variance
    out.n_used[sl] = count


def default_threads() -> int:
    """Threads for the combination: every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Workspace:
    """The buffers and threads of repeated :func:`combine_stack` calls on stacks of one depth
    (a streaming combine makes one for all its strips instead of one per strip)."""

    def __init__(self, n_inputs: int, chunk: int, threads: int = 1):
        self.n_inputs, self.chunk, self.threads = n_inputs, chunk, max(1, threads)
        self.works = [_Work(n_inputs, chunk) for _ in range(self.threads)]
        self.pool = (
            ThreadPoolExecutor(self.threads, thread_name_prefix="combine") if self.threads > 1 else None
        )

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        self.works = []

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def combine_stack(
    values: np.ndarray,
    variances: np.ndarray | None = None,
    statistic: Statistic = "meanclip",
    clip: float = 3.0,
    iterations: int = 3,
    threads: int = 1,
    out: CombineOutput | None = None,
    chunk: int | None = None,
    workspace: Workspace | None = None,
) -> CombineOutput:
    """Combine a stack of ``N`` frames pixel by pixel (the core of every master calibration).

    Parameters
    ----------
    values : numpy.ndarray
        ``(N, P)`` float32: ``N`` inputs of ``P`` pixels each (any unit, e.g. e- or e-/s); NaN marks
        an unusable value (masked, saturated, off the detector).
    variances : numpy.ndarray, optional
        ``(N, P)`` float32 variance planes of the inputs (unit of ``values`` squared); None: the
        output variance comes from the scatter of the values.
    statistic : {"median", "mean", "meanclip"}
        Per-pixel estimator (see the module docstring for the exact semantics).
    clip : float
        Clipping threshold of ``meanclip``, in standard deviations (> 0).
    iterations : int
        Clipping passes of ``meanclip`` (>= 1).
    threads : int
        Worker threads over chunks of pixels.
    out : CombineOutput, optional
        Preallocated outputs of length ``P`` to fill.
    chunk : int, optional
        Most pixels per chunk (bounds the working memory, see :func:`routing.scratch_bytes`).
    workspace : Workspace, optional
        Buffers and threads for stacks of this depth; it then decides chunk size and threads.

    Returns
    -------
    CombineOutput
        Per pixel: the combined value (float32, NaN where no input was usable), its variance
        (float32) and the number of inputs used (int16).

    Raises
    ------
    ValueError
        An unknown statistic, arrays of the wrong dtype or shape, ``clip <= 0``,
        ``iterations < 1`` or an empty stack.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; use one of {', '.join(STATISTICS)}")
    if values.ndim != 2 or values.dtype != np.float32:
        raise ValueError(f"values must be an (N, P) float32 array, got {values.dtype} {values.shape}")
    if variances is not None and (variances.shape != values.shape or variances.dtype != np.float32):
        raise ValueError(f"variances must be float32 {values.shape}, got {variances.dtype} {variances.shape}")
    if not clip > 0 or iterations < 1:
        raise ValueError(f"clip must be > 0 and iterations >= 1 (got {clip}, {iterations})")
    m, p = values.shape
    if m < 1:
        raise ValueError("a stack needs at least one input")
    out = out or CombineOutput.empty(p)
    own = workspace is None
    if own:
        size = max(1, min(chunk_pixels(m, threads), chunk or p, p))
        workspace = Workspace(m, size, min(threads, -(-p // size)))
    elif workspace.n_inputs != m:
        raise ValueError(f"workspace is for {workspace.n_inputs} inputs, the stack has {m}")
    size = workspace.chunk
    starts = list(range(0, p, size))

    def run(job: tuple[_Work, list[int]]) -> None:
        work, mine = job
        for start in mine:
            sl = slice(start, min(p, start + size))
            _combine_chunk(
                values[:, sl],
                None if variances is None else variances[:, sl],
                statistic,
                clip,
                iterations,
                work,
                out,
                sl,
            )

    try:
        n = min(workspace.threads, len(starts))
        jobs = [(workspace.works[i], starts[i::n]) for i in range(n)]
        if workspace.pool is None or n == 1:
            for job in jobs:
                run(job)
        else:
            list(workspace.pool.map(run, jobs))
    finally:
        if own:
            workspace.close()
    return out
