"""Defect 7: ``kill -9`` of a run leaves no orphan process, a findable ABORTED execution whose
messages are applied at once, and a rerun that completes it with nothing lost or left over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from crash_loop import crash_loop, descendants, running
from visit_helpers import CALIB_COLLECTION, make_repo

from isrflow.local.processes import ProcessIdentity
from isrflow.local.queue import LocalQueue
from isrflow.local.records import ABORTED_ERROR, ExecutionRecord, list_records, load_record, record_path

KILLS = 20


def _dead_identity() -> ProcessIdentity:
    """The identity of a process that has exited."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from isrflow.local.processes import ProcessIdentity as P; print(P.current().token())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    identity = ProcessIdentity.parse(proc.stdout.strip())
    assert identity is not None and identity.is_dead()
    return identity


def test_kill_9_at_random_points_then_rerun(tmp_path):
    repo = make_repo(tmp_path, detectors=(0, 1, 2, 3), science=3)
    figures = crash_loop(
        repo.root,
        "instrument = 'Generic'",
        ["Generic/raw/all"],
        CALIB_COLLECTION,
        quanta=12,
        kills=KILLS,
        seed=20261207,
        max_delay_s=5.0,
    )
    assert figures.problems == []
    assert figures.kills == KILLS
    assert (
        figures.orphan_processes,
        figures.rows_lost,
        figures.rows_duplicated,
        figures.checksum_mismatches,
        figures.leftover_files,
    ) == (0, 0, 0, 0, 0)


def test_record_of_a_killed_runtime_reads_aborted(tmp_path):
    live = ExecutionRecord(
        execution_arn="arn:aws:states:local:000000000000:execution:PV:live",
        state_machine_arn="arn:aws:states:local:000000000000:stateMachine:PV",
        name="live",
        status="RUNNING",
        start_date="2026-12-07T00:00:00Z",
        state_transitions=0,
        state_transitions_top=0,
        owner=ProcessIdentity.current().token(),
    )
    dead = live.model_copy(
        update={
            "execution_arn": live.execution_arn.replace(":live", ":dead"),
            "name": "dead",
            "owner": _dead_identity().token(),
        }
    )
    for record in (live, dead):
        path = record_path(tmp_path, "PV", record.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(record.model_dump_json())
    assert load_record(tmp_path, "live").status == "RUNNING"
    aborted = load_record(tmp_path, "dead")
    assert (aborted.status, aborted.error) == ("ABORTED", ABORTED_ERROR)
    assert {r.name: r.status for r in list_records(tmp_path)} == {"live": "RUNNING", "dead": "ABORTED"}


def test_execution_is_recorded_before_its_first_state(local_repo):
    from visit_helpers import visit_input

    from isrflow.local.runtime import LocalRuntime

    seen = {}
    with LocalRuntime(local_repo.root, processes=1) as runtime:
        original = runtime.recorder.begin

        def spy(execution):
            path = original(execution)
            seen["record"] = ExecutionRecord.model_validate_json(path.read_bytes())
            seen["history"] = list(execution.history)
            return path

        runtime.recorder.begin = spy
        execution = runtime.run("ProcessVisitStateMachine", visit_input("out/recorded"), name="recorded")
    assert execution.status == "SUCCEEDED"
    assert seen["record"].status == "RUNNING" and seen["record"].owner == ProcessIdentity.current().token()
    assert not any(e.get("type", "").endswith("StateEntered") for e in seen["history"])
    assert load_record(local_repo.root, "recorded").status == "SUCCEEDED"


def test_messages_received_by_a_killed_process_are_released(tmp_path):
    queue = LocalQueue(tmp_path / "q.sqlite3", "registry", visibility_timeout=900, max_receive_count=5)
    queue.send(["a", "b", "c"])
    script = textwrap.dedent(f"""
        import sys, time
        from isrflow.local.queue import LocalQueue
        q = LocalQueue({str(tmp_path / "q.sqlite3")!r}, "registry", visibility_timeout=900, max_receive_count=5)
        print(len(q.receive(2)), flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "2"
    assert queue.release_abandoned() == 0  # its receiver is alive: nothing to release
    mine = queue.receive(1)  # received by this (live) process: stays hidden
    child.kill()
    child.wait()
    assert queue.release_abandoned() == 2
    again = queue.receive(10)
    assert sorted(m.body for m in again) == sorted({"a", "b", "c"} - {mine[0].body})
    assert all(m.receive_count == 1 for m in again)  # the crash did not count towards the dead-letter queue


@pytest.mark.parametrize("kind", ["pool", "task"])
def test_children_end_with_their_parent(tmp_path, kind):
    """A Lambda pool worker (a fork server's child) and a "Fargate" task subprocess die with the
    process that started them."""
    if kind == "pool":
        body = """
            from isrflow.local.lambdas import LambdaPool, LocalFunction
            pool = LambdaPool(2)
            fn = LocalFunction(name="sleepy", handler_file=handler, handler_attr="handler", timeout_s=120)
            futures = [pool.submit(fn, {}) for _ in range(2)]
        """
    else:
        body = """
            import subprocess, threading
            from functools import partial
            from isrflow.local.processes import die_with_parent
            t = threading.Thread(target=lambda: subprocess.Popen(["sleep", "120"],
                                 preexec_fn=partial(die_with_parent, os.getpid())).wait(), daemon=True)
            t.start()
        """
    handler = tmp_path / "sleepy.py"
    handler.write_text("import time\ndef handler(event, context):\n    time.sleep(120)\n")
    script = (
        f"import os, time\nhandler = {str(handler)!r}\n"
        + textwrap.dedent(body)
        + "print('ready', flush=True)\ntime.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30
    want = 3 if kind == "pool" else 1  # fork server + 2 workers (+ resource tracker), or the task
    while len(descendants(parent.pid)) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    family = descendants(parent.pid)
    assert len(family) >= want
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while running(family) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = running(family)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []
