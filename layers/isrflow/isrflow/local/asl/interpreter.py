"""The interpreter: runs a compiled :class:`StateMachine` to completion.

Execution model
---------------
- One execution runs on one thread (the caller's, or a background thread with
  ``wait=False``). A Parallel state runs its branches on threads of their own; a Map state
  runs its iterations on at most ``min(MaxConcurrency or max_workers, max_workers)``
  worker threads created for that Map and joined when it ends (no shared pool, so nested
  Maps cannot deadlock). ``MaxConcurrency: 1`` runs the iterations in order on the
  calling thread.
- Shared mutable state: each execution's history (appended under its own lock), the
  interpreter's execution registry and RNG (each under a lock). Nothing else is shared
  between threads; data flowing between states is never mutated in place (ResultPath copies
  the containers along its path) and every task gets a JSON round-tripped copy of its
  parameters, so integrations may run handlers in other processes.
- Time comes only from the injected clock: Wait states and retry back-offs call
  ``clock.sleep``; a Task whose ``invoke`` call took longer than its TimeoutSeconds (as
  measured by the clock) fails with ``States.Timeout`` and its result is discarded. The
  execution-level TimeoutSeconds is checked at every state transition and during sleeps.

Error semantics (AWS where AWS and the specification differ)
------------------------------------------------------------
- A path that cannot be applied (InputPath, Parameters, ResultSelector, ResultPath,
  OutputPath, ItemsPath, Choice variables, ...) fails the state with ``States.Runtime``,
  which — with ``States.DataLimitExceeded`` — is neither retried nor caught (as on AWS).
- ``States.TaskFailed`` matches every error except ``States.Timeout``; ``States.ALL``
  matches everything catchable.
- A failed inline Map iteration or Parallel branch fails the state with that iteration's
  error and cause; a failed Distributed Map child execution fails the Map with
  ``States.ExceedToleratedFailureThreshold`` (the tolerated failure is 0: catch per item).
- Task TimeoutSeconds has no default (AWS), not the 60 s of the specification.
- Payloads: a task's parameters and result, a Map/Parallel result, every state's output,
  each child input and the execution output are limited to ``payload_limit_bytes`` (262,144
  UTF-8 bytes of JSON by default) -> ``States.DataLimitExceeded`` (neither retried nor caught).
  A Distributed Map without a ResultWriter always collects its children's outputs into one
  array, and that array is measured *before* ResultPath/OutputPath: ``ResultPath: null`` does
  not exempt it (as on AWS). With a ResultWriter the results go to S3 (``result_writer``:
  ``<Prefix>/<map run id>/manifest.json`` and ``SUCCEEDED_0.json`` / ``FAILED_0.json`` /
  ``PENDING_0.json``) and the state's result is ``{"MapRunArn", "ResultWriterDetails":
  {"Bucket", "Key"}}`` (see :mod:`.result_writer`).
- History: more than ``max_history_events`` (25,000) events fails the execution with
  ``States.Runtime`` (AWS fails such a Standard execution; the error name is ours).
"""

from __future__ import annotations

import itertools
import json
import random
import re
import threading
import traceback
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from isrflow.local.asl.choice import ChoiceRuntimeError, parse_timestamp
from isrflow.local.asl.clock import Clock, RealClock
from isrflow.local.asl.definition import (
    ChoiceState,
    FailState,
    Graph,
    MapState,
    ParallelState,
    PassState,
    State,
    StateMachine,
    SucceedState,
    TaskState,
    WaitState,
    error_matches,
)
from isrflow.local.asl.errors import (
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    IntegrationNotConfigured,
    TaskFailure,
)
from isrflow.local.asl.history import History, JsonText, count_state_transitions, to_datetime
from isrflow.local.asl.integrations import Integrations, TaskContext, is_lambda_arn, split_resource
from isrflow.local.asl.intrinsics import Call, IntrinsicError
from isrflow.local.asl.jsonpath import MISSING, ROOT, Path, PathNotFound, PathSetError
from isrflow.local.asl.result_writer import PENDING, ChildRecord, export_files
from isrflow.local.asl.template import TemplateEvalError

UNCATCHABLE = frozenset({"States.Runtime", "States.DataLimitExceeded"})
PAYLOAD_LIMIT = 262_144
EXCEEDED_CAUSE = "The specified tolerated failure threshold was exceeded"
_NAME_OK = re.compile(r"^[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]{1,80}$")

RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED = "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"
_DISCARDED = object()


class _Failure(Exception):
    """A state (or iteration, branch, execution) failed with an ASL error."""

    def __init__(self, error: str | None, cause: str | None, prev: int = 0):
        self.error, self.cause, self.prev = error, cause, prev
        super().__init__(f"{error}: {cause}")


class _Abort(Exception):
    """The execution was stopped, or the enclosing Map/Parallel is cancelling its work."""


class _TimedOut(Exception):
    """The execution's TimeoutSeconds elapsed."""


def _error_of(exc: Exception) -> tuple[str, str]:
    """(error, cause) of an integration exception: its ``error``/``cause`` attributes when it
    has string ones (a TaskFailure look-alike, e.g. from another process), else its class
    name and message."""
    error = getattr(exc, "error", None)
    if isinstance(error, str) and error:
        cause = getattr(exc, "cause", None)
        return error, cause if isinstance(cause, str) else str(exc)
    return type(exc).__name__, str(exc)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _iso(ts: float) -> str:
    return to_datetime(ts).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- public objects


class MapRun:
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

    @property
    def start_date(self) -> datetime:
        return to_datetime(self.start_ts)

    @property
    def stop_date(self) -> datetime | None:
        return None if self.stop_ts is None else to_datetime(self.stop_ts)

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


class Execution:
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
        self.graph = graph if graph is not None else machine.graph
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
    def start_date(self) -> datetime:
        return to_datetime(self.start_ts)

    @property
    def stop_date(self) -> datetime | None:
        return None if self.stop_ts is None else to_datetime(self.stop_ts)

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
            "input": _dumps(self.input),
            "inputDetails": {"included": True},
            "redriveCount": 0,
        }
        if self.stop_ts is not None:
            d["stopDate"] = self.stop_date
        if self.status == SUCCEEDED:
            d["output"] = _dumps(self.output)
            d["outputDetails"] = {"included": True}
        if self.error is not None:
            d["error"] = self.error
        if self.cause is not None:
            d["cause"] = self.cause
        if self.map_run_arn:
            d["mapRunArn"] = self.map_run_arn
        return d


