"""The arithmetic of one chunk of a stack: what :func:`isrflow.calibration.kernel.combine_stack`
runs for every block of pixels, in a thread or a worker process.

Semantics (statistics, clipping, variance) are those of :mod:`isrflow.calibration.kernel`'s
docstring; units are the inputs' (variances their square). Each worker owns one
:class:`ChunkWork`: the chunk's planes, reused for every chunk, so the arithmetic allocates
little and stays in the core's cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np

from isrflow.calibration import network

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
    def empty(cls, pixels: int, allocate: Callable[[int, type], np.ndarray] = np.empty) -> CombineOutput:
        """Outputs for ``pixels`` pixels from ``allocate(size, dtype)`` (e.g. a SharedArena's ``empty``)."""
        return cls(allocate(pixels, np.float32), allocate(pixels, np.float32), allocate(pixels, np.int16))


#: A chunk with more than this fraction of partial pixels (fewer usable values than inputs)
#: orders them with the chunk's network (extended to the ranks they need) instead of sorting
#: them apart (``np.sort`` of a few columns is cheaper than extra network rows, not of many).
_DENSE_PARTIAL = 0.125
#: Chunks of at least this many pixels keep their network's block views (see ``ChunkWork.network``).
_KEEP_VIEWS = 1024


class ChunkWork:
    """Reusable buffers of one worker, thread or process (two allocations: a float32 and a boolean one), each
    plane viewed as a contiguous ``(rows, c)`` array for a chunk of ``c <= size`` pixels
    (contiguous so that a chunk stays in the core's cache)."""

    #: float32 planes of ``n`` rows after the network's two banks, then the rows of _FAR and 0
    PLANES = ("x", "d", "a", "f", "v")
    MASKS = ("keep", "good")

    def __init__(self, n: int, size: int):
        self.n, self.size = n, size
        planes = 2 + len(self.PLANES)
        self._f32 = np.empty((planes * n + 2) * size, dtype=np.float32)
        self._bool = np.empty(len(self.MASKS) * n * size, dtype=bool)
        rows = self._f32[planes * n * size :].reshape(2, 1, size)
        rows[0] = _FAR
        rows[1] = 0.0
        self.far, self.zero = rows[0], rows[1]
        self._programs: dict[tuple[frozenset[int], int], list[network.View]] = {}

    def network(
        self, ranks: frozenset[int], c: int
    ) -> tuple[network.Program, np.ndarray, Iterable[network.View]]:
        """The selection network of ``ranks``, its ``(2 n, c)`` buffer and its block views of it:
        kept for one chunk width (a strip's chunks share it but the last), made as they run for
        chunks under ``_KEEP_VIEWS`` pixels (those of small budgets: 16 inputs' views take 25 kB)."""
        buf = self._f32[: 2 * self.n * c].reshape(2 * self.n, c)
        program = network.compile_network(self.n, ranks)
        if c < _KEEP_VIEWS:
            return program, buf, network.block_views(program, buf)
        key = (ranks, c)
        if key not in self._programs:
            self._programs = {k: v for k, v in self._programs.items() if k[1] == c}
            self._programs[key] = list(network.block_views(program, buf))
        return program, buf, self._programs[key]

    def f32(self, name: str, c: int) -> np.ndarray:
        """The float32 plane ``name`` (of PLANES) as an ``(n, c)`` array."""
        start = (2 + self.PLANES.index(name)) * self.n * self.size
        return self._f32[start : start + self.n * c].reshape(self.n, c)

    def mask(self, name: str, c: int) -> np.ndarray:
        """The boolean plane ``name`` (of MASKS) as an ``(n, c)`` array."""
        start = self.MASKS.index(name) * self.n * self.size
        return self._bool[start : start + self.n * c].reshape(self.n, c)


@cache
def _ranks(m: int, quantiles: tuple[float, ...], dense: bool) -> frozenset[int]:
    """Ranks the network delivers: those of ``quantiles`` of ``m`` values, and when ``dense``
    those of every pixel with fewer usable values too."""
    ranks = network.quantile_ranks(m, quantiles)
    return ranks | _partial_ranks(m, quantiles) if dense else ranks


@cache
def _partial_ranks(m: int, quantiles: tuple[float, ...]) -> frozenset[int]:
    """Every rank a pixel with ``1..m - 1`` usable values reads (both interpolation ends)."""
    ranks: set[int] = set()
    for count in range(1, m):
        for q in quantiles:
            lo = math.floor(q * (count - 1))
            ranks.update((lo, min(lo + 1, count - 1)))
    return frozenset(ranks)


class _Ranks:
    """The ranks of a chunk's values that ``quantiles`` need (unusable values, at ``_FAR``, rank
    last), from the selection network; pixels with fewer usable values than inputs (``partial``)
    get theirs from a sort of their columns, or from the network extended to their ranks when
    they are many."""

    def __init__(
        self,
        work: ChunkWork,
        x: np.ndarray,
        n: np.ndarray,
        all_good: bool,
        quantiles: tuple[float, ...],
        nan: bool = False,
    ):
        """``x``: the chunk's values, unusable ones at ``_FAR``, or NaN when ``nan``."""
        m, c = x.shape
        self.m, self.n = m, n
        self.partial = None if all_good else np.flatnonzero(n < m)
        self.dense = self.partial is not None and self.partial.size > _DENSE_PARTIAL * c
        ranks = _ranks(m, quantiles, self.dense)
        program, self.buf, views = work.network(ranks, c)
        first = self.buf[:m]
        if nan and not all_good:
            np.fmin(x, work.far[:, :c], out=first)  # NaN -> _FAR (a row operand: a scalar one is slow)
        else:
            np.copyto(first, x)
        self.apart = None
        if self.partial is not None and self.partial.size and not self.dense:
            self.apart = np.sort(first[:, self.partial], axis=0)
        network.run_views(views)
        self.rows = program.rank_rows
        self.rank_rows = np.asarray(program.rank_rows, dtype=np.intp)

    def quantile(self, q: float) -> np.ndarray:
        """Linear interpolation at index ``q (n - 1)`` of each pixel's usable values (float64)."""
        pos = q * (self.m - 1)
        lo = math.floor(pos)
        frac = pos - lo
        out = self.buf[self.rows[lo]].astype(np.float64)
        if frac:
            out += frac * (self.buf[self.rows[lo + 1]] - out)
        idx = self.partial
        if idx is not None and idx.size:
            count = np.maximum(self.n[idx], 1)
            pos_p = q * (count - 1)
            lo_p = np.floor(pos_p).astype(np.intp)
            hi_p = np.minimum(lo_p + 1, count - 1)
            if self.apart is None:
                low = self.buf[self.rank_rows[lo_p], idx].astype(np.float64)
                high = self.buf[self.rank_rows[hi_p], idx].astype(np.float64)
            else:
                cols = np.arange(idx.size)
                low = self.apart[lo_p, cols].astype(np.float64)
                high = self.apart[hi_p, cols].astype(np.float64)
            out[idx] = low + (pos_p - lo_p) * (high - low)
        return out


def _sums(
    work: ChunkWork, x: np.ndarray, center: np.ndarray, limit: np.ndarray | None, used: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Over the values kept, ``|x - center| <= limit`` (or, when ``limit`` is None, those of
    the float mask ``used``, every value when it is None too): (sum of deviations, sum of
    squared deviations, the float32 keep mask of a clipping pass); ``x`` holds unusable values
    at ``_FAR``. The keep mask is returned as ``work``'s ``"f"`` plane, boolean in ``"keep"``."""
    _, c = x.shape
    d = work.f32("d", c)
    np.subtract(x, center.astype(np.float32)[None, :], out=d)
    if limit is not None:
        a, keep = work.f32("a", c), work.mask("keep", c)
        np.abs(d, out=a)
        np.less_equal(a, limit.astype(np.float32)[None, :], out=keep)  # never true for _FAR
        used = work.f32("f", c)
        np.copyto(used, keep)  # a float mask: multiplying by bools casts, several times slower
    if used is not None:
        np.multiply(d, used, out=d)
    s = np.add.reduce(d, axis=0)
    np.square(d, out=d)
    return s, np.add.reduce(d, axis=0), used


def _count(mask: np.ndarray) -> np.ndarray:
    """Per-pixel number of True values of an (N, c) mask, as int32."""
    if mask.shape[0] < 256:  # summing bytes is several times faster than summing with a cast
        return np.add.reduce(mask.view(np.uint8), axis=0, dtype=np.uint8).astype(np.int32)
    return np.add.reduce(mask, axis=0, dtype=np.int32)


def _moments(
    center: np.ndarray, count: np.ndarray, s: np.ndarray, ss: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sample standard deviation) from the float32 sums of deviations about ``center``
    (float64); the mean is NaN and the deviation 0 where nothing was counted."""
    with np.errstate(invalid="ignore", divide="ignore"):
        k = count.astype(np.float32)
        shift = s / k
        var = (ss - s * shift) / (k - np.float32(1.0))
        var[count < 2] = 0.0
        np.maximum(var, np.float32(0.0), out=var)
        return center + shift, np.sqrt(var)


def _variance_sum(work: ChunkWork, var: np.ndarray, used: np.ndarray | None) -> np.ndarray:
    """Sum of the input variances (negative or NaN ones count 0) over the values of the float
    mask ``used`` (every value when None), float64. Summed in float32: relative error below
    ``N x 6e-8``, well within the variance's own."""
    _, c = var.shape
    v = work.f32("v", c)
    np.fmax(var, work.zero[:, :c], out=v)  # NaN -> 0 (a row operand: a scalar one is not vectorised)
    if used is not None:
        np.multiply(v, used, out=v)
    return np.add.reduce(v, axis=0).astype(np.float64)


def combine_chunk(
    x: np.ndarray,
    var: np.ndarray | None,
    statistic: str,
    clip: float,
    iterations: int,
    work: ChunkWork,
    out: CombineOutput,
    sl: slice,
) -> None:
    """Combine one chunk: ``x`` (``(N, c)`` values, NaN where unusable) and ``var`` (their
    variances, or None) into ``out``'s pixels ``sl`` with ``statistic`` (see the kernel's docstring)."""
    m, c = x.shape
    good = work.mask("good", c)
    np.isfinite(x, out=good)
    n = _count(good)
    all_good = bool(n.min() == m)
    good_f = None  # float mask of the usable values; None when all are
    if not all_good:
        good_f = work.f32("f", c)
        np.copyto(good_f, good)
    if statistic == "median" and var is not None:  # only the network reads the values
        med = _Ranks(work, x, n, all_good, (0.5,), nan=True).quantile(0.5)
        _finish(statistic, var, med, n, None, good_f, work, out, sl)
        return
    if not all_good:
        x = np.fmin(x, work.far[:, :c], out=work.f32("x", c))  # a copy with NaN -> _FAR
    std: np.ndarray | None = None
    used: np.ndarray | None = good_f
    if statistic == "mean":
        center = np.zeros(c)
        s, ss, _ = _sums(work, x, center, None, good_f)
        count = n
        result, std = _moments(center, count, s, ss)
    elif statistic == "median":
        med = _Ranks(work, x, n, all_good, (0.5,)).quantile(0.5)
        result, count = med, n
        if var is None:
            s, ss, _ = _sums(work, x, med, None, good_f)
            _, std = _moments(med, count, s, ss)
    else:
        ranks = _Ranks(work, x, n, all_good, (0.25, 0.5, 0.75))
        med = ranks.quantile(0.5)
        width = IQR_TO_SIGMA * (ranks.quantile(0.75) - ranks.quantile(0.25))
        center, mean, std = med, med, width
        count = np.zeros(c, dtype=np.int32)
        for _ in range(max(1, iterations)):
            s, ss, used = _sums(work, x, center, clip * width, None)
            k = _count(work.mask("keep", c))
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
            center, width = mean, std
        result = mean
        if not all_good:
            count = np.where(n > 0, count, 0)
    _finish(statistic, var, result, count, std, used, work, out, sl)


def _finish(
    statistic: str,
    var: np.ndarray | None,
    result: np.ndarray,
    count: np.ndarray,
    std: np.ndarray | None,
    used: np.ndarray | None,
    work: ChunkWork,
    out: CombineOutput,
    sl: slice,
) -> None:
    """The variance of the result (see the module docstring), NaN where nothing was used, into ``out``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        k64 = count.astype(np.float64)
        if var is not None:
            variance = _variance_sum(work, var, used) / (k64 * k64)
        else:
            assert std is not None  # every statistic computes it without variance planes
            variance = std * std / k64
        if statistic == "median":  # for 1 or 2 values the median is their mean
            variance *= np.where(count > 2, MEDIAN_VARIANCE_FACTOR, 1.0)
    none = count == 0
    if none.any():
        result = np.where(none, np.nan, result)
        variance = np.where(none, np.nan, variance)
    out.image[sl] = result
    out.variance[sl] = variance
    out.n_used[sl] = count


def run_chunks(
    values: np.ndarray,
    variances: np.ndarray | None,
    statistic: str,
    clip: float,
    iterations: int,
    work: ChunkWork,
    out: CombineOutput,
    size: int,
    starts: Iterable[int],
) -> None:
    """Combine the chunks of ``size`` pixels that begin at ``starts`` into ``out``."""
    p = values.shape[1]
    for start in starts:
        sl = slice(start, min(p, start + size))
        combine_chunk(
            values[:, sl],
            None if variances is None else variances[:, sl],
            statistic,
            clip,
            iterations,
            work,
            out,
            sl,
        )
