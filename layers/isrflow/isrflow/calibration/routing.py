"""Where a combine runs, and how much memory one strip of it takes.

**Memory model** (bytes; what :mod:`isrflow.calibration.combine` allocates, checked by the
tests: with tracemalloc in threads; with worker processes, the workers' private pages read from
``/proc``). For ``N`` inputs of ``W`` columns, one strip of ``r`` rows holds

- the values and variances of every input: ``N x r x W x (4 + 4)`` (float32; 4 without
  variance planes);
- per reading thread (or worker process, which reads its band of the strip), one input's raw
  bytes, mask bits and their conversion: ``r x W x 9``;
- the strip's outputs (image, variance, inputs used: 10 bytes a pixel) and, while they are
  written, the mask and one big-endian copy, the no-data fill or the shared-noise terms: ``r x W x 28``;

plus, per combining worker, the cache-sized chunk buffers of the kernel
(:func:`scratch_bytes`: a thread's, or with worker processes one thread's chunk and
``PROCESS_BYTES`` of the process's private pages; their strips and outputs live in a shared
mapping, counted once above) and a fixed allowance for headers and Python objects. Measured
on 16 HSC inputs, 2 workers, 1 GiB budget: 319 MB of memory in all (the sum of the processes'
proportional sets, the workers' private pages 30 MB) against 355 MB with threads. The strip
height is the largest ``r`` that fits the budget; the whole detector is never held, so the
memory a combine needs does not grow with the detector.

**Routing.** A combine runs on the ``combine`` Lambda when both hold:

1. its estimated wall time, ``input bytes / COMBINE_THROUGHPUT_BPS`` (read + combine
   throughput of one worker, measured by ``bench/combine.py``), is at most
   ``TIME_SAFETY x`` the Lambda timeout ("well inside": a slow S3 day or a cold start must
   not push it over);
2. a strip of at least ``MIN_STRIP_ROWS`` rows fits the strip budget the function's memory
   leaves (:func:`strip_budget_bytes`);

otherwise it runs as a Fargate task (``ecs:runTask.sync``: no 15-minute limit, up to 16 vCPU
and 120 GB). The decision, its numbers and its reason are recorded with every master.

Pure Python: the plan Lambda (no numpy) routes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

Route = Literal["lambda", "fargate"]

#: Read + combine throughput of one combine worker, input bytes per second. Measured with
#: ``bench/combine.py`` (16 HSC-size cpBiasProc inputs, meanclip, file datastore, 2 cores:
#: see the README); S3 reads from a Lambda are of the same order. Override with the
#: environment variable ``ISRFLOW_COMBINE_THROUGHPUT_MBPS``.
COMBINE_THROUGHPUT_BPS = 150e6
#: The estimate must stay below this fraction of the Lambda timeout.
TIME_SAFETY = 0.5
#: Memory the Python runtime, numpy, astropy and boto3 take before any pixel (MiB).
RUNTIME_OVERHEAD_MB = 400
#: Fraction of the remaining memory given to strips (the rest: allocator slack, page cache).
BUDGET_FRACTION = 0.75
#: Strips lower than this read too little per request to be efficient.
MIN_STRIP_ROWS = 16
#: The strip budget a worker's memory gives is capped here: a larger budget brings nothing.
MAX_STRIP_BUDGET_BYTES = 4 << 30
#: Strips are sized for about this much working memory even when the budget allows more: once
#: reads are tens of MB, taller strips only cost page faults and cache misses (measured with
#: bench/combine.py: 16 HSC inputs take 1.3 s single-threaded at 128 MiB, 3.5 s at 1 GiB).
STRIP_TARGET_BYTES = 128 << 20
#: Python objects of one combine (thread pool, buffers' headers, the selection network's views
#: made on the fly for small chunks) and, per input, its reader (parsed headers, index). Measured:
#: a 6-input combine in strips of one row peaks at ~502 kB under tracemalloc
#: (tests/calibration/test_streaming.py), which this and the per-row terms cover.
FIXED_BYTES = 352 << 10
PER_INPUT_BYTES = 16 << 10

ENV_THROUGHPUT = "ISRFLOW_COMBINE_THROUGHPUT_MBPS"
ENV_LAMBDA_MEMORY = "ISRFLOW_COMBINE_LAMBDA_MEMORY_MB"
ENV_LAMBDA_TIMEOUT = "ISRFLOW_COMBINE_LAMBDA_TIMEOUT_S"
ENV_TASK_MEMORY = "ISRFLOW_COMBINE_MEMORY_MB"

#: The kernel's chunk (pixels; see :mod:`isrflow.calibration.kernel`): planes of 1 MiB for 16
#: inputs (deeper stacks get fewer pixels, planes of the same size). Measured on whole stacks
#: (bench/combine.py's, one thread, CPU time per pixel): 8k pixels 47 ns median / 123 ns
#: meanclip, 16k 42 / 118, 32k 50 / 133 (the inputs stream from memory at any size; larger
#: chunks spill the caches, smaller ones pay numpy's per-call dispatch, which holds the GIL,
#: about 100 times a chunk). Several threads take 4x larger chunks: every numpy call hands the
#: GIL over, and at 16k pixels the hand-overs, not the caches, bound them. Measured on 2 cores,
#: 16 inputs in memory, speedup over one thread at 16k (bench/scaling.py and a sweep of chunk
#: sizes): 2 threads 1.13x at 16k, 1.38x at 32k, 1.51x at 64k, 1.52x at 128k (median; meanclip
#: 1.19 / 1.38 / 1.50 / 1.40); 4 and 8 threads on the 2 cores (more hand-overs, a proxy for more
#: cores) lose least at 64k too (4: 0.88x at 16k, 1.33x at 64k). The 16-core figure is unmeasured.
CHUNK_PIXELS = 16384
CHUNK_PIXELS_THREADED = 65536
#: Private memory of one forked combine worker process besides its chunk buffers: the pages of
#: the parent's heap it writes (reference counts of the objects it touches) and its own Python
#: objects; the strips and outputs it shares with the parent are counted once, in the strips.
PROCESS_BYTES = 8 << 20
#: Alignment of the arrays of a worker processes' shared arena (isrflow.calibration.forked.ALIGN;
#: routing is pure Python and imports no numpy module).
ARENA_ALIGN = 64


def chunk_pixels(n_inputs: int, threads: int = 1) -> int:
    """Pixels per kernel chunk for a stack of ``n_inputs``: the constants above up to 16
    inputs, proportionally fewer for deeper stacks (planes of the same bytes), at least 1024."""
    size = CHUNK_PIXELS if threads <= 1 else CHUNK_PIXELS_THREADED
    return int(max(1024, min(size, size * 16 // max(1, n_inputs))))


def scratch_bytes(n_inputs: int, pixels: int | None = None, threads: int = 1) -> int:
    """Kernel working memory of one combining thread for chunks of at most ``pixels`` pixels:
    the selection network's two banks, five float32 and two boolean planes, per-pixel rows,
    and the network's views (:func:`network_bytes`)."""
    full = chunk_pixels(n_inputs, threads)
    c = full if pixels is None else max(1, min(full, pixels))
    views = network_bytes(n_inputs) if c >= 1024 else 0  # the kernel keeps them for chunks of 1024+ pixels
    return c * (2 * n_inputs * 4 + n_inputs * (5 * 4 + 2 * 1) + 256) + views


