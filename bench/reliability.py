"""Reliability figures (issue 10): hostile input, kill -9, outages and shuffled backlogs; prints JSON.

Four experiments, each reporting what was tried and what was lost or corrupted (every loss,
duplicate, mismatch and defect figure must be 0):

- ``cli_fuzz``: every ``isrflow`` command with bad values for each parameter (the cases of
  tests/reliability/test_cli_fuzz.py): cases tried, defects (a traceback, a non-zero exit
  without an ``error`` line, files left by a refused command, temporary files);
- ``kill9``: ``isrflow run process-visit`` killed with SIGKILL at random points ``--kills``
  times, each kill followed by ``isrflow rerun --failed`` (tests/reliability/crash_loop.py):
  orphan processes, output rows lost or duplicated, registered files whose sha256 no longer
  matches, unregistered or temporary files left;
- ``outage``: a registry outage of ``--outage-h`` hours (longer than every redelivery budget)
  in front of the local queue and the real writer handler, on an injected clock: rows applied,
  dead-lettered and rejected;
- ``shuffled_backlog``: bench/backlog.py's children-before-parents backlog (``--exposures`` x 10
  raws and their parents) through the template's give-up count: rows applied and lost.

Usage: python bench/reliability.py [--kills 20] [--exposures 1000] [--outage-h 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "reliability"), str(ROOT / "tests" / "process_visit")]


def fuzz_figures(tmp: Path) -> dict:
    from test_cli_fuzz import make_world, run_fuzz

    start = time.perf_counter()
    tried, defects = run_fuzz(*make_world(tmp))
    return {
        "cases": tried,
        "defects": len(defects),
        "defect_lines": defects[:10],
        "wall_s": round(time.perf_counter() - start, 1),
    }


def kill9_figures(tmp: Path, kills: int) -> dict:
    from crash_loop import crash_loop
    from visit_helpers import CALIB_COLLECTION, make_repo

    repo = make_repo(tmp, detectors=(0, 1, 2, 3), science=3)
    start = time.perf_counter()
    figures = crash_loop(
        repo.root,
        "instrument = 'Generic'",
        ["Generic/raw/all"],
        CALIB_COLLECTION,
        quanta=12,
        kills=kills,
        seed=20261207,
        max_delay_s=5.0,
    )
    out = asdict(figures)
    out["problems"] = out["problems"][:10]
    out["wall_s"] = round(time.perf_counter() - start, 1)
    return out


def outage_figures(tmp: Path, hours: float) -> dict:
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
    from isrflow.model.errors import RegistryUnavailableError
    from isrflow.registry import Registry

    url = f"sqlite:///{tmp / 'registry.sqlite3'}"
    registry = Registry.open(url, tmp / "datastore", create=True)
    registry.apply([instrument()])
    os.environ["ISRFLOW_REGISTRY_URL"] = url
    os.environ.pop("ISRFLOW_REGISTRY_SECRET_ARN", None)
    clock = Clock()
    queue = writer_setup(tmp, ProcessEnv(), clock)
    outage_end = T0 + hours * 3600.0
    bodies = backlog(exposures=20, detectors=10, seed=3)

    def writer(event: dict) -> dict:
        if clock() < outage_end:
            raise RegistryUnavailableError("registry database unreachable: connection refused")
        return writer_app.lambda_handler(event)

    queue.send(bodies)
    poller = poller_for(queue, clock, writer, batch_s=1.0, batch_size=100)
    run_until_empty(queue, poller, clock)
    applied = len(registry.query_datasets("raw", [RAW_RUN]))
    out = {
        "outage_s": hours * 3600.0,
        "messages": len(bodies),
        "raws_expected": 200,
        "raws_applied": applied,
        "dead_lettered": queue.counts()["dead_letter"],
        "rejected": len(registry.rejects()),
        "lost": 200 - applied,
        "applied_s_after_recovery": round(clock() - outage_end, 1),
    }
    registry.close()
    return out


def backlog_figures(exposures: int) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "backlog.py"),
            "--exposures",
            str(exposures),
            "--batch",
            "1000",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--exposures", type=int, default=1000, help="shuffled backlog: exposures x 10 raws")
    parser.add_argument("--outage-h", type=float, default=2.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="isrflow-reliability-"))
    try:
        figures = {}
        for name, run in (
            ("cli_fuzz", lambda d: fuzz_figures(d)),
            ("kill9", lambda d: kill9_figures(d, args.kills)),
            ("outage", lambda d: outage_figures(d, args.outage_h)),
            ("shuffled_backlog", lambda d: backlog_figures(args.exposures)),
        ):
            folder = tmp / name
            folder.mkdir()
            figures[name] = run(folder)
            print(f"{name}: done", file=sys.stderr, flush=True)
        k, f = figures["kill9"], figures["cli_fuzz"]
        figures["summary"] = {
            "cli_cases": f["cases"],
            "kills": k["kills"],
            "queued_messages": figures["outage"]["messages"] + figures["shuffled_backlog"]["messages"],
            "defects": f["defects"] + len(k["problems"]) + k["orphan_processes"],
            "rows_lost": k["rows_lost"] + figures["outage"]["lost"] + figures["shuffled_backlog"]["lost"],
            "rows_duplicated": k["rows_duplicated"],
            "checksum_mismatches": k["checksum_mismatches"],
        }
        print(json.dumps(figures, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
