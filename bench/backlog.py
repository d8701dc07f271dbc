"""Shuffled-backlog benchmark (defect 4 of issue 10); prints JSON.

A backlog of registry messages in random order (children before parents: detector and
exposure records and raws of ``--exposures`` x 10 detectors; 55,000 messages by default) goes
through the local queue (900 s visibility, maxReceiveCount 5, the template's dead-letter
queue), the local event source (``--batch`` messages per batch, 5,000 as in the template) and
the real registry writer handler with the template's give-up count (4), on an injected clock
where each writer batch takes ``--batch-s`` seconds (10 s: a slow writer). Figures: rows
applied, lost (rejected or dead-lettered), batches, simulated and wall seconds. All must end
with 0 lost.

Usage: python bench/backlog.py [--exposures 5000] [--batch 5000] [--batch-s 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "reliability")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exposures", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--batch-s", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    import os

    from queue_backlog import (
        RAW_RUN,
        T0,
        Clock,
        ProcessEnv,
        backlog,
        instrument,
        poller_for,
        run_until_empty,
        writer_setup,
    )

    from functions.registry_writer import app as writer_app
    from isrflow.registry import Registry

    tmp = Path(tempfile.mkdtemp(prefix="isrflow-backlog-"))
    try:
        url = f"sqlite:///{tmp / 'registry.sqlite3'}"
        registry = Registry.open(url, tmp / "datastore", create=True)
        registry.apply([instrument()])
        os.environ["ISRFLOW_REGISTRY_URL"] = url
        os.environ.pop("ISRFLOW_REGISTRY_SECRET_ARN", None)
        clock = Clock()
        queue = writer_setup(tmp, ProcessEnv(), clock)
        bodies = backlog(args.exposures, 10, args.seed)
        queue.send(bodies)
        poller = poller_for(
            queue, clock, writer_app.lambda_handler, batch_s=args.batch_s, batch_size=args.batch
        )
        start = time.perf_counter()
        run_until_empty(queue, poller, clock)
        wall = time.perf_counter() - start
        raws = len(registry.query_datasets("raw", [RAW_RUN]))
        rejected = len(registry.rejects())
        dead = queue.counts()["dead_letter"]
        print(
            json.dumps(
                {
                    "messages": len(bodies),
                    "raws_expected": args.exposures * 10,
                    "raws_applied": raws,
                    "rejected": rejected,
                    "dead_lettered": dead,
                    "lost": args.exposures * 10 - raws + dead,
                    "batches": poller.batches,
                    "simulated_s": round(clock() - T0, 1),
                    "wall_s": round(wall, 1),
                    "messages_per_s": round(len(bodies) / wall),
                }
            )
        )
        registry.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
