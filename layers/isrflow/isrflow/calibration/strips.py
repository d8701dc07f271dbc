"""The strips of a streaming combine: their buffers, reading the inputs' rows into them, and the
task a forked worker process runs on its band of a strip (read, then combine, its rows).

Units: values are divided by the input's scale (e- for biases, e-/s for darks, unitless for
flats) and variances by its square; every unusable value (input mask planes, non-finite
values) is NaN, as :func:`isrflow.calibration.kernel.combine_stack` takes them.

Worker processes read for themselves where every input is readable from a fork (local files
read with ``pread``, bytes in memory; ``MefReader.reads_locally``): the reading then scales with
the workers instead of being bound by the parent's GIL. S3 inputs are read by the parent's
threads (a worker would need a client of its own, and would wait on one GET after another).
What the workers read from is registered here before the fork (:func:`register`), so the
children find it by number.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from isrflow.calibration.kernel import run_in_worker
from isrflow.io import formats
from isrflow.io.mef import MefReader


class Strip:
    """The buffers of one strip (allocated once, for the tallest strip), and each reading
    thread's mask buffers (allocated once per thread, on its first read): every read lands in
    memory already faulted in, whatever the number of strips."""

    def __init__(
        self,
        n: int,
        rows: int,
        cols: int,
        with_variance: bool,
        allocate: Callable[..., np.ndarray] = np.empty,
    ):
        self.rows, self.cols = rows, cols
        self.values = allocate((n, rows, cols), np.float32)
        self.variances = allocate((n, rows, cols), np.float32) if with_variance else None
        self._local = threading.local()

    def mask_buffers(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """This thread's (stored mask int32, masked bool) buffers for ``rows`` rows."""
        local = self._local
        if getattr(local, "raw", None) is None:
            local.raw = np.empty((self.rows, self.cols), dtype=np.int32)
            local.masked = np.empty((self.rows, self.cols), dtype=bool)
        return local.raw[:rows], local.masked[:rows]


def load_rows(
    reader: MefReader,
    index: int,
    scale: float,
    y0: int,
    y1: int,
    strip: Strip,
    bits: int,
    row0: int = 0,
) -> None:
    """Read rows ``[y0, y1)`` of one input (``index``, divided by ``scale``) into the strip's rows
    from ``row0``: scaled values (NaN where unusable) and variances."""
    rows = y1 - y0
    values = strip.values[index, row0 : row0 + rows]
    reader.read_rows(formats.EXT_IMAGE, y0, y1, values)
    inverse = np.float32(1.0 / scale)
    if inverse != 1.0:
        values *= inverse
    _, infinite = strip.mask_buffers(rows)  # the kernel takes NaN for every unusable value
    np.isinf(values, out=infinite)
    np.copyto(values, np.float32(np.nan), where=infinite)
    if strip.variances is not None:
        var = strip.variances[index, row0 : row0 + rows]
        reader.read_rows(formats.EXT_VARIANCE, y0, y1, var)
        if inverse != 1.0:
            var *= inverse * inverse
    if bits and reader.has(formats.EXT_MASK):
        hdu = reader.image(formats.EXT_MASK)
        if hdu.dtype.itemsize == 4 and hdu.dtype.kind == "i":  # the isrflow MASK: into this thread's buffers
            raw, masked = strip.mask_buffers(rows)
            reader.raw_rows_into(formats.EXT_MASK, y0, y1, raw)
            np.bitwise_and(raw, bits, out=raw)
            np.not_equal(raw, 0, out=masked)
        else:
            masked = (reader.raw_rows(formats.EXT_MASK, y0, y1) & bits) != 0
        np.copyto(values, np.float32(np.nan), where=masked)


@dataclass
class Sources:
    """What worker processes read from: the inputs' readers and scales, the mask bits not used,
    and the strips (buffers and outputs, in the shared arena)."""

    readers: list[MefReader]
    scales: list[float]
    bits: int
    buffers: list


_SOURCES: dict[int, Sources] = {}
_NUMBERS = itertools.count(1)


def register(sources: Sources) -> int:
    """Make ``sources`` findable by the workers forked after this call; its number."""
    number = next(_NUMBERS)
    _SOURCES[number] = sources
    return number


def unregister(number: int) -> None:
    """Forget the sources ``number`` (the workers forked meanwhile keep their copy)."""
    _SOURCES.pop(number, None)


def bands(rows: int, workers: int) -> list[tuple[int, int]]:
    """``rows`` split into at most ``workers`` bands of whole rows, as equal as can be."""
    count = max(1, min(workers, rows))
    edges = [rows * i // count for i in range(count + 1)]
    return list(itertools.pairwise(edges))


def load_and_combine_band(
    number: int,
    buffer: int,
    y0: int,
    r0: int,
    r1: int,
    statistic: str,
    clip: float,
    iterations: int,
    chunk: int,
) -> None:
    """A worker process's band of one strip: read rows ``y0 + [r0, r1)`` of every input into the
    strip buffer ``buffer`` and combine them into its outputs (the same pixels)."""
    sources = _SOURCES[number]
    strip, out = sources.buffers[buffer]
    m, cols = len(sources.readers), strip.cols
    for i, (reader, scale) in enumerate(zip(sources.readers, sources.scales, strict=True)):
        load_rows(reader, i, scale, y0 + r0, y0 + r1, strip, sources.bits, r0)
    values = strip.values[:m, r0:r1].reshape(m, (r1 - r0) * cols)
    variances = None if strip.variances is None else strip.variances[:m, r0:r1].reshape(m, (r1 - r0) * cols)
    band = slice(r0 * cols, r1 * cols)
    outputs = (out.image[band], out.variance[band], out.n_used[band])
    run_in_worker(
        values, variances, outputs, statistic, clip, iterations, chunk, range(0, values.shape[1], chunk)
    )
