"""Execution records: what the local runtime keeps of an execution after its process exits.

When a top-level execution ends, :class:`ExecutionRecorder` writes
``<repo>/executions/<state machine>/<execution name>.json`` (atomically): the
DescribeExecution fields, the GetExecutionHistory events, the state transitions counted over
the execution and all its Distributed Map children, every Lambda invocation made for it (function,
configured memory, architecture, duration measured in the worker process, success), and its
non-Lambda tasks such as ECS ``runTask.sync`` (with their parameters, from the histories) and
the states entered. ``isrflow status``
prices these (:mod:`isrflow.local.usage`), ``isrflow local serve`` answers Describe/List/
GetExecutionHistory from them after a restart, and a new execution may not reuse a recorded
name (Step Functions keeps names unique per state machine).
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from isrflow.io.storage import FileStorage
from isrflow.local.processes import ProcessIdentity
from isrflow.local.usage import TaskInterval, states_entered, task_intervals
from isrflow.model.errors import ExecutionNotFoundError

EXECUTIONS_DIR = "executions"
#: The error of an execution whose process was killed while it ran.
ABORTED_ERROR = "isrflow.ProcessEnded"


class InvocationRecord(BaseModel):
    """One Lambda invocation: what Lambda bills (duration x configured memory) and one request."""

    function: str
    memory_mb: int
    architecture: str = "arm64"
    duration_s: float = Field(ge=0)
    execution_arn: str
    ok: bool = True


class ExecutionRecord(BaseModel):
    execution_arn: str
    state_machine_arn: str
    name: str
    status: str
    start_date: datetime
    stop_date: datetime | None = None
    input: Any = None
    output: Any = None
    error: str | None = None
    cause: str | None = None
    state_transitions: int = Field(description="the execution's and all its child executions'")
    state_transitions_top: int = Field(description="the execution's own (children excluded)")
    child_executions: int = 0
    history: list[dict[str, Any]] = Field(default_factory=list)
    states_entered: dict[str, int] = Field(
        default_factory=dict, description="state name -> times entered, children included"
    )
    invocations: list[InvocationRecord] = Field(default_factory=list)
    tasks: list[TaskInterval] = Field(
        default_factory=list, description="non-Lambda tasks (e.g. ECS), children included"
    )
    owner: str | None = Field(
        default=None, description="host:pid:start ticks of the process running it (RUNNING records)"
    )

    def effective(self) -> ExecutionRecord:
        """The record as it stands now: a RUNNING record whose process is gone (``kill -9``, a
        crash, a power cut) is ABORTED, so ``status``, listings and ``rerun --failed`` find it."""
        if self.status != "RUNNING" or self.owner is None:
            return self
        owner = ProcessIdentity.parse(self.owner)
        if owner is None or not owner.is_dead():
            return self
        return self.model_copy(
            update={
                "status": "ABORTED",
                "error": ABORTED_ERROR,
                "cause": f"the process running it (pid {owner.pid} on {owner.host}) ended before it finished; "
                "`isrflow rerun --failed` runs what it did not complete",
            }
        )

    @property
    def state_machine_name(self) -> str:
        return self.state_machine_arn.rsplit(":", 1)[-1]

    def describe(self) -> dict[str, Any]:
        """DescribeExecution-shaped (input/output as JSON text)."""
        import json

        d: dict[str, Any] = {
            "executionArn": self.execution_arn,
            "stateMachineArn": self.state_machine_arn,
            "name": self.name,
            "status": self.status,
            "startDate": self.start_date,
            "input": json.dumps(self.input),
            "inputDetails": {"included": True},
            "redriveCount": 0,
        }
        if self.stop_date is not None:
            d["stopDate"] = self.stop_date
        if self.status == "SUCCEEDED":
            d["output"] = json.dumps(self.output)
            d["outputDetails"] = {"included": True}
        if self.error is not None:
            d["error"] = self.error
        if self.cause is not None:
            d["cause"] = self.cause
        return d


def record_path(repo: Path, state_machine: str, name: str) -> Path:
    return Path(repo) / EXECUTIONS_DIR / state_machine / f"{name}.json"


def split_execution_arn(arn: str) -> tuple[str, str]:
    """(state machine name, execution name) of ``arn:...:execution:<machine>:<name>``."""
    parts = arn.split(":")
    if len(parts) < 8 or parts[5] != "execution":
        raise ExecutionNotFoundError(f"{arn!r} is not an execution ARN")
    return parts[6], parts[7]


def load_record(repo: Path, execution: str) -> ExecutionRecord:
    """The record of an execution by ARN or by name; ExecutionNotFoundError if there is none
    (or if a bare name matches executions of several state machines)."""
    root = Path(repo) / EXECUTIONS_DIR
    if execution.startswith("arn:"):
        machine, name = split_execution_arn(execution)
        candidates = [record_path(repo, machine, name)]
    else:
        candidates = sorted(root.glob(f"*/{execution}.json")) if root.is_dir() else []
    found = [p for p in candidates if p.is_file()]
    if not found:
        raise ExecutionNotFoundError(f"no record of execution {execution!r} under {root}")
    if len(found) > 1:
        raise ExecutionNotFoundError(
            f"{execution!r} names executions of several state machines "
            f"({', '.join(p.parent.name for p in found)}); give its ARN"
        )
    return ExecutionRecord.model_validate_json(found[0].read_bytes()).effective()


def list_records(repo: Path, state_machine: str | None = None) -> list[ExecutionRecord]:
    root = Path(repo) / EXECUTIONS_DIR
    pattern = f"{state_machine}/*.json" if state_machine else "*/*.json"
    return (
        [ExecutionRecord.model_validate_json(p.read_bytes()).effective() for p in sorted(root.glob(pattern))]
        if root.is_dir()
        else []
    )


def _tree(execution) -> list:
    out, stack = [], [execution]
    while stack:
        ex = stack.pop()
        out.append(ex)
        stack.extend(ex.children())
    return out


class ExecutionRecorder:
    """Collects Lambda invocations per execution and writes a record when a tracked execution ends."""

    def __init__(self, repo: Path):
        self.repo = Path(repo)
        self._lock = threading.Lock()
        self._invocations: dict[str, list[InvocationRecord]] = {}
        self._threads: list[threading.Thread] = []
        self._tracked: list = []

    def invocation(self, record: InvocationRecord) -> None:
        with self._lock:
            self._invocations.setdefault(record.execution_arn, []).append(record)

    def exists(self, state_machine: str, name: str) -> bool:
        return record_path(self.repo, state_machine, name).is_file()

    def track(self, execution) -> None:
        """Write the execution's record once it has ended (from a background thread)."""
        thread = threading.Thread(
            target=self._persist_when_done,
            args=(execution,),
            daemon=True,
            name=f"record-{execution.name}"[:60],
        )
        with self._lock:
            self._threads.append(thread)
            self._tracked.append(execution)
        thread.start()

    def _persist_when_done(self, execution) -> None:
        execution.wait()
        self.persist(execution)

    def begin(self, execution) -> Path:
        """Write the RUNNING record of an execution that is about to start (with this process as
        its owner), so it can be found after a crash; :meth:`persist` replaces it when it ends."""
        record = self.build(execution, keep_invocations=True)
        record.owner = ProcessIdentity.current().token()
        return self._write(record)

    def build(self, execution, *, keep_invocations: bool = False) -> ExecutionRecord:
        tree = _tree(execution)
        arns = {ex.execution_arn for ex in tree}
        with self._lock:
            if keep_invocations:
                invocations = [r for arn in arns for r in self._invocations.get(arn, [])]
            else:
                invocations = [r for arn in arns for r in self._invocations.pop(arn, [])]
        return ExecutionRecord(
            execution_arn=execution.execution_arn,
            state_machine_arn=execution.state_machine_arn,
            name=execution.name,
            status=execution.status,
            start_date=execution.start_date,
            stop_date=execution.stop_date,
            input=execution.input,
            output=execution.output,
            error=execution.error,
            cause=execution.cause,
            state_transitions=execution.state_transitions(True),
            state_transitions_top=execution.state_transitions(False),
            child_executions=len(tree) - 1,
            history=execution.history,
            invocations=sorted(invocations, key=lambda r: (r.execution_arn, r.function)),
            states_entered=dict(states_entered(ex.history for ex in tree)),
            tasks=[
                t
                for ex in tree
                for t in task_intervals(ex.history, ex.execution_arn)
                if t.resource_type != "lambda"
            ],
        )

    def persist(self, execution) -> Path:
        return self._write(self.build(execution))

    def _write(self, record: ExecutionRecord) -> Path:
        path = record_path(self.repo, record.state_machine_name, record.name)
        FileStorage().write_bytes(str(path), record.model_dump_json(indent=1).encode())
        return path

    def stop_running(self) -> None:
        """Abort tracked executions that are still running (the runtime is closing)."""
        with self._lock:
            running = [ex for ex in self._tracked if not ex.done]
        for ex in running:
            ex.stop("States.Runtime", "the local runtime was closed while the execution was running")

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until the records of the tracked executions that have ended are written."""
        with self._lock:
            pairs = list(zip(self._tracked, self._threads, strict=False))
        for execution, thread in pairs:
            if execution.done:
                thread.join(timeout)

    def close(self, timeout: float = 60.0) -> None:
        """Wait (up to ``timeout`` s each) for the records of tracked executions to be written."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)


__all__ = [
    "ABORTED_ERROR",
    "EXECUTIONS_DIR",
    "ExecutionRecord",
    "ExecutionRecorder",
    "InvocationRecord",
    "list_records",
    "load_record",
    "record_path",
    "split_execution_arn",
]