def network_bytes(n_inputs: int) -> int:
    """Bound on the Python objects of one thread's compiled selection network (its block views:
    about ``n log2(n)^2 / 4`` of them, 0.5 KB each; measured up to 200 inputs)."""
    depth = max(1, math.ceil(math.log2(max(2, n_inputs))))
    return 160 * n_inputs * depth * depth + 4096


def strip_row_bytes(n_inputs: int, columns: int, with_variance: bool, read_threads: int) -> int:
    """Bytes one row of a strip takes (see the module docstring)."""
    per_input = 8 if with_variance else 4
    return columns * (n_inputs * per_input + read_threads * 9 + 28)


def fixed_bytes(n_inputs: int, threads: int, pixels: int | None = None, processes: bool = False) -> int:
    """Bytes a combine needs besides its strips: the kernel's chunks and the fixed allowance;
    with ``processes``, ``threads`` worker processes, each with one thread's chunks and
    ``PROCESS_BYTES``."""
    if processes:
        per_worker = scratch_bytes(n_inputs, pixels, 1) + PROCESS_BYTES
    else:
        per_worker = scratch_bytes(n_inputs, pixels, threads)
    return FIXED_BYTES + PER_INPUT_BYTES * n_inputs + threads * per_worker


def strip_bytes(
    rows: int,
    n_inputs: int,
    columns: int,
    with_variance: bool,
    threads: int,
    read_threads: int,
    processes: bool = False,
) -> int:
    """Total working memory of a combine whose strips are ``rows`` high (with ``processes``, the
    ``threads`` worker processes may read their bands themselves: at least that many readers)."""
    readers = max(read_threads, threads) if processes else read_threads
    return fixed_bytes(n_inputs, threads, rows * columns, processes) + rows * strip_row_bytes(
        n_inputs, columns, with_variance, readers
    )


