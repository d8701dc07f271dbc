"""Scaling benchmark: combine, ISR and the local runtime with 1, 2, 4, 8, 16 threads/workers; prints JSON.

For every count ``n`` of threads or worker processes (1, 2, 4, 8, 16, capped at the machine's
cores unless ``--max-workers`` says otherwise; the cap is printed on stderr and in the JSON):

- **combine in memory**: :func:`isrflow.calibration.kernel.combine_stack` on the stacked pixels
  of ``--frames`` ISR'd frames (values with NaN at masked pixels, variance planes), ``threads=n``,
  and (``*_processes``) ``n`` forked worker processes over the same stack in a SharedArena;
  seconds and input MB/s (image + variance bytes);
- **combine from files**: :func:`isrflow.calibration.combine.combine_files` on the same frames
  (strips of IMAGE, MASK, VARIANCE, combine, write the master), ``threads=n`` worker processes
  (the default), and threads for the median (``median_threads``); seconds and input MB/s (file
  bytes), against the **I/O floor**: a plain parallel read (``n`` threads, ``pread``
  of every file into a reused buffer; warm page cache) of the same files, in MB/s;
- **ISR**: full ISR of ``detectors(n)`` HSC-size detectors (read raw + calibrations, every
  step, write the output) in a pool of ``n`` worker processes; detectors/s;
- **end to end**: the ProcessVisit state machine on the local runtime with ``n`` workers over
  ``detectors(n)`` detectors; wall seconds, summed ISR seconds (the registry's processing
  records) and ``wall x workers / summed ISR`` (1 = no overhead; goal <= 1.25).

``detectors(n) = min(--detectors, max(4, --per-worker x n))`` (default 3 per worker) so that the
largest run has 48 detectors with 16 workers while the small counts stay short; ``--per-worker 24``
gives 48 detectors to 2 workers on a 2-core machine. Speedups are throughput over the 1-thread (or
1-worker) throughput of the same measurement. ``--out-png`` draws the speedup curves.
Best of ``--repeat`` for the combine and the I/O floor; one run for ISR and end to end.

Usage: python bench/scaling.py [--quick] [--max-workers N] [--out-png PATH]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/combine.py's frame maker

COUNTS = (1, 2, 4, 8, 16)
HSC_SHAPE = (4176, 2048)
QUICK_SHAPE = (256, 192)
STATISTICS = ("median", "meanclip")
CHUNK_16K = 16384


def log(message: str) -> None:
    print(f"[scaling {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _speedups(throughput: dict[int, float]) -> dict[int, float]:
    base = throughput.get(1)
    return {n: round(v / base, 3) for n, v in throughput.items()} if base else {}


# --------------------------------------------------------------------------- combine


def combine_scaling(
    counts: list[int], n_frames: int, shape: tuple[int, int], repeat: int, work: Path, result: dict
) -> dict:
    """Combine in memory and from files, and the parallel-read floor, for each thread count (into ``result``,
    figure by figure, so that an interrupted run still reports what it measured)."""
    import numpy as np
    from combine import make_frames  # bench/combine.py

    from isrflow.calibration.combine import CombineInput, CombineSettings, combine_files
    from isrflow.calibration.forked import ALIGN, SharedArena
    from isrflow.calibration.kernel import CombineOutput, Workspace, combine_stack
    from isrflow.calibration.routing import chunk_pixels
    from isrflow.io import formats
    from isrflow.io.exposure_io import read_exposure

    log(f"combine: writing {n_frames} frames of {shape[0]}x{shape[1]}")
    paths = make_frames(work, n_frames, shape)
    file_bytes = sum(p.stat().st_size for p in paths)
    frames = [read_exposure(p) for p in paths]
    values = np.stack([f.image for f in frames]).reshape(n_frames, -1)
    values[np.stack([(f.mask & formats.SAT) != 0 for f in frames]).reshape(n_frames, -1)] = np.nan
    variances = np.stack([f.variance for f in frames]).reshape(n_frames, -1)
    del frames
    memory_bytes = values.nbytes + variances.nbytes
    result.update(
        {
            "frames": n_frames,
            "shape": list(shape),
            "file_mb": round(file_bytes / 1e6, 1),
            "in_memory_mb": round(memory_bytes / 1e6, 1),
            "in_memory": {},
            "files": {},
        }
    )

    def record(section: str, key: str, seconds: dict[int, float], size: float) -> None:
        mb_s = {n: size / 1e6 / s for n, s in seconds.items()}
        result[section][key] = {
            "seconds": {n: round(s, 4) for n, s in seconds.items()},
            "mb_s": {n: round(v, 1) for n, v in mb_s.items()},
            "speedup": _speedups(mb_s),
        }

    # the same stack in shared memory, for worker processes (the combine's default with several workers)
    arena = SharedArena(values.nbytes + variances.nbytes + values.shape[1] * 10 + 4 * ALIGN)
    shared_values, shared_variances = (
        arena.empty(values.shape, np.float32),
        arena.empty(values.shape, np.float32),
    )
    shared_values[:], shared_variances[:] = values, variances
    shared_out = CombineOutput.empty(values.shape[1], arena.empty)
    for stat in STATISTICS:
        seconds = {}
        for n in counts:
            seconds[n] = _best(partial(combine_stack, values, variances, stat, threads=n), repeat)
            log(f"combine in memory {stat} threads={n}: {seconds[n]:.3f} s")
        record("in_memory", stat, seconds, memory_bytes)
        for n in counts[1:]:  # one worker is one thread either way
            with Workspace(n_frames, chunk_pixels(n_frames, 1), n, arena) as workspace:
                run = partial(
                    combine_stack, shared_values, shared_variances, stat, out=shared_out, workspace=workspace
                )
                seconds[n] = _best(run, repeat)
            log(f"combine in memory {stat} processes={n}: {seconds[n]:.3f} s")
        record("in_memory", f"{stat}_processes", seconds, memory_bytes)
    del shared_values, shared_variances, shared_out, arena
    # the kernel's chunk: the default for several threads (routing.CHUNK_PIXELS_THREADED) against the
    # cache-sized single-thread chunk, to see which scales on this machine
    seconds = {}
    for n in counts:
        seconds[n] = _best(
            partial(combine_stack, values, variances, "meanclip", threads=n, chunk=CHUNK_16K), repeat
        )
        log(f"combine in memory meanclip chunk {CHUNK_16K} threads={n}: {seconds[n]:.3f} s")
    record("in_memory", "meanclip_chunk16k", seconds, memory_bytes)
    del values, variances

    out = str(work / "master.fits")
    inputs = [CombineInput(str(p)) for p in paths]
    # worker processes (the default) for both statistics; threads for the median, to compare
    for key, stat, processes in [(s, s, True) for s in STATISTICS] + [("median_threads", "median", False)]:
        seconds = {}
        for n in counts:
            settings = CombineSettings(
                statistic=stat, threads=n, read_threads=2 * n if n > 1 else 1, processes=processes
            )
            seconds[n] = _best(partial(combine_files, inputs, out, "bias", settings), repeat)
            log(
                f"combine from files {stat} {'processes' if processes else 'threads'}={n}: {seconds[n]:.3f} s"
            )
        record("files", key, seconds, file_bytes)

    floor = {}
    for n in counts:
        floor[n] = file_bytes / 1e6 / _best(partial(parallel_read, paths, n), repeat)
        log(f"parallel read threads={n}: {floor[n]:.0f} MB/s")
    result["io_floor"] = {"mb_s": {n: round(v, 1) for n, v in floor.items()}, "speedup": _speedups(floor)}
    result["files_over_io_floor"] = {
        stat: {n: round(result["files"][stat]["mb_s"][n] / floor[n], 3) for n in counts}
        for stat in STATISTICS
    }
    return result


def parallel_read(paths: list[Path], threads: int, block: int = 8 << 20) -> int:
    """Read every file whole with ``threads`` threads (``preadv`` into one reused buffer per file); bytes read."""

    def read(path: Path) -> int:
        buffer = bytearray(block)
        view = memoryview(buffer)
        fd = os.open(path, os.O_RDONLY)
        try:
            total = 0
            while True:
                got = os.preadv(fd, [view], total)
                if got <= 0:
                    return total
                total += got
        finally:
            os.close(fd)

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(read, paths))


# --------------------------------------------------------------------------- ISR and end to end


def simulate_night(work: Path, n_detectors: int, quick: bool, workers: int):
    """One science exposure of ``n_detectors`` detectors (HSC, or the small generic camera) with its truth."""
    from isrflow.simulate import SimulationRequest, simulate

    detectors = list(range(n_detectors))
    request = (
        SimulationRequest(camera="generic", small=True, detectors=detectors, science=1, out=work / "sim")
        if quick
        else SimulationRequest(camera="hsc", detectors=detectors, science=1, out=work / "sim")
    )
    t0 = time.perf_counter()
    night = simulate(request, workers=workers)
    log(f"simulated {n_detectors} detectors with {workers} workers in {time.perf_counter() - t0:.1f} s")
    return night, time.perf_counter() - t0


def _isr_one(job: tuple[str, dict[str, str], str]) -> float:
    """Full ISR of one raw as a worker does it; seconds."""
    from isrflow.io.exposure_io import write_exposure
    from isrflow.io.rawio import read_raw
    from isrflow.isr import IsrConfig, run_isr
    from isrflow.isr.pipeline import load_calibrations_async

    raw, calibrations, out = job
    t0 = time.perf_counter()
    result = run_isr(read_raw(raw), load_calibrations_async(**calibrations), IsrConfig())
    write_exposure(out, result)
    return time.perf_counter() - t0


def _warm(_: int) -> int:

    return os.getpid()


def isr_scaling(counts: list[int], night, work: Path, detectors_for, result: dict) -> dict:
    raws = night.raws_of("science")
    jobs = []
    for raw in raws:
        det = raw.detectors[0]
        cal = night.calibrations[det]
        jobs.append(
            (
                raw.path,
                {
                    "bias": cal.bias,
                    "dark": cal.dark,
                    "flat": cal.flat[raw.physical_filter],
                    "defects": cal.defects,
                },
                str(work / f"isr-{det:03d}.fits"),
            )
        )
    result.update({"detectors": {}, "seconds": {}, "detectors_per_s": {}, "isr_seconds_summed": {}})
    for n in counts:
        mine = jobs[: detectors_for(n)]
        with ProcessPoolExecutor(n) as pool:
            list(pool.map(_warm, range(n)))
            t0 = time.perf_counter()
            each = list(pool.map(_isr_one, mine))
            wall = time.perf_counter() - t0
        result["detectors"][n] = len(mine)
        result["seconds"][n] = round(wall, 3)
        result["detectors_per_s"][n] = round(len(mine) / wall, 3)
        result["isr_seconds_summed"][n] = round(sum(each), 3)
        log(f"ISR workers={n}: {len(mine)} detectors in {wall:.2f} s ({len(mine) / wall:.2f}/s)")
    result["speedup"] = _speedups(result["detectors_per_s"])
    return result


def end_to_end_scaling(counts: list[int], night, work: Path, detectors_for, result: dict) -> dict:
    from isrflow.local.runtime import LocalRuntime
    from isrflow.registry import create_repo, ingest
    from isrflow.registry.calib_import import import_calibrations

    registry = create_repo(work / "repo")
    ingest(registry, [r.path for r in night.raws], "link")
    files = [f for c in night.calibrations.values() for f in (c.bias, c.dark, c.defects, *c.flat.values())]
    refs = import_calibrations(registry, files, f"{night.instrument}/calib/truth")
    registry.register_collection(f"{night.instrument}/calib", "CALIBRATION")
    registry.certify([r.id for r in refs], f"{night.instrument}/calib", None, None)
    result.update(
        {
            "detectors": {},
            "wall_s": {},
            "isr_seconds_summed": {},
            "detectors_per_s": {},
            "wall_x_workers_over_isr": {},
        }
    )
    for n in counts:
        k = detectors_for(n)
        payload = {
            "where": f"instrument = '{night.instrument}' AND detector IN (0..{k - 1})",
            "input_collections": [f"{night.instrument}/raw/all"],
            "calib_collection": f"{night.instrument}/calib",
            "output_run": f"scaling/run{n}",
            "cluster_size": 1,
        }
        with LocalRuntime(work / "repo", processes=n) as runtime:
            runtime.pool.start_workers()  # workers import the science stack before the clock starts (a warm Lambda)
            t0 = time.perf_counter()
            execution = runtime.run("ProcessVisitStateMachine", payload)
            wall = time.perf_counter() - t0
        if execution.status != "SUCCEEDED":
            raise RuntimeError(f"ProcessVisit with {n} workers: {execution.status}: {execution.cause}")
        isr_s = sum(r["duration_s"] for r in registry.processing_records(execution.execution_arn))
        done = execution.output["quanta"]
        result["detectors"][n] = done
        result["wall_s"][n] = round(wall, 3)
        result["isr_seconds_summed"][n] = round(isr_s, 3)
        result["detectors_per_s"][n] = round(done / wall, 3)
        result["wall_x_workers_over_isr"][n] = round(wall * n / isr_s, 3) if isr_s else None
        log(
            f"end to end workers={n}: {done} detectors in {wall:.2f} s, ISR summed {isr_s:.2f} s, "
            f"wall x workers / ISR = {wall * n / isr_s:.2f}"
        )
    result["speedup"] = _speedups(result["detectors_per_s"])
    return result


# --------------------------------------------------------------------------- plot and main


def plot(figures: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = figures["speedup_curves"]
    counts = figures["counts"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    groups = [
        ("combine (threads, worker processes)", [k for k in curves if k.startswith(("combine", "io_floor"))]),
        ("ISR (worker processes)", [k for k in curves if k.startswith("isr")]),
        ("end to end (local runtime workers)", [k for k in curves if k.startswith("end_to_end")]),
    ]
    for ax, (title, keys) in zip(axes, groups, strict=False):
        ax.plot(counts, counts, "k:", label="ideal")
        for key in keys:
            xs = [n for n in counts if str(n) in curves[key] or n in curves[key]]
            ys = [curves[key].get(n, curves[key].get(str(n))) for n in xs]
            ax.plot(xs, ys, "o-", label=key)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xticks(counts, [str(n) for n in counts])
        ax.set_xlabel("threads / workers")
        ax.set_ylabel("speedup over 1")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"isrflow scaling on {figures['cores']} cores ({'quick' if figures['quick'] else 'full'})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"small frames ({QUICK_SHAPE}, small generic detectors)"
    )
    parser.add_argument(
        "--max-workers", type=int, default=None, help="largest thread/worker count (default: cores)"
    )
    parser.add_argument(
        "--frames", type=int, default=None, help="combine inputs (default 16; 4 with --quick)"
    )
    parser.add_argument(
        "--detectors", type=int, default=48, help="detectors of the largest ISR/end-to-end run"
    )
    parser.add_argument(
        "--per-worker",
        type=int,
        default=3,
        help="detectors per worker of each ISR/end-to-end run (at least 4, at most --detectors)",
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="best of N for the combine (default 2; 1 with --quick)"
    )
    parser.add_argument("--parts", default="combine,isr,end_to_end", help="which measurements to run")
    parser.add_argument(
        "--compression",
        default="none",
        choices=("none", "lossless", "quantized"),
        help="ISRFLOW_COMPRESSION of the combine's frames and master (bench/combine.py's default: none)",
    )
    parser.add_argument("--out-png", default=None, help="write the speedup curves as a PNG plot here")
    args = parser.parse_args(argv)

    cap = args.max_workers or cores()
    counts = [n for n in COUNTS if n <= cap] or [1]
    log(
        f"cores {cores()}, thread/worker cap {cap}{' (--max-workers)' if args.max_workers else ' (cores)'}: "
        f"counts {counts}"
    )
    parts = set(args.parts.split(","))
    repeat = args.repeat or (1 if args.quick else 2)
    work = Path(tempfile.mkdtemp(prefix="isrflow-scaling-"))
    atexit.register(shutil.rmtree, work, True)  # leave no frames behind

    def detectors_for(n: int) -> int:
        return max(1, min(args.detectors, max(4, args.per_worker * n)))

    # everything the measured code and its worker processes print (the local runtime's function logs) goes
    # to stderr: stdout carries only the JSON document
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    figures: dict = {
        "cores": cores(),
        "cap": cap,
        "counts": counts,
        "quick": args.quick,
        "repeat_best_of": repeat,
    }
    t_start = time.perf_counter()
    try:
        if "combine" in parts:
            shape = QUICK_SHAPE if args.quick else HSC_SHAPE
            cdir = work / "combine"
            cdir.mkdir()
            before = os.environ.get("ISRFLOW_COMPRESSION")
            os.environ["ISRFLOW_COMPRESSION"] = args.compression
            figures["combine"] = {"compression": args.compression}
            try:
                combine_scaling(
                    counts, args.frames or (4 if args.quick else 16), shape, repeat, cdir, figures["combine"]
                )
            finally:
                if before is None:
                    os.environ.pop("ISRFLOW_COMPRESSION", None)
                else:
                    os.environ["ISRFLOW_COMPRESSION"] = before
                shutil.rmtree(cdir, True)
        if parts & {"isr", "end_to_end"}:
            night, sim_s = simulate_night(work, detectors_for(counts[-1]), args.quick, cap)
            figures["simulate"] = {
                "detectors": detectors_for(counts[-1]),
                "workers": cap,
                "seconds": round(sim_s, 2),
            }
            if "isr" in parts:
                figures["isr"] = {}
                isr_scaling(counts, night, work, detectors_for, figures["isr"])
            if "end_to_end" in parts:
                figures["end_to_end"] = {}
                end_to_end_scaling(counts, night, work, detectors_for, figures["end_to_end"])
    except KeyboardInterrupt:  # a time limit (timeout --signal=INT): report what was measured
        figures["interrupted"] = True
        log("interrupted: reporting the figures measured so far")

    def curve(section: dict | None, *keys: str) -> dict | None:
        for key in keys:
            if not isinstance(section, dict) or key not in section:
                return None
            section = section[key]
        return _speedups(section)

    curves = {}
    combine = figures.get("combine")
    for stat in (*STATISTICS, *(f"{s}_processes" for s in STATISTICS), "meanclip_chunk16k"):
        curves[f"combine_in_memory_{stat}"] = curve(combine, "in_memory", stat, "mb_s")
    for stat in (*STATISTICS, "median_threads"):
        curves[f"combine_files_{stat}"] = curve(combine, "files", stat, "mb_s")
    curves["io_floor_parallel_read"] = curve(combine, "io_floor", "mb_s")
    curves["isr"] = curve(figures.get("isr"), "detectors_per_s")
    curves["end_to_end"] = curve(figures.get("end_to_end"), "detectors_per_s")
    curves = {k: v for k, v in curves.items() if v}
    figures["speedup_curves"] = curves
    figures["total_seconds"] = round(time.perf_counter() - t_start, 1)
    if args.out_png:
        plot(figures, args.out_png)
        figures["png"] = args.out_png
        log(f"plot written to {args.out_png}")
    json_out.write(json.dumps(figures, indent=1) + "\n")
    json_out.flush()
    return figures


if __name__ == "__main__":
    main()
