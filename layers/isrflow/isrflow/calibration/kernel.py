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

Speed: the stack is processed in chunks of pixels (:mod:`isrflow.calibration.chunk` has the
arithmetic) sized for a core's L2 cache, 4x larger with several threads, whose GIL hand-overs
cost more than the caches (:func:`routing.chunk_pixels`); order statistics come from a
selection network (:mod:`isrflow.calibration.network`: Batcher's odd-even merge sort pruned to
the ranks the statistic reads, about 3/4 of its operations for the median) applied to whole
pixel planes, one numpy call per block of rows, and the clipping passes are array expressions
over the whole chunk, so no per-pixel Python or sort call runs. Pixels with fewer usable values
than inputs need other ranks: a few are sorted apart (``np.sort`` of their columns), many make
the chunk's network deliver their ranks too. Elementwise work avoids numpy's slow paths (scalar
operands of ``fmin``/``fmax``, multiplying by booleans, float64 reductions of float32), which
cost 3-6x. Chunks are spread over ``threads`` threads (numpy releases the GIL; the Python
between its calls, about 80 a chunk, does not), or over as many forked worker processes
(:class:`Workspace` with a :class:`~isrflow.calibration.forked.SharedArena`), which share no GIL.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np

from isrflow.calibration.chunk import (
    IQR_TO_SIGMA,
    MEDIAN_VARIANCE_FACTOR,
    ChunkWork,
    CombineOutput,
    run_chunks,
)
from isrflow.calibration.forked import ForkedPool, SharedArena
from isrflow.calibration.routing import chunk_pixels

Statistic = Literal["median", "mean", "meanclip"]
STATISTICS: tuple[str, ...] = ("median", "mean", "meanclip")

__all__ = [
    "IQR_TO_SIGMA",
    "MEDIAN_VARIANCE_FACTOR",
    "STATISTICS",
    "CombineOutput",
    "Statistic",
    "Workspace",
    "combine_stack",
    "default_threads",
]


def default_threads() -> int:
    """Threads for the combination: every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Workspace:
    """The buffers and workers of repeated :func:`combine_stack` calls on stacks of one depth
    (a streaming combine makes one for all its strips instead of one per strip).

    Workers are ``threads`` threads, or, given a :class:`~isrflow.calibration.forked.SharedArena`
    and ``threads > 1``, that many forked worker processes (no GIL between them; the stacks and
    outputs passed to :func:`combine_stack` must then be arrays of the arena). Processes are
    forked here: make the workspace before starting threads of one's own
    (:mod:`isrflow.calibration.forked` says why).
    """

    def __init__(self, n_inputs: int, chunk: int, threads: int = 1, arena: SharedArena | None = None):
        self.n_inputs, self.chunk, self.threads = n_inputs, chunk, max(1, threads)
        self.forked = ForkedPool(self.threads, arena) if arena is not None and self.threads > 1 else None
        self.works = [] if self.forked else [ChunkWork(n_inputs, chunk) for _ in range(self.threads)]
        self.pool = (
            ThreadPoolExecutor(self.threads, thread_name_prefix="combine")
            if self.threads > 1 and self.forked is None
            else None
        )

    @property
    def uses_processes(self) -> bool:
        """Whether the workers are forked processes."""
        return self.forked is not None

    def close(self) -> None:
        """Stop the workers (threads or processes) and drop the buffers."""
        if self.pool is not None:
            self.pool.shutdown()
        if self.forked is not None:
            self.forked.close()
        self.works = []

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: A worker process's buffers, kept between tasks for one (depth, chunk) at a time.
_PROCESS_WORK: dict[tuple[int, int], ChunkWork] = {}


def run_in_worker(
    values: np.ndarray,
    variances: np.ndarray | None,
    outputs: tuple[np.ndarray, np.ndarray, np.ndarray],
    statistic: str,
    clip: float,
    iterations: int,
    size: int,
    starts: range,
) -> None:
    """A worker process's share of a :func:`combine_stack`: the chunks of ``size`` pixels that
    begin at ``starts`` (arrays are views of the arena), with buffers kept between calls."""
    key = (values.shape[0], size)
    if key not in _PROCESS_WORK:
        _PROCESS_WORK.clear()
        _PROCESS_WORK[key] = ChunkWork(*key)
    run_chunks(
        values,
        variances,
        statistic,
        clip,
        iterations,
        _PROCESS_WORK[key],
        CombineOutput(*outputs),
        size,
        starts,
    )


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
        Buffers and workers for stacks of this depth; it then decides chunk size and workers. With
        worker processes, ``values``, ``variances`` and ``out`` must be arrays of its arena.

    Returns
    -------
    CombineOutput
        Per pixel: the combined value (float32, NaN where no input was usable), its variance
        (float32) and the number of inputs used (int16).

    Raises
    ------
    ValueError
        An unknown statistic, arrays of the wrong dtype or shape, ``clip <= 0``,
        ``iterations < 1``, an empty stack, or (worker processes) arrays outside the arena.
    WorkerProcessError
        A worker process died (killed for memory, say); the workspace's workers are then stopped.
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
    if workspace is None:
        size = max(1, min(chunk_pixels(m, threads), chunk or p, p))
        ws = Workspace(m, size, min(threads, -(-p // size)))
    elif workspace.n_inputs != m:
        raise ValueError(f"workspace is for {workspace.n_inputs} inputs, the stack has {m}")
    else:
        ws = workspace
    size = ws.chunk
    starts = range(0, p, size)

    try:
        n = min(ws.threads, len(starts))
        step = n * size
        if ws.forked is not None:
            outputs = (out.image, out.variance, out.n_used)
            tasks = [
                (values, variances, outputs, statistic, clip, iterations, size, range(i * size, p, step))
                for i in range(n)
            ]
            ws.forked.run(run_in_worker, tasks)
        else:
            jobs = [(ws.works[i], range(i * size, p, step)) for i in range(n)]

            def run(job: tuple[ChunkWork, range]) -> None:
                run_chunks(values, variances, statistic, clip, iterations, job[0], out, size, job[1])

            if ws.pool is None or n == 1:
                for job in jobs:
                    run(job)
            else:
                list(ws.pool.map(run, jobs))
    finally:
        if own:
            ws.close()
    return out
