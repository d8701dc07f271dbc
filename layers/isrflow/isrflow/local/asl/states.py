"""The compiled model of a state machine: states, retriers, catchers and graphs.

Built and validated by :mod:`isrflow.local.asl.state_builder` / :mod:`isrflow.local.asl.map_builder`; run by the interpreter.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from isrflow.local.asl.choice import Rule
from isrflow.local.asl.intrinsics import Call
from isrflow.local.asl.jsonpath import (
    MISSING,
    ROOT,
    Path,
)
from isrflow.local.asl.payload_template import PayloadTemplate

STATES_ALL = "States.ALL"
STATES_TASK_FAILED = "States.TaskFailed"
STATES_TIMEOUT = "States.Timeout"
S3_GET_OBJECT = "arn:aws:states:::s3:getObject"
S3_PUT_OBJECT = "arn:aws:states:::s3:putObject"
TRANSFORMATIONS = ("NONE", "COMPACT", "FLATTEN")
OUTPUT_TYPES = ("JSON", "JSONL")


# --------------------------------------------------------------------------- compiled model


class Retrier:
    __slots__ = (
        "backoff_rate",
        "error_equals",
        "interval_seconds",
        "jitter_strategy",
        "max_attempts",
        "max_delay_seconds",
    )

    def __init__(
        self,
        error_equals: Iterable[str],
        interval_seconds: float = 1,
        max_attempts: int = 3,
        backoff_rate: float = 2.0,
        max_delay_seconds: float | None = None,
        jitter_strategy: str = "NONE",
    ) -> None:
        self.error_equals = tuple(error_equals)
        self.interval_seconds = interval_seconds
        self.max_attempts = max_attempts
        self.backoff_rate = backoff_rate
        self.max_delay_seconds = max_delay_seconds
        self.jitter_strategy = jitter_strategy

    def delay(self, retries_done: int) -> float:
        """The wait before the next attempt (before jitter), given this retrier's retries so far."""
        d = self.interval_seconds * (self.backoff_rate**retries_done)
        if self.max_delay_seconds is not None:
            d = min(d, self.max_delay_seconds)
        return d


class Catcher:
    __slots__ = ("error_equals", "next", "result_path")

    def __init__(self, error_equals: Iterable[str], next_: str | None, result_path: Path | None) -> None:
        self.error_equals = tuple(error_equals)
        self.next = next_
        self.result_path = result_path  # Path, or None for ResultPath: null


def error_matches(names: tuple[str, ...], error: str | None) -> bool:
    """Does an ErrorEquals list match ``error``? (States.ALL: anything; States.TaskFailed:
    anything but States.Timeout.) Uncatchable errors never reach here."""
    for n in names:
        if n in (error, STATES_ALL):
            return True
        if n == STATES_TASK_FAILED and error != STATES_TIMEOUT:
            return True
    return False


class State:
    """A compiled state. ``where`` is its location in the definition."""

    type = ""

    def __init__(self, name: str, where: str, obj: dict[str, Any]) -> None:
        self.name = name
        self.where = where
        self.comment = obj.get("Comment")
        self.next: str | None = obj.get("Next")
        self.end: bool = obj.get("End") is True
        self.input_path: Path | None = ROOT
        self.output_path: Path | None = ROOT
        self.parameters: PayloadTemplate | None = None
        self.result_selector: PayloadTemplate | None = None
        self.result_path: Path | None = ROOT
        self.retry: list[Retrier] = []
        self.catch: list[Catcher] = []

    def __repr__(self) -> str:
        return f"<{self.type} state {self.name!r}>"


class TaskState(State):
    type = "Task"

    def __init__(self, name: str, where: str, obj: dict[str, Any]) -> None:
        super().__init__(name, where, obj)
        self.resource: str = obj.get("Resource", "")
        self.timeout_seconds: int | None = None
        self.timeout_seconds_path: Path | None = None
        self.heartbeat_seconds: int | None = None
        self.heartbeat_seconds_path: Path | None = None


class PassState(State):
    type = "Pass"

    def __init__(self, name: str, where: str, obj: dict[str, Any]) -> None:
        super().__init__(name, where, obj)
        self.result: Any = obj.get("Result", MISSING)


class ChoiceState(State):
    type = "Choice"

    def __init__(self, name: str, where: str, obj: dict[str, Any]) -> None:
        super().__init__(name, where, obj)
        self.choices: list[Rule] = []
        self.default: str | None = obj.get("Default")
        self.uses_context = False


class WaitState(State):
    type = "Wait"

    def __init__(self, name: str, where: str, obj: dict[str, Any]) -> None:
        super().__init__(name, where, obj)
        self.seconds: int | None = None
        self.seconds_path: Path | None = None
        self.timestamp: datetime | None = None
        self.timestamp_path: Path | None = None


class SucceedState(State):
    type = "Succeed"


class FailState(State):
    type = "Fail"

    def __init__(self, name: str, where: str, obj: dict[str, Any]) -> None:
        super().__init__(name, where, obj)
        self.error: str | None = obj.get("Error")
        self.cause: str | None = obj.get("Cause")
        self.error_expr: Path | Call | None = None
        self.cause_expr: Path | Call | None = None


class ParallelState(State):
    type = "Parallel"

    def __init__(self, name: str, where: str, obj: dict[str, Any]) -> None:
        super().__init__(name, where, obj)
        self.branches: list[Graph] = []


class ItemReader:
    __slots__ = ("input_type", "max_items", "max_items_path", "parameters", "resource")

    def __init__(self) -> None:
        self.resource = S3_GET_OBJECT
        self.parameters: PayloadTemplate | None = None
        self.input_type = "JSON"
        self.max_items: int | None = None
        self.max_items_path: Path | None = None


class ResultWriter:
    """A Distributed Map's ``ResultWriter``: export the child executions' results to S3
    (``Parameters`` -> ``Bucket`` and ``Prefix``) instead of returning them as the state's result.
    ``transformation``/``output_type`` come from ``WriterConfig`` (defaults NONE / JSON, as AWS
    uses when WriterConfig is absent)."""

    __slots__ = ("output_type", "parameters", "resource", "transformation")

    def __init__(self) -> None:
        self.resource = S3_PUT_OBJECT
        self.parameters: PayloadTemplate | None = None
        self.transformation = "NONE"
        self.output_type = "JSON"


class MapState(State):
    type = "Map"

    def __init__(self, name: str, where: str, obj: dict[str, Any]) -> None:
        super().__init__(name, where, obj)
        self.processor: Graph | None = None
        self.distributed = False
        self.execution_type: str | None = None
        self.items_path: Path = ROOT
        self.item_selector: PayloadTemplate | None = None
        self.max_concurrency = 0
        self.max_concurrency_path: Path | None = None
        self.item_reader: ItemReader | None = None
        self.result_writer: ResultWriter | None = None
        self.label: str | None = obj.get("Label")


STATE_CLASSES = {
    c.type: c
    for c in (TaskState, PassState, ChoiceState, WaitState, SucceedState, FailState, ParallelState, MapState)
}


class Graph:
    """``StartAt`` + ``States``: the top level, a Parallel branch, or a Map ItemProcessor."""

    def __init__(self, start_at: str, states: dict[str, State], where: str) -> None:
        self.start_at = start_at
        self.states = states
        self.where = where
