"""Test and bench helper: ``kill -9`` the ``isrflow`` CLI at random points of runs, rerun, check.

Each cycle starts ``isrflow run process-visit`` into a new output run; every kill is followed
by ``isrflow rerun --failed`` of the execution the kill left ABORTED (found with ``isrflow
status --repo``), itself killed at a random point, and so on until an attempt runs to the end.
After every kill: the process's descendants (Lambda pool workers, the fork server) are gone and
every registered file still matches its checksum. After every completed cycle: the output run
holds exactly one output per planned quantum and ``isrflow registry verify --strict`` finds
nothing (no missing, mismatched or shared file, no unregistered or temporary file).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ISRFLOW = [str(Path(sys.executable).with_name("isrflow"))]


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def running(pids: list[int]) -> list[int]:
    """The pids that are still running (zombies are dead: they only wait to be reaped)."""
    alive = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        if stat[stat.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X"):
            alive.append(pid)
    return alive


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*ISRFLOW, *args], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"isrflow {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def executions(repo: Path) -> list[dict]:
    return json.loads(cli("status", "--repo", str(repo), "--json").stdout)


def verify(repo: Path, strict: bool) -> dict:
    proc = cli(
        "registry", "verify", "--repo", str(repo), "--json", *(["--strict"] if strict else []), check=False
    )
    return json.loads(proc.stdout)


@dataclass
class CrashFigures:
    kills: int = 0
    cycles: int = 0
    completed_before_kill: int = 0
    orphan_processes: int = 0
    rows_lost: int = 0
    rows_duplicated: int = 0
    checksum_mismatches: int = 0
    leftover_files: int = 0
    problems: list[str] = field(default_factory=list)


def crash_loop(
    repo: Path,
    where: str,
    collections: list[str],
    calib_collection: str,
    quanta: int,
    *,
    kills: int = 20,
    seed: int = 7,
    max_delay_s: float = 5.0,
    workers: int = 2,
) -> CrashFigures:
    """Kill ``kills`` attempts at random points (uniform in [0.2, ``max_delay_s``] s after start),
    rerunning after each; ``quanta`` is how many outputs a complete run has."""
    rng = random.Random(seed)
    figures = CrashFigures()
    log = repo.parent / "crash-loop.log"

    def start_cycle() -> list[str]:
        figures.cycles += 1
        run = f"crash/run{figures.cycles}"
        return [
            "run",
            "process-visit",
            "--repo",
            str(repo),
            "--where",
            where,
            "--output-run",
            run,
            "--input-collections",
            *collections[:1],
            "--calib-collection",
            calib_collection,
            "--cluster-size",
            "1",
            "--workers",
            str(workers),
        ]

    def finish_cycle(run: str) -> None:
        outputs = json.loads(
            cli("datasets", "--repo", str(repo), "--type", "postISRCCD", "--collection", run, "--json").stdout
        )
        keys = [json.dumps(o["data_id"], sort_keys=True) for o in outputs]
        figures.rows_lost += max(0, quanta - len(set(keys)))
        figures.rows_duplicated += len(keys) - len(set(keys))
        report = verify(repo, strict=True)
        figures.checksum_mismatches += report["counts"]["mismatched"] + report["counts"]["missing"]
        figures.leftover_files += report["counts"]["unregistered"] + report["counts"]["temporary"]
        if not report["ok"]:
            figures.problems += [f"{p['kind']}: {p['uri']} {p['detail']}" for p in report["problems"]]

    command = start_cycle()
    run = command[command.index("--output-run") + 1]
    cycle: set[str] = set()  # executions recorded in this cycle
    while figures.kills < kills:
        before = {e["name"] for e in executions(repo)}
        with open(log, "a") as out:
            proc = subprocess.Popen([*ISRFLOW, *command], stdout=out, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=rng.uniform(0.2, max_delay_s))
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:  # it ended before its kill: the cycle is complete
            if code != 0:
                figures.problems.append(f"isrflow {' '.join(command[:2])} exited {code} (see {log})")
                return figures
            figures.completed_before_kill += 1
            finish_cycle(run)
            command, cycle = start_cycle(), set()
            run = command[command.index("--output-run") + 1]
            continue
        family = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        figures.kills += 1
        deadline = time.monotonic() + 10
        while running(family) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = running(family)
        figures.orphan_processes += len(left)
        for pid in left:  # do not leave them to the next test
            os.kill(pid, signal.SIGKILL)
        report = verify(repo, strict=False)  # registered files match at every instant
        figures.checksum_mismatches += report["counts"]["mismatched"] + report["counts"]["missing"]
        if not report["ok"]:
            figures.problems += [
                f"after kill {figures.kills}: {p['kind']}: {p['uri']}" for p in report["problems"]
            ]
        records = executions(repo)
        new = [e for e in records if e["name"] not in before]
        cycle |= {e["name"] for e in new}
        latest = max(new, key=lambda e: e["start"]) if new else None
        if latest is not None and latest["status"] == "SUCCEEDED":  # it ended just before the kill
            finish_cycle(run)
            command, cycle = start_cycle(), set()
            run = command[command.index("--output-run") + 1]
            continue
        if latest is not None and latest["status"] != "ABORTED":
            figures.problems.append(f"{latest['name']} is {latest['status']} after a kill")
            return figures
        aborted = [e for e in records if e["name"] in cycle and e["status"] == "ABORTED"]
        if aborted:  # rerun the newest (killed before its rerun recorded anything: the same one again)
            target = max(aborted, key=lambda e: e["start"])
            command = ["rerun", target["name"], "--failed", "--repo", str(repo), "--workers", str(workers)]
        # else: killed before the cycle's first execution was recorded: start it again
    # finish: the last attempt runs to the end
    proc = cli(*command, check=False)
    with open(log, "a") as out:
        out.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        figures.problems.append(
            f"final isrflow {' '.join(command[:2])} exited {proc.returncode}: {proc.stderr[-500:]}"
        )
    finish_cycle(run)
    return figures
