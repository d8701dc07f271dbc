"""Calibration cache benchmark (isrflow.io.calib_cache): datastore bytes and ISR seconds per detector; prints JSON.

HSC-size detectors (2 by default, 2 exposures each) with bias, dark and flat as BuildCalibration
writes its masters (IMAGE, MASK and VARIANCE planes) and defects, in a local repository. The real
ISR handler runs every quantum as its own cluster (one Lambda invocation per detector-exposure,
as prompt processing does), in this process, four times:

- ``no_cache``: no cache configured; every invocation reads its calibrations from the datastore;
- ``cold``: the cache configured as template.yaml configures the ISR function (memory and /tmp
  budgets), empty: the first invocation of each detector reads the datastore;
- ``warm``: the same process again (a warm Lambda): memory hits, and disk hits where the memory
  budget holds fewer detectors than the pass visits;
- ``warm_disk``: a new process on the same disk cache with no memory tier: every lookup a disk hit
  (the sha256 is verified as the copy enters memory).

Per scenario: datastore bytes read per detector (raw + calibrations: S3 GET bytes on AWS), output
bytes written per detector, where the calibration lookups were served, and the handler's ISR
seconds per detector (median and mean). Local reads come from the page cache, so ``no_cache``
seconds leave out S3 transfer time: the bytes are the figure that carries over to AWS.

Usage: python bench/calib_cache.py [--detectors 50,51] [--exposures 2] [--image-only] [--quick]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _calibration_files(night, image_only: bool, out: Path) -> list[Path]:
    """The simulator's true calibrations, written as the masters BuildCalibration makes (with
    MASK and VARIANCE planes) unless ``image_only``."""
    import numpy as np

    from isrflow.io.exposure_io import Exposure, read_exposure, write_exposure

    files: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    for cal in night.calibrations.values():
        files.append(Path(cal.defects))
        for path in (cal.bias, cal.dark, *cal.flat.values()):
            if image_only:
                files.append(Path(path))
                continue
            e = read_exposure(path)
            variance = np.full(e.image.shape, 1e-3, dtype=np.float32)
            target = out / Path(path).name
            write_exposure(target, Exposure(e.image, np.zeros(e.image.shape, np.int32), variance, e.header))
            files.append(target)
    return files


def _run_pass(name: str, env: dict, plan_handler, isr_handler, instrument: str) -> list[dict]:
    """Plan and run one ProcessVisit pass in this process, one cluster per quantum; its results."""
    from isrflow.io.storage import storage_for
    from isrflow.process_visit.results import cluster_file_uri, read_file

    os.environ.update(env)
    spec = {
        "where": f"instrument = '{instrument}'",
        "input_collections": [f"{instrument}/raw/all"],
        "calib_collection": f"{instrument}/calib",
        "output_run": f"{instrument}/runs/{name}",
        "cluster_size": 1,
    }
    plan = plan_handler({"input": spec, "execution_id": f"bench-{name}"})
    clusters = json.loads(storage_for(plan["manifest_uri"]).read_bytes(plan["manifest_uri"]))
    results = []
    for cluster in clusters:
        isr_handler(
            {
                "cluster": cluster,
                "execution_id": plan["execution_id"],
                "results_prefix": plan["results_prefix"],
                "output_run": plan["output_run"],
                "isr_config": plan["isr_config"],
            }
        )
        results += read_file(cluster_file_uri(plan["results_prefix"], cluster["cluster_id"]))
    failed = [r.error for r in results if r.status != "succeeded"]
    if failed:
        raise SystemExit(f"{name}: {len(failed)} quanta failed: {failed[0]}")
    return results


def _figures(results: list) -> dict:
    n = len(results)
    reads = [r.reads for r in results]
    seconds = [r.duration_s for r in results]
    mb = 1e6
    return {
        "detectors": n,
        "datastore_mb_read_per_detector": round(sum(x.raw_bytes + x.calib_bytes for x in reads) / n / mb, 2),
        "raw_mb_read_per_detector": round(sum(x.raw_bytes for x in reads) / n / mb, 2),
        "calib_mb_read_per_detector": round(sum(x.calib_bytes for x in reads) / n / mb, 2),
        "output_mb_written_per_detector": round(sum(r.output_size or 0 for r in results) / n / mb, 2),
        "calib_lookups": {
            "memory": sum(x.calib_memory_hits for x in reads),
            "disk": sum(x.calib_disk_hits for x in reads),
            "datastore": sum(x.calib_misses for x in reads),
        },
        "isr_s_per_detector_median": round(statistics.median(seconds), 3),
        "isr_s_per_detector_mean": round(statistics.fmean(seconds), 3),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", default="50,51", help="HSC detector ids, comma separated")
    parser.add_argument("--exposures", type=int, default=2, help="science exposures per detector")
    parser.add_argument("--image-only", action="store_true", help="calibrations with the IMAGE plane only")
    parser.add_argument("--quick", action="store_true", help="small generic frames (a smoke run)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))

    from functions.isr.app import isr_handler
    from functions.plan.app import lambda_handler as plan_handler
    from isrflow.infra.settings import ENV_DATASTORE_ROOT, ENV_REGISTRY_QUEUE_URL, ENV_REGISTRY_URL
    from isrflow.io import calib_cache
    from isrflow.local.queue import LocalQueue
    from isrflow.local.sam_template import load_template
    from isrflow.registry import create_repo, ingest
    from isrflow.registry.calib_import import import_calibrations
    from isrflow.simulate import SimulationRequest, simulate

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="isrflow-bench-cache-"))
    atexit.register(shutil.rmtree, work, True)  # leave no frames behind
    detectors = [int(d) for d in args.detectors.split(",")]
    request = (
        SimulationRequest(
            camera="generic", small=True, detectors=[0, 1], science=args.exposures, out=work / "sim"
        )
        if args.quick
        else SimulationRequest(camera="hsc", detectors=detectors, science=args.exposures, out=work / "sim")
    )
    night = simulate(request)
    registry = create_repo(work / "repo")
    assert ingest(registry, [r.path for r in night.raws]).ok
    files = _calibration_files(night, args.image_only, work / "masters")
    refs = import_calibrations(registry, files, f"{night.instrument}/calib/bench")
    registry.register_collection(f"{night.instrument}/calib", "CALIBRATION")
    registry.certify([r.id for r in refs], f"{night.instrument}/calib", None, None)
    queue = LocalQueue(work / "repo" / "queue.sqlite3", "registry")
    base = {
        ENV_DATASTORE_ROOT: str(registry.datastore_root),
        ENV_REGISTRY_QUEUE_URL: queue.url,
        ENV_REGISTRY_URL: registry.url,
    }
    isr = load_template(ROOT / "template.yaml")["Resources"]["IsrFunction"]["Properties"]
    isr_env = isr["Environment"]["Variables"]
    memory_bytes = int(isr_env[calib_cache.ENV_MEMORY_BYTES])
    disk_bytes = int(isr_env[calib_cache.ENV_CACHE_BYTES])
    cache_dir = str(work / "tmp-cache")  # stands for the Lambda's /tmp
    cached = {
        calib_cache.ENV_CACHE_DIR: cache_dir,
        calib_cache.ENV_CACHE_BYTES: str(disk_bytes),
        calib_cache.ENV_MEMORY_BYTES: str(memory_bytes),
    }
    unset = {
        calib_cache.ENV_CACHE_DIR: "",
        calib_cache.ENV_CACHE_BYTES: "0",
        calib_cache.ENV_MEMORY_BYTES: "0",
    }
    setup_s = time.perf_counter() - started

    _run_pass("warmup", base | unset, plan_handler, isr_handler, night.instrument)  # imports, page cache

    def scenario(name: str, env: dict) -> dict:
        return _figures(_run_pass(name, base | env, plan_handler, isr_handler, night.instrument))

    scenarios = {
        "no_cache": scenario("no_cache", unset),
        "cold": scenario("cold", cached),
        "warm": scenario("warm", cached),
    }
    calib_cache._CACHE = None  # a new process: the disk copies stay, the memory tier is gone
    scenarios["warm_disk"] = scenario("warm_disk", cached | {calib_cache.ENV_MEMORY_BYTES: "0"})
    first = min(r.data_id["detector"] for r in refs)
    calib_mb = {r.dataset_type: round(r.size / 1e6, 2) for r in refs if r.data_id["detector"] == first}
    result = {
        "camera": night.instrument,
        "detectors": detectors if not args.quick else [0, 1],
        "exposures_per_detector": args.exposures,
        "calibration_planes": "IMAGE" if args.image_only else "IMAGE+MASK+VARIANCE",
        "calibration_file_mb": calib_mb,
        "cache_budgets_bytes": {
            "memory": memory_bytes,
            "disk": disk_bytes,
            "from": "template.yaml IsrFunction",
        },
        "cpu_count": os.cpu_count(),
        "setup_s": round(setup_s, 1),
        "scenarios": scenarios,
        "calib_bytes_saved_warm_vs_no_cache": round(
            1
            - scenarios["warm"]["calib_mb_read_per_detector"]
            / scenarios["no_cache"]["calib_mb_read_per_detector"],
            3,
        ),
        "total_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
