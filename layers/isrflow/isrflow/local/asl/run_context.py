"""What the interpreter carries while it runs an execution: the control-flow exceptions
(a state's failure, an abort, a timeout), the run handle (history, cancellation, sleeping) and
the evaluation environment that builds the Context Object."""

from __future__ import annotations

import threading
import traceback
from typing import TYPE_CHECKING, Any

from isrflow.local.asl.clock import RealClock
from isrflow.local.asl.execution import Execution
from isrflow.local.asl.history import iso_timestamp

if TYPE_CHECKING:
    from isrflow.local.asl.dataflow import DataFlowSteps

UNCATCHABLE = frozenset({"States.Runtime", "States.DataLimitExceeded"})
PAYLOAD_LIMIT = 262_144
EXCEEDED_CAUSE = "The specified tolerated failure threshold was exceeded"
DISCARDED = object()


class Failure(Exception):
    """A state (or iteration, branch, execution) failed with an ASL error."""

    def __init__(self, error: str | None, cause: str | None, prev: int = 0):
        self.error, self.cause, self.prev = error, cause, prev
        super().__init__(f"{error}: {cause}")


class Abort(Exception):
    """The execution was stopped, or the enclosing Map/Parallel is cancelling its work."""


class TimedOut(Exception):
    """The execution's TimeoutSeconds elapsed."""


def error_of(exc: Exception) -> tuple[str, str]:
    """(error, cause) of an integration exception: its ``error``/``cause`` attributes when it
    has string ones (a TaskFailure look-alike, e.g. from another process), else its class
    name and message."""
    error = getattr(exc, "error", None)
    if isinstance(error, str) and error:
        cause = getattr(exc, "cause", None)
        return error, cause if isinstance(cause, str) else str(exc)
    return type(exc).__name__, str(exc)


# --------------------------------------------------------------------------- run-time helpers


class Run:
    """What the states of one execution share while it runs."""

    __slots__ = ("base_cancel", "clock", "deadline", "execution", "history", "interp", "timeout_aborts")

    def __init__(
        self,
        interp: DataFlowSteps,
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
                raise Abort()
        if self.deadline is not None and self.clock.now() >= self.deadline:
            raise Abort() if self.timeout_aborts else TimedOut()
        if self.history.overflowed:
            raise Failure(
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
            raise Abort() if self.timeout_aborts else TimedOut()
        self.check(cancel)


class Env:
    """Evaluation environment of a Payload Template / path: the lazily built Context Object."""

    __slots__ = ("_obj", "entered", "item", "retry_count", "run", "state_name")

    def __init__(self, run: Run, state_name: str, entered: float, retry_count: int = 0, item: Any = None):
        self.run, self.state_name, self.entered, self.retry_count, self.item = (
            run,
            state_name,
            entered,
            retry_count,
            item,
        )
        self._obj: dict[str, Any] | None = None

    @property
    def context_object(self) -> dict[str, Any]:
        if self._obj is None:
            ex = self.run.execution
            interp = self.run.interp
            obj: dict[str, Any] = {
                "Execution": {
                    "Id": ex.execution_arn,
                    "Name": ex.name,
                    "StartTime": iso_timestamp(ex.start_ts),
                    "Input": ex.input,
                    "RoleArn": interp.role_arn,
                    "RedriveCount": 0,
                },
                "StateMachine": {"Id": ex.state_machine_arn, "Name": ex.state_machine_arn.split(":")[-1]},
                "State": {
                    "Name": self.state_name,
                    "EnteredTime": iso_timestamp(self.entered),
                    "RetryCount": self.retry_count,
                },
            }
            if self.item is not None:
                obj["Map"] = {"Item": {"Index": self.item[0], "Value": self.item[1]}}
            self._obj = obj
        return self._obj

    def new_uuid(self) -> str:
        return self.run.interp.new_uuid()


class ChildFailed(Exception):
    """A Distributed Map child execution ended FAILED or TIMED_OUT."""


class Outcome:
    """Collects what went wrong in the workers of one Map/Parallel (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failure: Failure | None = None
        self.child_failed = False
        self.control: list[BaseException] = []

    def record(self, exc: BaseException) -> None:
        with self._lock:
            if isinstance(exc, ChildFailed):
                self.child_failed = True
            elif isinstance(exc, Failure):
                if self.failure is None:
                    self.failure = exc
            elif isinstance(exc, (Abort, TimedOut)):
                self.control.append(exc)
            else:  # an unexpected exception in a worker: surface it as a runtime failure
                if self.failure is None:
                    self.failure = Failure(
                        "States.Runtime",
                        "local interpreter error: " + "".join(traceback.format_exception(exc)),
                        0,
                    )

    def reraise_control(self) -> None:
        """Re-raise a stop/timeout of the enclosing execution (it wins over failures), but not
        the aborts of siblings cancelled because one of them failed."""
        with self._lock:
            timeouts = [e for e in self.control if isinstance(e, TimedOut)]
            if timeouts:
                raise timeouts[0]
            if self.control and self.failure is None:
                raise self.control[0]