def strip_rows(
    budget_bytes: int,
    n_inputs: int,
    columns: int,
    with_variance: bool,
    threads: int,
    read_threads: int,
    max_rows: int = 1 << 20,
    processes: bool = False,
) -> int:
    """The largest strip height (<= ``max_rows``) whose working memory fits ``budget_bytes``; 0 if none."""
    lo, hi = 0, max_rows
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if (
            strip_bytes(mid, n_inputs, columns, with_variance, threads, read_threads, processes)
            <= budget_bytes
        ):
            lo = mid
        else:
            hi = mid - 1
    return lo


def strip_height(
    budget_bytes: int,
    n_inputs: int,
    rows: int,
    columns: int,
    with_variance: bool,
    threads: int,
    read_threads: int,
    processes: bool,
) -> int:
    """Rows per strip of a detector of ``rows`` rows: sized for ``STRIP_TARGET_BYTES`` of working
    memory, or for all of ``budget_bytes`` when the target cannot hold one row; 0 when the budget
    cannot either."""
    # the kernel's per-worker chunk buffers come on top of the target (counting them against it
    # left 16 threads strips of 5 rows: 836 strips of tiny reads, one chunk each)
    target = STRIP_TARGET_BYTES + fixed_bytes(n_inputs, threads, processes=processes)
    for limit in (min(budget_bytes, target), budget_bytes):
        height = strip_rows(limit, n_inputs, columns, with_variance, threads, read_threads, rows, processes)
        if height >= 1:
            return height
    return 0


def shared_strip_bytes(n_inputs: int, rows: int, columns: int, with_variance: bool) -> int:
    """Bytes of one strip's input and output buffers in a worker processes' shared arena (its
    alignment included); counted in :func:`strip_row_bytes` already."""
    inputs = n_inputs * rows * columns * 4 * (2 if with_variance else 1)
    return inputs + rows * columns * (4 + 4 + 2) + 8 * ARENA_ALIGN


def strip_budget_bytes(memory_mb: float) -> int:
    """The strip budget a worker with ``memory_mb`` of memory gives a combine."""
    free = (memory_mb - RUNTIME_OVERHEAD_MB) * BUDGET_FRACTION
    return int(max(0.0, min(free * (1 << 20), MAX_STRIP_BUDGET_BYTES)))


def throughput_bps() -> float:
    value = os.environ.get(ENV_THROUGHPUT)
    return float(value) * 1e6 if value else COMBINE_THROUGHPUT_BPS


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    estimated_s: float
    lambda_timeout_s: float
    needed_mb: float  # memory a minimal strip needs, runtime included
    lambda_memory_mb: float
    reason: str


def choose_route(
    *,
    n_inputs: int,
    input_bytes: int,
    columns: int,
    lambda_memory_mb: float,
    lambda_timeout_s: float,
    with_variance: bool = True,
    threads: int = 6,
    read_threads: int = 8,
    throughput: float | None = None,
    forced: str = "auto",
) -> RouteDecision:
    """Lambda or Fargate for one combine (see the module docstring); ``forced`` is
    ``auto``, ``lambda`` or ``fargate``."""
    rate = throughput or throughput_bps()
    estimated = input_bytes / rate
    minimal = strip_bytes(MIN_STRIP_ROWS, n_inputs, columns, with_variance, threads, read_threads)
    needed_mb = RUNTIME_OVERHEAD_MB + minimal / BUDGET_FRACTION / (1 << 20)
    args = {
        "estimated_s": round(estimated, 3),
        "lambda_timeout_s": lambda_timeout_s,
        "needed_mb": round(needed_mb, 1),
        "lambda_memory_mb": lambda_memory_mb,
    }
    if forced in ("lambda", "fargate"):
        route: Route = "lambda" if forced == "lambda" else "fargate"
        return RouteDecision(route=route, reason=f"route forced to {forced}", **args)
    if estimated > TIME_SAFETY * lambda_timeout_s:
        return RouteDecision(
            route="fargate",
            reason=(
                f"estimated {estimated:.0f} s ({input_bytes / 1e6:.0f} MB at {rate / 1e6:.0f} MB/s) exceeds "
                f"{TIME_SAFETY:g} x the {lambda_timeout_s:g} s Lambda timeout"
            ),
            **args,
        )
    if strip_budget_bytes(lambda_memory_mb) < minimal:
        return RouteDecision(
            route="fargate",
            reason=(
                f"a {MIN_STRIP_ROWS}-row strip of {n_inputs} inputs needs {needed_mb:.0f} MB, more than the "
                f"{lambda_memory_mb:g} MB Lambda"
            ),
            **args,
        )
    return RouteDecision(
        route="lambda",
        reason=(
            f"estimated {estimated:.1f} s within {TIME_SAFETY:g} x {lambda_timeout_s:g} s and "
            f"{needed_mb:.0f} MB within {lambda_memory_mb:g} MB"
        ),
        **args,
    )