# --------------------------------------------------------------------------- run-time helpers


class _Run:
    """What the states of one execution share while it runs."""

    __slots__ = ("base_cancel", "clock", "deadline", "execution", "history", "interp", "timeout_aborts")

    def __init__(
        self,
        interp: Interpreter,
        execution: Execution,
        deadline: float | None,
        base_cancel: tuple[threading.Event, ...],
        timeout_aborts: bool = False,
    ):
        self.timeout_aborts = timeout_aborts  # the deadline is the parent's: reaching it aborts this one
        self.interp = interp
        self.execution = execution
        self.history = execution._history
        self.clock = interp.clock
        self.deadline = deadline
        self.base_cancel = base_cancel

    def event(self, event_type: str, details: dict | None, prev: int) -> int:
        return self.history.add(event_type, self.clock.now(), prev, details)

    def check(self, cancel: tuple[threading.Event, ...]) -> None:
        for e in cancel:
            if e.is_set():
                raise _Abort()
        if self.deadline is not None and self.clock.now() >= self.deadline:
            raise _Abort() if self.timeout_aborts else _TimedOut()
        if self.history.overflowed:
            raise _Failure(
                "States.Runtime",
                f"The execution reached the maximum number of events in its history "
                f"({self.history.max_events}).",
                len(self.history),
            )

    def sleep(self, seconds: float, cancel: tuple[threading.Event, ...]) -> None:
        timed_out = False
        if self.deadline is not None:
            remaining = self.deadline - self.clock.now()
            if seconds >= remaining:
                seconds, timed_out = max(0.0, remaining), True
        if isinstance(self.clock, RealClock) and len(cancel) > 1:
            end = self.clock.now() + seconds
            while not any(e.is_set() for e in cancel):
                left = end - self.clock.now()
                if left <= 0:
                    break
                cancel[0].wait(min(left, 0.1))
        else:
            self.clock.sleep(seconds, cancel[0] if cancel else None)
        if timed_out:
            raise _Abort() if self.timeout_aborts else _TimedOut()
        self.check(cancel)


class _Env:
    """Evaluation environment of a Payload Template / path: the lazily built Context Object."""

    __slots__ = ("_obj", "entered", "item", "retry_count", "run", "state_name")

    def __init__(self, run: _Run, state_name: str, entered: float, retry_count: int = 0, item: Any = None):
        self.run, self.state_name, self.entered, self.retry_count, self.item = (
            run,
            state_name,
            entered,
            retry_count,
            item,
        )
        self._obj = None

    @property
    def context_object(self) -> dict:
        if self._obj is None:
            ex = self.run.execution
            interp = self.run.interp
            obj = {
                "Execution": {
                    "Id": ex.execution_arn,
                    "Name": ex.name,
                    "StartTime": _iso(ex.start_ts),
                    "Input": ex.input,
                    "RoleArn": interp.role_arn,
                    "RedriveCount": 0,
                },
                "StateMachine": {"Id": ex.state_machine_arn, "Name": ex.state_machine_arn.split(":")[-1]},
                "State": {
                    "Name": self.state_name,
                    "EnteredTime": _iso(self.entered),
                    "RetryCount": self.retry_count,
                },
            }
            if self.item is not None:
                obj["Map"] = {"Item": {"Index": self.item[0], "Value": self.item[1]}}
            self._obj = obj
        return self._obj

    def new_uuid(self) -> str:
        return self.run.interp.new_uuid()


# --------------------------------------------------------------------------- the interpreter


