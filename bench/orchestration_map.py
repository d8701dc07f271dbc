#!/usr/bin/env python
"""Orchestration overhead of the local ASL interpreter, per Map item, with a no-op handler.

The state machine mirrors ProcessVisit's fan-out: a DISTRIBUTED Map (STANDARD children)
whose ItemReader reads a JSON manifest (served from memory through the pluggable reader),
an ItemSelector combining ``$$.Map.Item.Value`` with a field of the input, one
``lambda:invoke`` Task per item with a Retry and a per-item Catch, and ``ResultPath: null``.
The handler does nothing, so the time per item is the interpreter's overhead: child
execution, history events, path/template evaluation, JSON isolation of the payloads,
threads. An INLINE Map of the same items is measured too (history limit lifted for it:
AWS would stop an inline Map of 10000 items at 25,000 history events).

Prints one JSON object::

    {"target_ms_per_item": 2.0, "max_workers": N,
     "distributed": {"100": {"items", "seconds", "ms_per_item", "state_transitions"}, "1000": ..., "10000": ...},
     "inline": {...same keys...},
     "meets_target": true}

Usage: ``bench/orchestration_map.py [--quick] [--workers N] [--repeat R]``. ``--quick`` runs
each size once, distributed only (a few seconds); otherwise both modes, best of ``--repeat``
(3) runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from isrflow.local.asl import Interpreter, LocalIntegrations, StateMachine

SIZES = (100, 1000, 10000)
TARGET_MS = 2.0


def _processor() -> dict:
    return {
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "noop", "Payload.$": "$"},
                "ResultSelector": {"result.$": "$.Payload"},
                "Retry": [
                    {
                        "ErrorEquals": ["Lambda.ServiceException", "Lambda.TooManyRequestsException"],
                        "IntervalSeconds": 2,
                        "MaxAttempts": 6,
                        "BackoffRate": 2,
                    }
                ],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Recorded"}],
                "End": True,
            },
            "Recorded": {"Type": "Pass", "End": True},
        },
    }


def machine(distributed: bool) -> StateMachine:
    proc = _processor()
    fanout: dict = {
        "Type": "Map",
        "ItemSelector": {"cluster.$": "$$.Map.Item.Value", "run.$": "$.output_run"},
        "MaxConcurrency": 0,
        "ResultPath": None,
        "End": True,
    }
    if distributed:
        proc["ProcessorConfig"] = {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
        fanout["ItemReader"] = {
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSON"},
            "Parameters": {"Bucket.$": "$.manifest.bucket", "Key.$": "$.manifest.key"},
        }
    else:
        fanout["ItemsPath"] = "$.items"
    fanout["ItemProcessor"] = proc
    return StateMachine.from_json(
        {"StartAt": "FanOut", "States": {"FanOut": fanout}},
        "BenchDistributed" if distributed else "BenchInline",
    )


def run_once(distributed: bool, n: int, workers: int) -> dict:
    items = [{"cluster": i, "detectors": [i % 8]} for i in range(n)]
    manifest = json.dumps(items).encode()
    interp = Interpreter(
        LocalIntegrations({"noop": lambda event, context: None}),
        max_workers=workers,
        item_reader=lambda bucket, key: manifest,
        max_history_events=25_000 if distributed else None,
    )
    data = {"output_run": "bench/run", "manifest": {"bucket": "bench", "key": "manifest.json"}}
    if not distributed:  # the items travel in the execution input: keep them small (256 KB limit)
        data["items"] = list(range(n))
    t0 = time.perf_counter()
    ex = interp.start_execution(machine(distributed), data, name=f"bench-{n}")
    seconds = time.perf_counter() - t0
    if ex.status != "SUCCEEDED":
        raise SystemExit(f"benchmark execution {ex.status}: {ex.error}: {ex.cause}")
    return {
        "items": n,
        "seconds": round(seconds, 4),
        "ms_per_item": round(1000 * seconds / n, 4),
        "state_transitions": ex.state_transitions(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one run per size")
    ap.add_argument("--workers", type=int, default=64, help="Interpreter max_workers (Map thread cap)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    repeat = 1 if args.quick else max(1, args.repeat)
    out: dict = {"target_ms_per_item": TARGET_MS, "max_workers": args.workers, "quick": args.quick}
    modes = ("distributed",) if args.quick else ("distributed", "inline")
    for mode in modes:
        out[mode] = {}
        for n in SIZES:
            runs = [run_once(mode == "distributed", n, args.workers) for _ in range(repeat)]
            out[mode][str(n)] = min(runs, key=lambda r: r["seconds"])
    out["meets_target"] = all(
        out[m][str(n)]["ms_per_item"] <= TARGET_MS for m in modes for n in (1000, 10000)
    )
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
