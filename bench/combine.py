"""Combine benchmark: 16 HSC-size ISR'd frames, median and clipped mean; prints JSON.

Measured in the same run, on the same files (warm page cache), each measurement in its own
subprocess (clean peak memory, its own thread settings), single-threaded and with all cores:

- ours, from files: :func:`isrflow.calibration.combine.combine_files` (read strips of IMAGE,
  MASK, VARIANCE, combine, write the master MEF, checksum), under a 1 GiB strip budget;
  wall time, traced peak (tracemalloc) and process peak RSS;
- ours, in memory: :func:`isrflow.calibration.kernel.combine_stack` on the stacked pixels (with
  all cores: that many forked worker processes over the stack in shared memory, forked before
  the timed calls, as a thread pool is made before them);
- BANZAI's compiled median (``banzai/utils/median_utils``: quickselect in C, OpenMP rows),
  on the same in-memory stack, called as BANZAI's ``stats.median(stack, axis=0, mask)`` does
  (move the stack axis last, make it contiguous, ``median2d``), threads by OMP_NUM_THREADS;
  the package is installed with ``pip install --no-deps lco-banzai`` and only its compiled
  module is loaded (``import banzai`` itself needs lcogt_logging and more);
- ccdproc.combine on the same files: ``method="median"``, and ``method="average"`` with
  ``sigma_clip=True`` (its closest analogue of MEANCLIP); single-threaded by design.

Ratios: BANZAI's median time over ours (in memory, same threads), ccdproc's median over ours
(files); the ``*_1_cpu`` ones compare the CPU seconds of the single-threaded runs instead (the
same on an idle machine, and still meaningful on a shared one, where wall times are not; worker
processes' CPU is counted once they are reaped, at the end of each call). Goals: >= 2x BANZAI's median, >= 20x ccdproc's median, peak within the budget.
``throughput_mb_s`` (input bytes / our meanclip wall time from files, all cores) is the
figure behind :data:`isrflow.calibration.routing.COMBINE_THROUGHPUT_BPS`.

``*_all_threads_over_1``: our time on one thread over our time on every core (throughput gain
from threads; goals at 16 cores: >= 8x in memory, >= 4x from files).

Usage: python bench/combine.py [--quick] [--frames N] [--repeat N]
"""

from __future__ import annotations

import argparse
import atexit
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from pathlib import Path

HSC_SHAPE = (4176, 2048)
QUICK_SHAPE = (256, 192)
BUDGET = 1 << 30


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def make_frames(directory: Path, n: int, shape: tuple[int, int], seed: int = 1) -> list[Path]:
    """ISR'd bias-like frames (e-): read noise, a fixed pattern, cosmic-ray-like outliers, SAT pixels."""
    import numpy as np

    from isrflow.io import formats
    from isrflow.io.exposure_io import Exposure, write_exposure

    rng = np.random.default_rng(seed)
    pattern = rng.normal(0.0, 2.0, shape).astype(np.float32)
    paths = []
    for i in range(n):
        image = pattern + rng.normal(0.0, 4.5, shape).astype(np.float32)
        hits = rng.random(shape) < 2e-4
        image[hits] += rng.uniform(500, 5000, int(hits.sum())).astype(np.float32)
        mask = np.zeros(shape, np.int32)
        mask[rng.random(shape) < 1e-3] = formats.SAT
        variance = np.full(shape, 20.25, np.float32)
        path = directory / f"cpBiasProc-{i:02d}.fits"
        write_exposure(
            path,
            Exposure(
                image,
                mask,
                variance,
                {formats.KW_INSTRUMENT: "HSC", formats.KW_DETECTOR: 50, formats.KW_EXPOSURE: 904000 + 2 * i},
            ),
        )
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- one measurement


def _stack(paths):
    """(N, P) float32 values, the same with NaN at masked pixels, the mask, the variances."""
    import numpy as np

    from isrflow.io.exposure_io import read_exposure

    frames = [read_exposure(p) for p in paths]
    values = np.stack([f.image for f in frames]).reshape(len(frames), -1)
    bad = np.stack([f.mask != 0 for f in frames]).reshape(len(frames), -1)
    variances = np.stack([f.variance for f in frames]).reshape(len(frames), -1)
    nan_values = values.copy()
    nan_values[bad] = np.nan
    return values, nan_values, bad, variances