class Interpreter:
    """Runs state machines.

    ``integrations``: carries out Task states (see :mod:`.integrations`).
    ``clock``: ``now()``/``sleep()`` (default real time; tests pass a FakeClock).
    ``item_reader``: ``(bucket, key) -> bytes`` for Distributed Map ItemReaders (s3:getObject).
    ``result_writer``: ``(bucket, key, body bytes) -> None`` for Distributed Map ResultWriters
    (s3:putObject); without one a ResultWriter fails with ``States.ResultWriterFailed``.
    ``max_workers``: cap on the threads of one Map state (MaxConcurrency 0 = this cap).
    ``seed``: seeds the RNG used for JitterStrategy FULL and States.UUID (deterministic runs).
    """

    def __init__(
        self,
        integrations: Integrations,
        *,
        clock: Clock | None = None,
        item_reader: Callable[[str, str], bytes] | None = None,
        result_writer: Callable[[str, str, bytes], None] | None = None,
        max_workers: int = 64,
        seed: int | None = None,
        region: str = "us-east-1",
        account: str = "123456789012",
        payload_limit_bytes: int | None = PAYLOAD_LIMIT,
        max_history_events: int | None = 25_000,
    ):
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self.integrations = integrations
        self.clock: Clock = clock or RealClock()
        self.item_reader = item_reader
        self.result_writer = result_writer
        self.max_workers = max_workers
        self.region = region
        self.account = account
        self.role_arn = f"arn:aws:iam::{account}:role/isrflow-local-stepfunctions"
        self.payload_limit_bytes = payload_limit_bytes
        self.max_history_events = max_history_events
        self._seeded = seed is not None
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._lock = threading.Lock()
        self._executions: dict[str, Execution] = {}
        self._map_runs: dict[str, MapRun] = {}
        self._handlers = {
            "Task": self._task,
            "Pass": self._pass,
            "Choice": self._choice,
            "Wait": self._wait,
            "Succeed": self._succeed,
            "Fail": self._fail,
            "Parallel": self._parallel,
            "Map": self._map,
        }

    # -- ARNs, randomness
    def state_machine_arn(self, machine: StateMachine) -> str:
        return machine.arn or f"arn:aws:states:{self.region}:{self.account}:stateMachine:{machine.name}"

    def new_uuid(self) -> str:
        if not self._seeded:
            return str(uuid.uuid4())
        with self._rng_lock:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _uniform(self, hi: float) -> float:
        with self._rng_lock:
            return self._rng.uniform(0, hi)

    # -- API
    def start_execution(
        self,
        machine: StateMachine,
        input: Any = None,
        name: str | None = None,
        *,
        wait: bool = True,
        before_start: Callable[[Execution], None] | None = None,
    ) -> Execution:
        """Start an execution of ``machine`` on ``input`` (a JSON-compatible value; default
        ``{}``). ``wait=True`` runs it to completion on this thread; ``wait=False`` runs it on
        a background thread (use ``Execution.wait()`` / ``stop()``). ``before_start(execution)``
        runs once the execution exists and before its first state (a local runtime records it
        there, so a crash at any later point leaves a record)."""
        if input is None:
            input = {}
        text = _dumps(input)  # raises TypeError for non-JSON input, as the API would reject it
        if self.payload_limit_bytes is not None and len(text.encode()) > self.payload_limit_bytes:
            raise ValueError(
                f"execution input is {len(text.encode())} bytes, over the "
                f"{self.payload_limit_bytes}-byte limit (States.DataLimitExceeded)"
            )
        input = json.loads(text)
        name = name or self.new_uuid()
        if not _NAME_OK.match(name):
            raise ValueError(
                f"invalid execution name {name!r}: 1-80 characters, no whitespace, brackets, "
                f'wildcards or any of " # % \\ ^ | ~ ` $ & , ; : /'
            )
        sm_arn = self.state_machine_arn(machine)
        arn = sm_arn.replace(":stateMachine:", ":execution:", 1) + ":" + name
        with self._lock:
            if arn in self._executions:
                raise ExecutionAlreadyExists(f"Execution Already Exists: '{arn}'")
            execution = Execution(
                arn, sm_arn, name, input, self.clock.now(), self.max_history_events, machine=machine
            )
            self._executions[arn] = execution
        deadline = None if machine.timeout_seconds is None else execution.start_ts + machine.timeout_seconds
        if before_start is not None:
            try:
                before_start(execution)
            except BaseException:
                with self._lock:
                    self._executions.pop(arn, None)
                raise
        if wait:
            self._execute(execution, deadline, ())
        else:
            t = threading.Thread(
                target=self._execute, args=(execution, deadline, ()), daemon=True, name=f"sfn-{name}"[:60]
            )
            execution._thread = t
            t.start()
        return execution

    def get_execution(self, execution_arn: str) -> Execution:
        try:
            return self._executions[execution_arn]
        except KeyError:
            raise ExecutionDoesNotExist(execution_arn) from None

    def describe_execution(self, execution_arn: str) -> dict:
        return self.get_execution(execution_arn).describe()

    def get_execution_history(self, execution_arn: str, reverse_order: bool = False) -> list[dict]:
        return self.get_execution(execution_arn)._history.events(reverse_order)

    def list_executions(
        self, state_machine_arn: str | None = None, status: str | None = None, map_run_arn: str | None = None
    ) -> list[Execution]:
        with self._lock:
            items = list(self._executions.values())
        return [
            e
            for e in items
            if (state_machine_arn is None or e.state_machine_arn == state_machine_arn)
            and (status is None or e.status == status)
            and (map_run_arn is None or e.map_run_arn == map_run_arn)
            and (map_run_arn is not None or e.map_run_arn is None)
        ]

    def describe_map_run(self, map_run_arn: str) -> dict:
        return self._map_runs[map_run_arn].describe()

    # -- running an execution
    def _execute(
        self, execution: Execution, deadline: float | None, extra_cancel: tuple, timeout_aborts: bool = False
    ) -> None:
        run = _Run(self, execution, deadline, (execution._stop_event,) + extra_cancel, timeout_aborts)
        prev = run.event(
            "ExecutionStarted",
            {"input": execution.input, "inputDetails": {"truncated": False}, "roleArn": self.role_arn},
            0,
        )
        try:
            output, prev = self._run_graph(execution.graph, execution.input, run, run.base_cancel, prev)
            if self.payload_limit_bytes is not None:
                self._check_size(_dumps(output), "the execution output", prev)
        except _Failure as f:
            run.event("ExecutionFailed", self._error_details(f.error, f.cause), f.prev)
            self._finish(execution, FAILED, error=f.error, cause=f.cause)
        except _Abort:
            err, cause = execution._stop_reason
            run.event("ExecutionAborted", self._error_details(err, cause), len(execution._history))
            self._finish(execution, ABORTED, error=err, cause=cause)
        except _TimedOut:
            cause = "The execution ran longer than its TimeoutSeconds"
            run.event(
                "ExecutionTimedOut", {"error": "States.Timeout", "cause": cause}, len(execution._history)
            )
            self._finish(execution, TIMED_OUT, error="States.Timeout", cause=cause)
        except Exception as exc:
            cause = "local interpreter error: " + "".join(traceback.format_exception(exc))
            run.event("ExecutionFailed", {"error": "States.Runtime", "cause": cause}, len(execution._history))
            self._finish(execution, FAILED, error="States.Runtime", cause=cause)
        else:
            run.event("ExecutionSucceeded", {"output": output, "outputDetails": {"truncated": False}}, prev)
            execution.output = output
            self._finish(execution, SUCCEEDED)
        finally:
            execution._done.set()

    def _finish(self, execution: Execution, status: str, error=None, cause=None) -> None:
        execution.error, execution.cause = error, cause
        execution.stop_ts = self.clock.now()
        execution.status = status  # last: a reader seeing the final status sees everything else

    @staticmethod
    def _error_details(error, cause) -> dict:
        d = {}
        if error is not None:
            d["error"] = error
        if cause is not None:
            d["cause"] = cause
        return d

    def _run_graph(self, graph: Graph, data: Any, run: _Run, cancel: tuple, prev: int) -> tuple[Any, int]:
        name = graph.start_at
        handlers = self._handlers
        while True:
            state = graph.states[name]
            run.check(cancel)
            entered = run.clock.now()
            prev = run.history.add(state.type + "StateEntered", entered, prev, {"name": name, "input": data})
            name, data, prev = handlers[state.type](state, data, run, cancel, prev, entered)
            if name is None:
                return data, prev

    # -- shared data-flow steps
    def _runtime(self, st: State, entered_id: int, message: str, prev: int) -> _Failure:
        return _Failure(
            "States.Runtime",
            f"An error occurred while executing the state '{st.name}' "
            f"(entered at the event id #{entered_id}). {message}",
            prev,
        )

    def _path(
        self, path: Path | None, data: Any, st: State, run: _Run, entered: float, entered_id: int, field: str
    ) -> Any:
        if path is ROOT:
            return data
        if path is None:
            return {}
        try:
            ctx = _Env(run, st.name, entered).context_object if path.context else MISSING
            return path.apply(data, ctx)
        except PathNotFound:
            raise self._runtime(
                st,
                entered_id,
                f"Invalid path '{path.text}' : No results for path: {path.text} ({field})",
                entered_id,
            ) from None

    def _template(self, tpl, data: Any, env: _Env, st: State, entered_id: int, prev: int) -> Any:
        try:
            return tpl.evaluate(data, env)
        except TemplateEvalError as exc:
            if exc.error == "States.Runtime":
                raise self._runtime(st, entered_id, exc.cause, prev) from None
            raise _Failure(exc.error, exc.cause, prev) from None

    def _check_size(self, text: str, what: str, prev: int) -> None:
        limit = self.payload_limit_bytes
        if limit is not None and len(text) * 4 > limit:
            n = len(text.encode("utf-8"))
            if n > limit:
                raise _Failure(
                    "States.DataLimitExceeded",
                    f"The state/task returned a result with a size exceeding the maximum number "
                    f"of bytes service limit ({what}: {n} bytes > {limit})",
                    prev,
                )

    def _finish_state(
        self, st: State, raw: Any, result: Any, run: _Run, entered: float, entered_id: int, prev: int
    ) -> tuple[str | None, Any, int]:
        """ResultSelector -> ResultPath -> OutputPath, then the StateExited event."""
        if st.result_path is None or result is _DISCARDED:
            output = raw
        else:
            if st.result_selector is not None:
                result = self._template(
                    st.result_selector, result, _Env(run, st.name, entered), st, entered_id, prev
                )
            output = self._result_path(st.result_path, raw, result, st, entered_id, prev)
        output = self._path(st.output_path, output, st, run, entered, entered_id, "OutputPath")
        if self.payload_limit_bytes is not None:
            self._check_size(_dumps(output), f"the output of state '{st.name}'", prev)
        prev = run.history.add(
            st.type + "StateExited", run.clock.now(), prev, {"name": st.name, "output": output}
        )
        return (None if st.end else st.next), output, prev

    def _result_path(
        self, path: Path | None, raw: Any, result: Any, st: State, entered_id: int, prev: int
    ) -> Any:
        if path is None:
            return raw
        if path is ROOT:
            return result
        try:
            return path.assign(raw, result)
        except PathSetError as exc:
            raise self._runtime(
                st,
                entered_id,
                f"Unable to apply ReferencePath {path.text} to input {_dumps(raw)[:1000]}: {exc}",
                prev,
            ) from None

    def _with_recovery(
        self,
        st: State,
        raw: Any,
        run: _Run,
        cancel: tuple,
        entered_id: int,
        entered: float,
        attempt: Callable[[int, int], tuple[Any, int]],
    ) -> tuple[str | None, Any, int]:
        """Run ``attempt(prev, retry_count)`` under the state's Retry and Catch policies."""
        prev = entered_id
        counts = [0] * len(st.retry)
        retries = 0
        while True:
            try:
                result, prev = attempt(prev, retries)
            except _Failure as f:
                prev = f.prev
                if f.error in UNCATCHABLE:
                    raise
                # the first retrier whose ErrorEquals matches decides; once its MaxAttempts are
                # used up, normal error handling (Catch) resumes — later retriers are not consulted
                k = next((k for k, r in enumerate(st.retry) if error_matches(r.error_equals, f.error)), None)
                if k is not None and counts[k] < st.retry[k].max_attempts:
                    r = st.retry[k]
                    delay = r.delay(counts[k])
                    if r.jitter_strategy == "FULL":
                        delay = self._uniform(delay)
                    counts[k] += 1
                    retries += 1
                    run.sleep(delay, cancel)
                    continue
                for c in st.catch:
                    if error_matches(c.error_equals, f.error):
                        error_output = {"Error": f.error}
                        if f.cause is not None:
                            error_output["Cause"] = f.cause
                        output = self._result_path(c.result_path, raw, error_output, st, entered_id, prev)
                        if self.payload_limit_bytes is not None:
                            self._check_size(_dumps(output), f"the output of state '{st.name}'", prev)
                        prev = run.history.add(
                            st.type + "StateExited",
                            run.clock.now(),
                            prev,
                            {"name": st.name, "output": output},
                        )
                        return c.next, output, prev
                raise
            return self._finish_state(st, raw, result, run, entered, entered_id, prev)

    # -- Task
    def _task(self, st: TaskState, raw: Any, run: _Run, cancel: tuple, entered_id: int, entered: float):
        effective = self._path(st.input_path, raw, st, run, entered, entered_id, "InputPath")
        timeout = st.timeout_seconds
        if st.timeout_seconds_path is not None:
            timeout = self._positive_int(
                st, st.timeout_seconds_path, effective, entered_id, "TimeoutSecondsPath"
            )
        heartbeat = st.heartbeat_seconds
        if st.heartbeat_seconds_path is not None:
            heartbeat = self._positive_int(
                st, st.heartbeat_seconds_path, effective, entered_id, "HeartbeatSecondsPath"
            )
        resource = st.resource
        plain_lambda = is_lambda_arn(resource)
        rtype, rname = split_resource(resource)
        ex = run.execution

        def attempt(prev: int, retry_count: int):
            env = _Env(run, st.name, entered, retry_count)
            params = (
                effective
                if st.parameters is None
                else self._template(st.parameters, effective, env, st, entered_id, prev)
            )
            try:
                text = _dumps(params)
            except (TypeError, ValueError) as exc:
                raise self._runtime(
                    st, entered_id, f"the task parameters are not JSON: {exc}", prev
                ) from None
            self._check_size(text, "the task parameters", prev)
            if plain_lambda:
                d = {"resource": resource, "input": JsonText(text)}
                if timeout:
                    d["timeoutInSeconds"] = timeout
                prev = run.history.add("LambdaFunctionScheduled", run.clock.now(), prev, d)
                prev = run.history.add("LambdaFunctionStarted", run.clock.now(), prev, None)
            else:
                d = {
                    "resourceType": rtype,
                    "resource": rname,
                    "region": self.region,
                    "parameters": JsonText(text),
                }
                if timeout:
                    d["timeoutInSeconds"] = timeout
                if heartbeat:
                    d["heartbeatInSeconds"] = heartbeat
                prev = run.history.add("TaskScheduled", run.clock.now(), prev, d)
                prev = run.history.add(
                    "TaskStarted", run.clock.now(), prev, {"resourceType": rtype, "resource": rname}
                )
            context = TaskContext(
                ex.execution_arn,
                ex.name,
                ex.state_machine_arn,
                st.name,
                retry_count,
                timeout,
                heartbeat,
                self.region,
                self.account,
            )
            error = cause = None
            started = run.clock.now()
            try:
                result = self.integrations.invoke(resource, json.loads(text), context)
            except TaskFailure as exc:
                error, cause = exc.error, exc.cause
            except IntegrationNotConfigured as exc:
                error, cause = "States.Runtime", str(exc)
            except Exception as exc:
                error, cause = _error_of(exc)
            if error is None and timeout is not None and run.clock.now() - started > timeout:
                error, cause = "States.Timeout", f"The task ran longer than its TimeoutSeconds ({timeout} s)"
            if error is None:
                try:
                    out_text = _dumps(result)
                except (TypeError, ValueError) as exc:
                    error, cause = "States.Runtime", f"the task result is not JSON: {exc}"
            if error is not None:
                if plain_lambda:
                    etype = "LambdaFunctionTimedOut" if error == "States.Timeout" else "LambdaFunctionFailed"
                    d = self._error_details(error, cause)
                else:
                    etype = "TaskTimedOut" if error == "States.Timeout" else "TaskFailed"
                    d = {"resourceType": rtype, "resource": rname, **self._error_details(error, cause)}
                prev = run.history.add(etype, run.clock.now(), prev, d)
                raise _Failure(error, cause, prev)
            self._check_size(out_text, "the task result", prev)
            d = {"output": JsonText(out_text), "outputDetails": {"truncated": False}}
            if plain_lambda:
                prev = run.history.add("LambdaFunctionSucceeded", run.clock.now(), prev, d)
            else:
                d.update(resourceType=rtype, resource=rname)
                prev = run.history.add("TaskSucceeded", run.clock.now(), prev, d)
            return json.loads(out_text), prev

        return self._with_recovery(st, raw, run, cancel, entered_id, entered, attempt)

    def _positive_int(self, st: State, path: Path, data: Any, entered_id: int, field: str) -> int:
        try:
            v = path.apply(data)
        except PathNotFound:
            raise self._runtime(st, entered_id, f"Invalid path '{path.text}' ({field})", entered_id) from None
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise self._runtime(
                st,
                entered_id,
                f"{field} '{path.text}' must select a positive integer, not {_dumps(v)}",
                entered_id,
            )
        return v

    # -- Pass, Choice, Wait, Succeed, Fail
    def _pass(self, st: PassState, raw: Any, run: _Run, cancel: tuple, entered_id: int, entered: float):
        effective = self._path(st.input_path, raw, st, run, entered, entered_id, "InputPath")
        if st.parameters is not None:
            effective = self._template(
                st.parameters, effective, _Env(run, st.name, entered), st, entered_id, entered_id
            )
        result = effective if st.result is MISSING else st.result
        return self._finish_state(st, raw, result, run, entered, entered_id, entered_id)

    def _choice(self, st: ChoiceState, raw: Any, run: _Run, cancel: tuple, entered_id: int, entered: float):
        effective = self._path(st.input_path, raw, st, run, entered, entered_id, "InputPath")
        ctx = _Env(run, st.name, entered).context_object if st.uses_context else MISSING
        target = None
        try:
            for rule in st.choices:
                if rule.matches(effective, ctx):
                    target = rule.next
                    break
        except ChoiceRuntimeError as exc:
            raise self._runtime(st, entered_id, str(exc), entered_id) from None
        if target is None:
            if st.default is None:
                raise _Failure(
                    "States.NoChoiceMatched", f"No Matches! (state '{st.name}' has no Default)", entered_id
                )
            target = st.default
        output = self._path(st.output_path, effective, st, run, entered, entered_id, "OutputPath")
        prev = run.history.add(
            "ChoiceStateExited", run.clock.now(), entered_id, {"name": st.name, "output": output}
        )
        return target, output, prev

    def _wait(self, st: WaitState, raw: Any, run: _Run, cancel: tuple, entered_id: int, entered: float):
        effective = self._path(st.input_path, raw, st, run, entered, entered_id, "InputPath")
        if st.seconds is not None:
            seconds = st.seconds
        elif st.seconds_path is not None:
            try:
                seconds = st.seconds_path.apply(effective)
            except PathNotFound:
                raise self._runtime(
                    st, entered_id, f"Invalid path '{st.seconds_path.text}' (SecondsPath)", entered_id
                ) from None
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
                raise self._runtime(
                    st,
                    entered_id,
                    f"SecondsPath must select a non-negative integer, not {_dumps(seconds)}",
                    entered_id,
                )
        else:
            ts = st.timestamp
            if ts is None:
                try:
                    value = st.timestamp_path.apply(effective)
                except PathNotFound:
                    raise self._runtime(
                        st, entered_id, f"Invalid path '{st.timestamp_path.text}' (TimestampPath)", entered_id
                    ) from None
                ts = parse_timestamp(value)
                if ts is None:
                    raise self._runtime(
                        st,
                        entered_id,
                        f"TimestampPath must select an RFC 3339 timestamp, not {_dumps(value)}",
                        entered_id,
                    )
            seconds = max(0.0, ts.timestamp() - run.clock.now())
        run.sleep(seconds, cancel)
        output = self._path(st.output_path, effective, st, run, entered, entered_id, "OutputPath")
        prev = run.history.add(
            "WaitStateExited", run.clock.now(), entered_id, {"name": st.name, "output": output}
        )
        return (None if st.end else st.next), output, prev

    def _succeed(self, st: SucceedState, raw: Any, run: _Run, cancel: tuple, entered_id: int, entered: float):
        effective = self._path(st.input_path, raw, st, run, entered, entered_id, "InputPath")
        output = self._path(st.output_path, effective, st, run, entered, entered_id, "OutputPath")
        prev = run.history.add(
            "SucceedStateExited", run.clock.now(), entered_id, {"name": st.name, "output": output}
        )
        return None, output, prev

    def _fail(self, st: FailState, raw: Any, run: _Run, cancel: tuple, entered_id: int, entered: float):
        env = _Env(run, st.name, entered)
        error, cause = st.error, st.cause
        if st.error_expr is not None:
            error = self._fail_field(st, st.error_expr, raw, env, entered_id, "ErrorPath")
        if st.cause_expr is not None:
            cause = self._fail_field(st, st.cause_expr, raw, env, entered_id, "CausePath")
        raise _Failure(error, cause, entered_id)

    def _fail_field(
        self, st: FailState, expr: Path | Call, raw: Any, env: _Env, entered_id: int, field: str
    ) -> str:
        try:
            if isinstance(expr, Path):
                v = expr.apply(raw, env.context_object if expr.context else MISSING)
            else:
                v = expr.evaluate(raw, env)
        except PathNotFound as exc:
            raise self._runtime(st, entered_id, f"Invalid path '{exc}' ({field})", entered_id) from None
        except IntrinsicError as exc:
            raise self._runtime(st, entered_id, f"{field}: {exc}", entered_id) from None
        if not isinstance(v, str):
            raise self._runtime(
                st, entered_id, f"{field} must resolve to a string, not {_dumps(v)}", entered_id
            )
        return v

    # -- Parallel and Map
    def _run_all(
        self, n: int, work: Callable[[int], None], concurrency: int, stops: tuple[threading.Event, ...]
    ) -> None:
        """``work(i)`` for every i (it must not raise), on at most ``concurrency`` threads
        (0 = ``max_workers``); no new item starts once any of ``stops`` is set."""
        if n == 0:
            return
        workers = min(n, concurrency or self.max_workers, self.max_workers)

        def stopped() -> bool:
            for e in stops:
                if e.is_set():
                    return True
            return False

        if workers == 1:
            for i in range(n):
                if stopped():
                    return
                work(i)
            return
        counter = itertools.count()

        def loop():
            while not stopped():
                i = next(counter)
                if i >= n:
                    return
                work(i)

        threads = [threading.Thread(target=loop, daemon=True, name=f"sfn-worker-{k}") for k in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _parallel(
        self, st: ParallelState, raw: Any, run: _Run, cancel: tuple, entered_id: int, entered: float
    ):
        effective = self._path(st.input_path, raw, st, run, entered, entered_id, "InputPath")

        def attempt(prev: int, retry_count: int):
            env = _Env(run, st.name, entered, retry_count)
            branch_input = (
                effective
                if st.parameters is None
                else self._template(st.parameters, effective, env, st, entered_id, prev)
            )
            started = run.history.add("ParallelStateStarted", run.clock.now(), prev, None)
            n = len(st.branches)
            results: list = [None] * n
            stop = threading.Event()
            outcome = _Outcome()
            inner_cancel = cancel + (stop,)

            def work(i: int) -> None:
                try:
                    results[i], _ = self._run_graph(st.branches[i], branch_input, run, inner_cancel, started)
                except BaseException as exc:
                    outcome.record(exc)
                    stop.set()

            self._run_all(n, work, n, inner_cancel)
            outcome.reraise_control()
            run.check(cancel)  # stopped (or timed out) before every branch had started
            if outcome.failure is not None:
                f = outcome.failure
                prev = run.history.add("ParallelStateFailed", run.clock.now(), len(run.history), None)
                raise _Failure(f.error, f.cause, prev)
            prev = run.history.add("ParallelStateSucceeded", run.clock.now(), len(run.history), None)
            if self.payload_limit_bytes is not None and st.result_path is not None:
                self._check_size(_dumps(results), "the Parallel state's result", prev)
            return results, prev

        return self._with_recovery(st, raw, run, cancel, entered_id, entered, attempt)

    def _map(self, st: MapState, raw: Any, run: _Run, cancel: tuple, entered_id: int, entered: float):
        effective = self._path(st.input_path, raw, st, run, entered, entered_id, "InputPath")
        concurrency = st.max_concurrency
        if st.max_concurrency_path is not None:
            try:
                concurrency = st.max_concurrency_path.apply(effective)
            except PathNotFound:
                raise self._runtime(
                    st,
                    entered_id,
                    f"Invalid path '{st.max_concurrency_path.text}' (MaxConcurrencyPath)",
                    entered_id,
                ) from None
            if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 0:
                raise self._runtime(
                    st,
                    entered_id,
                    f"MaxConcurrencyPath must select a non-negative integer, not {_dumps(concurrency)}",
                    entered_id,
                )
        collect = st.result_path is not None

        def attempt(prev: int, retry_count: int):
            items = self._map_items(st, effective, run, entered, entered_id, prev)
            prev = run.history.add("MapStateStarted", run.clock.now(), prev, {"length": len(items)})
            if st.distributed:
                # the state's result (aggregated outputs, or the ResultWriter's details): it is
                # measured before ResultPath applies, so ResultPath null does not exempt it
                return self._distributed(
                    st, effective, items, run, cancel, entered, entered_id, prev, concurrency, collect
                )
            results, prev = self._inline(
                st, effective, items, run, cancel, entered, entered_id, prev, concurrency, collect
            )
            if not collect:
                return _DISCARDED, prev
            if self.payload_limit_bytes is not None:
                self._check_size(_dumps(results), "the Map state's result", prev)
            return results, prev

        return self._with_recovery(st, raw, run, cancel, entered_id, entered, attempt)

    def _map_items(
        self, st: MapState, effective: Any, run: _Run, entered: float, entered_id: int, prev: int
    ) -> list:
        reader = st.item_reader
        if reader is None:
            source = effective
        else:
            env = _Env(run, st.name, entered)
            params = (
                {}
                if reader.parameters is None
                else self._template(reader.parameters, effective, env, st, entered_id, prev)
            )
            bucket, key = params.get("Bucket"), params.get("Key")
            if not isinstance(bucket, str) or not isinstance(key, str):
                raise _Failure(
                    "States.ItemReaderFailed",
                    f"ItemReader Parameters need string Bucket and Key, got {_dumps(params)}",
                    prev,
                )
            if self.item_reader is None:
                raise _Failure(
                    "States.ItemReaderFailed",
                    f"no item reader is configured to read s3://{bucket}/{key} "
                    f"(pass Interpreter(item_reader=...))",
                    prev,
                )
            try:
                body = self.item_reader(bucket, key)
                source = json.loads(body)
            except Exception as exc:
                raise _Failure(
                    "States.ItemReaderFailed",
                    f"cannot read a JSON array from s3://{bucket}/{key}: {type(exc).__name__}: {exc}",
                    prev,
                ) from None
        items = self._path(st.items_path, source, st, run, entered, entered_id, "ItemsPath")
        if not isinstance(items, list):
            if reader is not None:
                raise _Failure(
                    "States.ItemReaderFailed",
                    f"the ItemReader object does not hold a JSON array (found {type(items).__name__})",
                    prev,
                )
            raise self._runtime(
                st,
                entered_id,
                f"ItemsPath '{st.items_path.text}' must select an array, not {_dumps(items)[:200]}",
                prev,
            )
        if reader is not None:
            max_items = reader.max_items
            if reader.max_items_path is not None:
                max_items = self._positive_int(
                    st, reader.max_items_path, effective, entered_id, "MaxItemsPath"
                )
            if max_items is not None:
                items = items[:max_items]
        return items

    def _item_input(
        self,
        st: MapState,
        effective: Any,
        items: list,
        i: int,
        run: _Run,
        entered: float,
        entered_id: int,
        prev: int,
    ) -> Any:
        if st.item_selector is None:
            return items[i]
        env = _Env(run, st.name, entered, 0, (i, items[i]))
        return self._template(st.item_selector, effective, env, st, entered_id, prev)

    def _inline(self, st, effective, items, run, cancel, entered, entered_id, prev, concurrency, collect):
        n = len(items)
        results: list = [None] * n if collect else []
        stop = threading.Event()
        outcome = _Outcome()
        inner_cancel = cancel + (stop,)
        started = prev
        proc = st.processor

        def work(i: int) -> None:
            ip = 0
            try:
                item_input = self._item_input(st, effective, items, i, run, entered, entered_id, started)
                ip = run.history.add(
                    "MapIterationStarted", run.clock.now(), started, {"name": st.name, "index": i}
                )
                out, p = self._run_graph(proc, item_input, run, inner_cancel, ip)
                run.history.add("MapIterationSucceeded", run.clock.now(), p, {"name": st.name, "index": i})
                if collect:
                    results[i] = out
            except _Failure as f:
                if ip:
                    run.history.add(
                        "MapIterationFailed", run.clock.now(), f.prev, {"name": st.name, "index": i}
                    )
                outcome.record(f)
                stop.set()
            except BaseException as exc:
                if ip and isinstance(exc, _Abort):
                    run.history.add(
                        "MapIterationAborted",
                        run.clock.now(),
                        len(run.history),
                        {"name": st.name, "index": i},
                    )
                outcome.record(exc)
                stop.set()

        self._run_all(n, work, concurrency, inner_cancel)
        outcome.reraise_control()
        run.check(cancel)  # stopped (or timed out) before every iteration had started
        if outcome.failure is not None:
            f = outcome.failure
            prev = run.history.add("MapStateFailed", run.clock.now(), len(run.history), None)
            raise _Failure(f.error, f.cause, prev)
        prev = run.history.add("MapStateSucceeded", run.clock.now(), len(run.history), None)
        return results, prev

    def _distributed(
        self, st, effective, items, run, cancel, entered, entered_id, prev, concurrency, collect
    ):
        n = len(items)
        parent = run.execution
        label = st.label or st.name
        machine_part = parent.state_machine_arn.split(":stateMachine:", 1)[-1]
        base = f"arn:aws:states:{self.region}:{self.account}"
        map_run_arn = f"{base}:mapRun:{machine_part}/{label}:{self.new_uuid()}"
        child_sm_arn = f"{base}:stateMachine:{machine_part}/{label}"
        map_run = MapRun(map_run_arn, parent.execution_arn, st.name, label, concurrency, n, run.clock.now())
        with self._lock:
            self._map_runs[map_run_arn] = map_run
        parent.map_runs.append(map_run)
        prev = run.history.add("MapRunStarted", run.clock.now(), prev, {"mapRunArn": map_run_arn})
        writer = st.result_writer
        collect = collect and writer is None
        results: list = [None] * n if collect else []
        sizes: list[int] = [0] * n  # UTF-8 bytes of each child's output (aggregated when no ResultWriter)
        stop = threading.Event()
        outcome = _Outcome()
        child_cancel = (stop,) + cancel
        proc = st.processor

        def work(i: int) -> None:
            try:
                child_input = self._item_input(st, effective, items, i, run, entered, entered_id, prev)
                text = _dumps(child_input)
                self._check_size(text, f"the input of Map item {i}", prev)
                name = self.new_uuid()
                child = Execution(
                    f"{base}:execution:{machine_part}/{label}:{name}",
                    child_sm_arn,
                    name,
                    json.loads(text),
                    run.clock.now(),
                    self.max_history_events,
                    graph=proc,
                    map_run_arn=map_run_arn,
                )
                map_run.executions[i] = child
                with self._lock:
                    self._executions[child.execution_arn] = child
                self._execute(child, run.deadline, child_cancel, timeout_aborts=True)
                if child.status == SUCCEEDED:
                    if collect:
                        results[i] = child.output
                    if writer is None:
                        sizes[i] = len(_dumps(child.output).encode("utf-8"))
                elif child.status != ABORTED:  # aborted children were cancelled by the run, not failed
                    outcome.record(_ChildFailed())
                    stop.set()
            except BaseException as exc:
                outcome.record(exc)
                stop.set()

        self._run_all(n, work, concurrency, child_cancel)
        map_run.stop_ts = run.clock.now()
        if any(e.is_set() for e in cancel) or (run.deadline is not None and run.clock.now() >= run.deadline):
            map_run.status = ABORTED
            run.history.add("MapRunAborted", run.clock.now(), prev, None)
            run.check(cancel)
        if outcome.failure is not None or outcome.child_failed:
            map_run.status = FAILED
            if outcome.failure is not None:
                error, cause = outcome.failure.error, outcome.failure.cause
            else:
                error, cause = "States.ExceedToleratedFailureThreshold", EXCEEDED_CAUSE
                if writer is not None:  # failed children are exported too; the map's own error wins
                    try:
                        self._export(st, effective, items, map_run, run, entered, entered_id, prev)
                    except _Failure:
                        pass
            prev = run.history.add("MapRunFailed", run.clock.now(), prev, {"error": error, "cause": cause})
            prev = run.history.add("MapStateFailed", run.clock.now(), prev, None)
            raise _Failure(error, cause, prev)
        if writer is not None:
            try:
                result = self._export(st, effective, items, map_run, run, entered, entered_id, prev)
            except _Failure as f:
                map_run.status = FAILED
                prev = run.history.add(
                    "MapRunFailed", run.clock.now(), prev, {"error": f.error, "cause": f.cause}
                )
                prev = run.history.add("MapStateFailed", run.clock.now(), prev, None)
                raise _Failure(f.error, f.cause, prev) from None
        else:
            # AWS aggregates every child's output into the state's result before ResultPath and
            # OutputPath apply: the array counts against the payload limit even when discarded
            total = 2 + sum(sizes) + max(0, n - 1)  # "[" + outputs joined by "," + "]"
            limit = self.payload_limit_bytes
            if limit is not None and total > limit:
                map_run.status = SUCCEEDED
                prev = run.history.add("MapRunSucceeded", run.clock.now(), prev, None)
                prev = run.history.add("MapStateFailed", run.clock.now(), prev, None)
                raise _Failure(
                    "States.DataLimitExceeded",
                    f"The state/task '{st.name}' returned a result with a size exceeding the maximum "
                    f"number of bytes service limit (the Distributed Map's aggregated child results: "
                    f"{total} bytes > {limit}; add a ResultWriter to export them to S3)",
                    prev,
                )
            result = results if collect else _DISCARDED
        map_run.status = SUCCEEDED
        prev = run.history.add("MapRunSucceeded", run.clock.now(), prev, None)
        prev = run.history.add("MapStateSucceeded", run.clock.now(), prev, None)
        return result, prev

    def _export(
        self,
        st: MapState,
        effective: Any,
        items: list,
        map_run: MapRun,
        run: _Run,
        entered: float,
        entered_id: int,
        prev: int,
    ) -> dict:
        """Write the map run's results with the state's ResultWriter; returns the state's result
        ``{"MapRunArn", "ResultWriterDetails": {"Bucket", "Key"}}``. Any problem is
        ``States.ResultWriterFailed``."""
        writer = st.result_writer
        env = _Env(run, st.name, entered)
        params = (
            {}
            if writer.parameters is None
            else self._template(writer.parameters, effective, env, st, entered_id, prev)
        )
        bucket, prefix = params.get("Bucket"), params.get("Prefix", "")
        if not isinstance(bucket, str) or not bucket or not isinstance(prefix, str):
            raise _Failure(
                "States.ResultWriterFailed",
                f"ResultWriter Parameters need a string Bucket and Prefix, got {_dumps(params)}",
                prev,
            )
        if self.result_writer is None:
            raise _Failure(
                "States.ResultWriterFailed",
                f"no result writer is configured to write to s3://{bucket}/"
                f"{prefix} (pass Interpreter(result_writer=...))",
                prev,
            )
        children = []
        for i, ex in enumerate(map_run.executions):
            if ex is None:
                children.append(ChildRecord(PENDING, items[i]))
            else:
                children.append(
                    ChildRecord(
                        ex.status,
                        ex.input,
                        ex.execution_arn,
                        ex.name,
                        ex.state_machine_arn,
                        ex.output,
                        ex.error,
                        ex.cause,
                        ex.start_ts,
                        ex.stop_ts,
                    )
                )
        export = export_files(
            children,
            bucket=bucket,
            prefix=prefix,
            map_run_arn=map_run.map_run_arn,
            transformation=writer.transformation,
            output_type=writer.output_type,
        )
        for key, body in export.objects:
            try:
                self.result_writer(bucket, key, body)
            except Exception as exc:
                raise _Failure(
                    "States.ResultWriterFailed",
                    f"cannot write s3://{bucket}/{key}: {type(exc).__name__}: {exc}",
                    prev,
                ) from None
        map_run.results_written = export.results_written
        return export.result


class _ChildFailed(Exception):
    """A Distributed Map child execution ended FAILED or TIMED_OUT."""


class _Outcome:
    """Collects what went wrong in the workers of one Map/Parallel (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.failure: _Failure | None = None
        self.child_failed = False
        self.control: list[BaseException] = []

    def record(self, exc: BaseException) -> None:
        with self._lock:
            if isinstance(exc, _ChildFailed):
                self.child_failed = True
            elif isinstance(exc, _Failure):
                if self.failure is None:
                    self.failure = exc
            elif isinstance(exc, (_Abort, _TimedOut)):
                self.control.append(exc)
            else:  # an unexpected exception in a worker: surface it as a runtime failure
                if self.failure is None:
                    self.failure = _Failure(
                        "States.Runtime",
                        "local interpreter error: " + "".join(traceback.format_exception(exc)),
                        0,
                    )

    def reraise_control(self) -> None:
        """Re-raise a stop/timeout of the enclosing execution (it wins over failures), but not
        the aborts of siblings cancelled because one of them failed."""
        with self._lock:
            timeouts = [e for e in self.control if isinstance(e, _TimedOut)]
            if timeouts:
                raise timeouts[0]
            if self.control and self.failure is None:
                raise self.control[0]
