"""Local orchestration benchmark; prints JSON.

1. Overhead per Map item: the real ProcessVisit ASL on the local runtime's machinery
   (project interpreter, process-pool Lambda dispatch) with no-op handlers, 100/1000/10000
   clusters. Target <= 2 ms per item.
2. End to end with real HSC-size ISR: detectors/s, and the orchestration overhead as a
   fraction of the ISR time (wall x workers - summed ISR seconds, over the summed ISR
   seconds). Target <= 5 %.
3. Local queue -> batched registry writer: messages/s (dataset messages with provenance).
   Target >= 5,000 messages/s.

Usage: python bench/orchestration.py [--quick]
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
from datetime import UTC
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parents[1]


def map_overhead(items: int, workers: int) -> dict:
    from isrflow.local.asl import Interpreter, StateMachine
    from isrflow.local.lambdas import LambdaPool, LocalFunction
    from isrflow.local.runtime import _PoolIntegrations

    manifest = json.dumps([{"cluster_id": f"c{i}", "quanta": []} for i in range(items)]).encode()
    plan = {
        "execution_id": "bench",
        "execution_key": "bench",
        "manifest_key": "m.json",
        "manifest_uri": "m",
        "results_prefix": "r/",
        "clusters": items,
        "quanta": items,
        "failed_at_plan": 0,
        "skipped_existing": 0,
        "output_run": "bench/run",
        "isr_config": {},
        "max_concurrency": 1000,
        "max_failure_fraction": 0.0,
        "previews": False,
    }
    handler_file = str(ROOT / "bench" / "noop_handler.py")
    env = {"BENCH_PLAN_RESULT": json.dumps(plan)}

    class Runtime:  # the slice of LocalRuntime the integrations use
        functions: ClassVar[dict] = {
            "Plan": LocalFunction("Plan", handler_file, "plan", env, 60.0),
            "Isr": LocalFunction("Isr", handler_file, "noop", {}, 60.0),
            "Summarize": LocalFunction("Summarize", handler_file, "noop", {}, 60.0),
            "RecordFailure": LocalFunction("RecordFailure", handler_file, "noop", {}, 60.0),
            "Mosaic": LocalFunction("Mosaic", handler_file, "noop", {}, 60.0),
        }
        pool = LambdaPool(workers)

    runtime = Runtime()
    subs = {
        "PlanFunctionArn": "arn:aws:lambda:local:000000000000:function:Plan",
        "IsrFunctionArn": "arn:aws:lambda:local:000000000000:function:Isr",
        "SummarizeFunctionArn": "arn:aws:lambda:local:000000000000:function:Summarize",
        "RecordFailureFunctionArn": "arn:aws:lambda:local:000000000000:function:RecordFailure",
        "MosaicFunctionArn": "arn:aws:lambda:local:000000000000:function:Mosaic",
        "DataBucketName": "bench",
    }
    machine = StateMachine.from_file(
        ROOT / "statemachines" / "process_visit.asl.json", "ProcessVisit", substitutions=subs
    )
    written: dict[str, int] = {}  # the Distributed Map's ResultWriter output, kept in memory (bytes per key)
    interp = Interpreter(
        _PoolIntegrations(runtime),
        item_reader=lambda bucket, key: manifest,
        result_writer=lambda bucket, key, body: written.__setitem__(key, len(body)),
        max_workers=64,
    )
    runtime.pool.invoke(runtime.functions["Isr"], {})  # start the workers
    t0 = time.perf_counter()
    execution = interp.start_execution(machine, {}, name=f"bench-{items}")
    wall = time.perf_counter() - t0
    runtime.pool.close()
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    return {"items": items, "wall_s": round(wall, 3), "ms_per_item": round(1000 * wall / items, 3)}


def end_to_end(workers: int, quick: bool) -> dict:
    from isrflow.local.runtime import LocalRuntime
    from isrflow.registry import create_repo, ingest
    from isrflow.registry.calib_import import import_calibrations
    from isrflow.simulate import SimulationRequest, simulate

    work = Path(tempfile.mkdtemp(prefix="isrflow-orch-"))

    atexit.register(shutil.rmtree, work, True)  # leave no frames behind
    request = (
        SimulationRequest(camera="generic", small=True, detectors=[0, 1, 2, 3], science=2, out=work / "sim")
        if quick
        else SimulationRequest(camera="hsc", detectors=[0, 1, 2, 3], science=2, out=work / "sim")
    )
    night = simulate(request)
    registry = create_repo(work / "repo")
    ingest(registry, [r.path for r in night.raws])
    files = [f for c in night.calibrations.values() for f in (c.bias, c.dark, c.defects, *c.flat.values())]
    refs = import_calibrations(registry, files, f"{night.instrument}/calib/truth")
    registry.register_collection(f"{night.instrument}/calib", "CALIBRATION")
    registry.certify([r.id for r in refs], f"{night.instrument}/calib", None, None)
    payload = {
        "where": f"instrument = '{night.instrument}'",
        "input_collections": [f"{night.instrument}/raw/all"],
        "calib_collection": f"{night.instrument}/calib",
        "output_run": "bench/run",
        "cluster_size": 2,
    }
    with LocalRuntime(work / "repo", processes=workers) as runtime:
        runtime.pool.start_workers()  # workers import the science stack before the clock starts (a warm Lambda)
        t0 = time.perf_counter()
        execution = runtime.run("ProcessVisitStateMachine", payload)
        wall = time.perf_counter() - t0
    assert execution.status == "SUCCEEDED", execution.cause
    isr_s = sum(r["duration_s"] for r in registry.processing_records(execution.execution_arn))
    n = execution.output["quanta"]
    return {
        "detectors": n,
        "frame": "small generic" if quick else "HSC full size",
        "workers": workers,
        "wall_s": round(wall, 3),
        "detectors_per_s": round(n / wall, 3),
        "isr_seconds_summed": round(isr_s, 3),
        "overhead_fraction": round(max(0.0, wall * workers - isr_s) / isr_s, 3),
    }


def writer_throughput(messages: int) -> dict:
    import uuid
    from datetime import datetime

    from isrflow.local.event_source import QueuePoller
    from isrflow.local.lambdas import LocalFunction, invoke_here
    from isrflow.local.queue import LocalQueue
    from isrflow.model.messages import (
        DatasetMessage,
        DetectorRecord,
        ExposureRecord,
        InstrumentRecord,
        dump_message,
    )
    from isrflow.registry import Registry

    work = Path(tempfile.mkdtemp(prefix="isrflow-writer-"))

    atexit.register(shutil.rmtree, work, True)  # leave no frames behind
    registry = Registry.create(f"sqlite:///{work / 'registry.sqlite3'}", work)
    now = datetime(2026, 11, 20, tzinfo=UTC)
    n_exp = max(1, messages // 100)
    registry.apply(
        [
            InstrumentRecord(name="Bench"),
            *[DetectorRecord(instrument="Bench", id=d, name=f"D{d}") for d in range(100)],
            *[
                ExposureRecord(
                    instrument="Bench",
                    id=e,
                    obs_type="science",
                    physical_filter="r",
                    band="r",
                    exptime=30,
                    darktime=30,
                    day_obs=20261119,
                    begin=now,
                    end=now,
                )
                for e in range(n_exp)
            ],
        ]
    )
    raws = [
        DatasetMessage(
            dataset_type="raw",
            run="Bench/raw/all",
            data_id={"instrument": "Bench", "exposure": e, "detector": d},
            uri=f"file:///raw/{e}/{d}.fits",
        )
        for e in range(n_exp)
        for d in range(100)
    ][:messages]
    registry.apply(raws)
    queue = LocalQueue(work / "queue.sqlite3")
    bodies = [
        dump_message(
            DatasetMessage(
                dataset_type="postISRCCD",
                run="Bench/runs/b",
                data_id=r.data_id,
                uri=f"file:///out/{uuid.uuid4().hex}.fits",
                inputs=[{"dataset_id": r.dataset_id, "role": "raw"}],
            )
        )
        for r in raws
    ]
    queue.send(bodies)
    fn = LocalFunction(
        "writer",
        str(ROOT / "functions" / "registry_writer" / "app.py"),
        "lambda_handler",
        {"ISRFLOW_REGISTRY_URL": registry.url},
        120.0,
    )

    def invoke(event):
        status, value = invoke_here(fn, event)
        assert status == "ok", value
        return value

    poller = QueuePoller(queue, invoke, batch_size=5000, window_s=0, retry_delay_s=0)
    t0 = time.perf_counter()
    poller.drain()
    wall = time.perf_counter() - t0
    rows = len(registry.query_datasets("postISRCCD", ["Bench/runs/b"]))
    return {
        "messages": messages,
        "wall_s": round(wall, 3),
        "messages_per_s": round(messages / wall, 1),
        "rows": rows,
        "batches": poller.batches,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    workers = os.cpu_count() or 1
    sizes = [100, 1000] if args.quick else [100, 1000, 10000]
    result = {
        "map_overhead": [map_overhead(n, workers) for n in sizes],
        "end_to_end": end_to_end(workers, args.quick),
        "queue_to_writer": writer_throughput(2000 if args.quick else 20000),
        "targets": {"ms_per_item_max": 2.0, "overhead_fraction_max": 0.05, "messages_per_s_min": 5000},
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