def _banzai_module():
    paths = glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "banzai", "utils", "median_utils*.so"))
    if not paths:
        raise ImportError("lco-banzai is not installed (pip install --no-deps lco-banzai)")
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader("median_utils", paths[0])
    spec = importlib.util.spec_from_file_location("median_utils", paths[0], loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _job(spec: dict):
    """The measured call for one spec, everything it needs (imports, in-memory stacks) made first."""
    import numpy as np

    kind, paths, threads = spec["kind"], [Path(p) for p in spec["paths"]], spec["threads"]
    if kind == "files":
        from isrflow.calibration.combine import CombineInput, CombineSettings, combine_files

        settings = CombineSettings(
            statistic=spec["statistic"],
            budget_bytes=BUDGET,
            threads=threads,
            read_threads=max(1, threads * 2) if threads > 1 else 1,
        )

        def run():
            report = combine_files([CombineInput(str(p)) for p in paths], spec["out"], "bias", settings)
            return {"strips": report.strips, "rows_per_strip": report.rows_per_strip}

        return run
    if kind == "kernel":
        from isrflow.calibration.forked import ALIGN, SharedArena
        from isrflow.calibration.kernel import CombineOutput, Workspace, combine_stack
        from isrflow.calibration.routing import chunk_pixels

        _, nan_values, _, variances = _stack(paths)
        if threads == 1:  # value, variance and n_used per pixel, as the streaming combine computes them
            return lambda: combine_stack(nan_values, variances, spec["statistic"], threads=1) and {}
        # several workers: forked processes over the stack in shared memory, as combine_files runs
        # them, forked once before the timed calls (as the threads' pool is made once): a combine
        # forks once for all its strips. Each worker maps the pages of its chunks on its first call
        # (minor faults: 140k of them per worker for this stack), which the best of the repeats leaves out.
        m, p = nan_values.shape
        arena = SharedArena(nan_values.nbytes + variances.nbytes + p * 10 + 4 * ALIGN)
        values, shared_variances = arena.empty((m, p), np.float32), arena.empty((m, p), np.float32)
        values[:], shared_variances[:] = nan_values, variances
        del nan_values, variances
        out = CombineOutput.empty(p, arena.empty)
        workspace = Workspace(m, chunk_pixels(m, 1), threads, arena)
        atexit.register(workspace.close)

        def run_forked():
            combine_stack(values, shared_variances, spec["statistic"], out=out, workspace=workspace)
            return {"processes": threads}

        return run_forked
    if kind == "banzai":
        module = _banzai_module()
        values, _, bad, _ = _stack(paths)
        n = values.shape[0]

        def run():  # what banzai.utils.stats.median(d, axis=0, mask) does: stack axis last, contiguous, median2d
            data = np.ascontiguousarray(np.rollaxis(values, 0, 2).reshape(-1, n), dtype=np.float32)
            mask = np.ascontiguousarray(np.rollaxis(bad, 0, 2).reshape(-1, n), dtype=np.uint8)
            module.median2d(data, mask)
            return {}

        return run
    if kind == "ccdproc":
        import warnings

        import ccdproc

        kwargs = (
            {"method": "median"}
            if spec["statistic"] == "median"
            else {"method": "average", "sigma_clip": True}
        )

        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ccdproc.combine(
                    [str(p) for p in paths], unit="electron", hdu="IMAGE", hdu_uncertainty=None, **kwargs
                )
            return {}

        return run
    raise ValueError(kind)


def measure(spec: dict) -> dict:
    """Best of ``repeat`` runs of one job: wall seconds, traced peak and process peak RSS."""
    job = _job(spec)
    best = None
    for _ in range(spec.get("repeat", 1)):
        tracemalloc.start()
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        extra = job()
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes, once reaped
        rss0, rss = usage0.ru_maxrss, usage.ru_maxrss
        cpu = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
        cpu += children.ru_utime + children.ru_stime - children0.ru_utime - children0.ru_stime
        result = {
            "seconds": round(seconds, 4),
            "cpu_seconds": round(cpu, 4),
            "peak_traced_mb": round(peak / 2**20, 1),
            "peak_rss_mb": round(rss / 1024, 1),
            "rss_growth_mb": round((rss - rss0) / 1024, 1),
            # the largest worker process's peak (its shared pages included): 0 without processes
            "peak_rss_worker_mb": round(children.ru_maxrss / 1024, 1),
            **extra,
        }
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    return best


def _run(spec: dict) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(spec["threads"])  # BANZAI's OpenMP; numpy's BLAS is not used here
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"4 frames of {QUICK_SHAPE} (a smoke run)")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument(
        "--compression",
        default="none",
        choices=("none", "lossless", "quantized"),
        help="ISRFLOW_COMPRESSION of the frames and masters (the README's figures: none)",
    )
    parser.add_argument("--repeat", type=int, default=None, help="best of N runs (default 3; 1 with --quick)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = measure(json.loads(args.worker))
        print(json.dumps(result))
        return result

    os.environ["ISRFLOW_COMPRESSION"] = args.compression  # the frames written here and the workers' masters
    shape = QUICK_SHAPE if args.quick else HSC_SHAPE
    n = args.frames or (4 if args.quick else 16)
    cores = _cores()
    work = Path(tempfile.mkdtemp(prefix="isrflow-combine-bench-"))
    atexit.register(shutil.rmtree, work, True)  # leave no frames behind
    paths = make_frames(work, n, shape)
    input_bytes = sum(p.stat().st_size for p in paths)
    base = {"paths": [str(p) for p in paths], "out": str(work / "master.fits")}
    threads = {"1": 1, "all": cores}
    repeat = args.repeat or (1 if args.quick else 3)
    base["repeat"] = repeat
    figures: dict = {
        "repeat_best_of": repeat,
        "compression": args.compression,
        "frames": n,
        "shape": list(shape),
        "cores": cores,
        "input_mb": round(input_bytes / 1e6, 1),
        "budget_mb": BUDGET / 2**20,
    }
    for label, kind in (("ours_files", "files"), ("ours_in_memory", "kernel")):
        figures[label] = {
            stat: {
                t: _run({**base, "kind": kind, "statistic": stat, "threads": k}) for t, k in threads.items()
            }
            for stat in ("median", "meanclip")
        }
    try:
        _banzai_module()
        figures["banzai_median"] = {
            t: _run({**base, "kind": "banzai", "statistic": "median", "threads": k})
            for t, k in threads.items()
        }
        figures["banzai_median"]["available"] = True
    except ImportError as exc:
        figures["banzai_median"] = {"available": False, "reason": str(exc)}
    figures["ccdproc"] = {
        stat: _run({**base, "kind": "ccdproc", "statistic": stat, "threads": 1, "repeat": 1})
        for stat in ("median", "meanclip")
    }

    def sec(d):
        return d.get("seconds") if isinstance(d, dict) else None

    ratios = {}
    for t in threads:
        ours = sec(figures["ours_in_memory"]["median"][t])
        theirs = sec(figures["banzai_median"].get(t)) if figures["banzai_median"].get("available") else None
        ratios[f"banzai_median_over_ours_median_{t}"] = round(theirs / ours, 2) if ours and theirs else None
        ours_files = sec(figures["ours_files"]["median"][t])
        cc = sec(figures["ccdproc"]["median"])
        ratios[f"ccdproc_median_over_ours_median_{t}"] = (
            round(cc / ours_files, 2) if ours_files and cc else None
        )
        ours_clip = sec(figures["ours_files"]["meanclip"][t])
        cc_clip = sec(figures["ccdproc"]["meanclip"])
        ratios[f"ccdproc_sigma_clip_average_over_ours_meanclip_{t}"] = (
            round(cc_clip / ours_clip, 2) if ours_clip and cc_clip else None
        )

    def cpu(d):
        return d.get("cpu_seconds") if isinstance(d, dict) else None

    # on one thread, CPU seconds (all of the process's threads) measure the work done whatever
    # else the machine runs; wall times on a shared machine do not
    ours, theirs = cpu(figures["ours_in_memory"]["median"]["1"]), cpu(figures["banzai_median"].get("1"))
    ratios["banzai_median_over_ours_median_1_cpu"] = round(theirs / ours, 2) if ours and theirs else None
    for stat, key in (
        ("median", "ccdproc_median_over_ours_median_1_cpu"),
        ("meanclip", "ccdproc_sigma_clip_average_over_ours_meanclip_1_cpu"),
    ):
        ours, theirs = cpu(figures["ours_files"][stat]["1"]), cpu(figures["ccdproc"][stat])
        ratios[key] = round(theirs / ours, 2) if ours and theirs else None
    for label in ("ours_in_memory", "ours_files"):  # throughput with all cores over one thread
        for stat in ("median", "meanclip"):
            one, every = sec(figures[label][stat]["1"]), sec(figures[label][stat]["all"])
            ratios[f"{label}_{stat}_all_threads_over_1"] = round(one / every, 2) if one and every else None
    figures["ratios"] = ratios
    peaks = [
        figures["ours_files"][s][t].get("peak_traced_mb") for s in ("median", "meanclip") for t in threads
    ]
    figures["memory"] = {
        "ours_files_peak_traced_mb": max(p for p in peaks if p is not None),
        "within_budget": all(p is not None and p <= BUDGET / 2**20 for p in peaks),
    }
    clip_all = sec(figures["ours_files"]["meanclip"]["all"])
    figures["throughput_mb_s"] = round(input_bytes / 1e6 / clip_all, 1) if clip_all else None
    print(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
