"""The public objects of a run: :class:`Execution` and :class:`MapRun`, with their status names."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from isrflow.local.asl.definition import StateMachine
from isrflow.local.asl.history import (
    History,
    compact_json,
    count_state_transitions,
    to_datetime,
)
from isrflow.local.asl.states import (
    Graph,
)

RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED = "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"


# --------------------------------------------------------------------------- public objects


class _Timed:
    """``start_date``/``stop_date`` (UTC datetimes) of something that keeps epoch seconds."""

    start_ts: float
    stop_ts: float | None

    @property
    def start_date(self) -> datetime:
        return to_datetime(self.start_ts)

    @property
    def stop_date(self) -> datetime | None:
        return None if self.stop_ts is None else to_datetime(self.stop_ts)


class MapRun(_Timed):
    """A Distributed Map run: its child executions and counters (cf. DescribeMapRun)."""

    def __init__(
        self,
        arn: str,
        execution_arn: str,
        state_name: str,
        label: str,
        max_concurrency: int,
        total: int,
        start: float,
    ):
        self.map_run_arn = arn
        self.execution_arn = execution_arn
        self.state_name = state_name
        self.label = label
        self.max_concurrency = max_concurrency
        self.status = RUNNING
        self.start_ts = start
        self.stop_ts: float | None = None
        self.executions: list[Execution | None] = [None] * total
        self.results_written = 0  # child results exported by a ResultWriter

    def counts(self) -> dict:
        c = {"pending": 0, "running": 0, "succeeded": 0, "failed": 0, "timedOut": 0, "aborted": 0}
        key = {
            RUNNING: "running",
            SUCCEEDED: "succeeded",
            FAILED: "failed",
            TIMED_OUT: "timedOut",
            ABORTED: "aborted",
        }
        for ex in self.executions:
            c["pending" if ex is None else key[ex.status]] += 1
        c["total"] = len(self.executions)
        c["resultsWritten"] = self.results_written
        c["failuresNotRedrivable"] = 0
        c["pendingRedrive"] = 0
        return c

    def describe(self) -> dict:
        counts = self.counts()
        out = {
            "mapRunArn": self.map_run_arn,
            "executionArn": self.execution_arn,
            "status": self.status,
            "startDate": self.start_date,
            "maxConcurrency": self.max_concurrency,
            "toleratedFailurePercentage": 0.0,
            "toleratedFailureCount": 0,
            "itemCounts": dict(counts),
            "executionCounts": dict(counts),
            "redriveCount": 0,
        }
        if self.stop_ts is not None:
            out["stopDate"] = self.stop_date
        return out


class Execution(_Timed):
    """One execution (top level, or a Distributed Map child). Fields follow DescribeExecution:
    ``execution_arn, state_machine_arn, name, status, start_date, stop_date, input, output,
    error, cause, map_run_arn``; ``history`` is the GetExecutionHistory event list."""

    def __init__(
        self,
        arn: str,
        state_machine_arn: str,
        name: str,
        input: Any,
        start: float,
        max_history_events: int | None,
        machine: StateMachine | None = None,
        graph: Graph | None = None,
        map_run_arn: str | None = None,
    ):
        self.execution_arn = arn
        self.state_machine_arn = state_machine_arn
        self.name = name
        self.input = input
        self.machine = machine
        if graph is None:
            if machine is None:
                raise ValueError("an Execution runs a state machine or a graph (a Map's ItemProcessor)")
            graph = machine.graph
        self.graph: Graph = graph
        self.map_run_arn = map_run_arn
        self.status = RUNNING
        self.output: Any = None
        self.error: str | None = None
        self.cause: str | None = None
        self.start_ts = start
        self.stop_ts: float | None = None
        self.map_runs: list[MapRun] = []
        self._history = History(max_history_events)
        self._stop_event = threading.Event()
        self._done = threading.Event()
        self._stop_reason: tuple[str | None, str | None] = (None, None)
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<Execution {self.name!r} {self.status}>"

    @property
    def history(self) -> list[dict]:
        return self._history.events()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Execution:
        """Block until the execution has ended (or ``timeout`` seconds); returns self."""
        self._done.wait(timeout)
        return self

    def stop(self, error: str | None = None, cause: str | None = None) -> None:
        """Abort the execution (cf. StopExecution): it ends ABORTED at its next state
        transition; a Wait or retry back-off in progress is interrupted. Non-blocking."""
        if not self._done.is_set():
            self._stop_reason = (error, cause)
            self._stop_event.set()

    def children(self) -> list[Execution]:
        """Distributed Map child executions started by this execution (all map runs)."""
        return [c for run in self.map_runs for c in run.executions if c is not None]

    def state_transitions(self, include_children: bool = True) -> int:
        """State transitions (the Standard billing unit) — see :func:`count_state_transitions`."""
        n = count_state_transitions(self.history)
        if include_children:
            n += sum(c.state_transitions(True) for c in self.children())
        return n

    def describe(self) -> dict:
        """A DescribeExecution-shaped dict (input/output as JSON text)."""
        d = {
            "executionArn": self.execution_arn,
            "stateMachineArn": self.state_machine_arn,
            "name": self.name,
            "status": self.status,
            "startDate": self.start_date,
            "input": compact_json(self.input),
            "inputDetails": {"included": True},
            "redriveCount": 0,
        }
        if self.stop_ts is not None:
            d["stopDate"] = self.stop_date
        if self.status == SUCCEEDED:
            d["output"] = compact_json(self.output)
            d["outputDetails"] = {"included": True}
        if self.error is not None:
            d["error"] = self.error
        if self.cause is not None:
            d["cause"] = self.cause
        if self.map_run_arn:
            d["mapRunArn"] = self.map_run_arn
        return d
