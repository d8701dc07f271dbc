"""Parse and validate a state machine definition into compiled states.

Everything that can be checked before running is checked here, and every problem is
reported (not only the first) with its location, e.g.
``States.Process.Retry[1].ErrorEquals: 'States.ALL' must appear alone ...``.

The subset (see the package docstring): JSONPath states Task, Pass, Choice, Wait,
Succeed, Fail, Parallel, Map (inline, and distributed with STANDARD children, a JSON
ItemReader and an s3:putObject ResultWriter). Valid ASL outside the subset (ItemBatcher,
ToleratedFailure*, EXPRESS children, a ResultWriter without Resource/Parameters, JSONata,
variables, ...) is rejected with :class:`UnsupportedFeatureError`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from isrflow.local.asl.choice import ChoiceRuleError, Rule, compile_rule, parse_timestamp, rule_uses_context
from isrflow.local.asl.errors import DefinitionError, UnsupportedFeatureError
from isrflow.local.asl.intrinsics import Call, IntrinsicSyntaxError, parse_intrinsic
from isrflow.local.asl.jsonpath import (
    MISSING,
    ROOT,
    Path,
    PathSyntaxError,
    compile_path,
    compile_reference_path,
)
from isrflow.local.asl.template import Template, TemplateError

STATES_ALL = "States.ALL"
STATES_TASK_FAILED = "States.TaskFailed"
STATES_TIMEOUT = "States.Timeout"
S3_GET_OBJECT = "arn:aws:states:::s3:getObject"
S3_PUT_OBJECT = "arn:aws:states:::s3:putObject"
TRANSFORMATIONS = ("NONE", "COMPACT", "FLATTEN")
OUTPUT_TYPES = ("JSON", "JSONL")

_UNSUPPORTED_FIELDS = {
    "ItemBatcher": "ItemBatcher is not supported: cluster items in the producing step instead "
    "(one Map item = one batch), which behaves the same on AWS, locally and in moto",
    "ToleratedFailurePercentage": "ToleratedFailurePercentage is not supported: Catch per item and decide "
    "in a later step (moto ignores it, so it cannot be cross-checked)",
    "ToleratedFailurePercentagePath": "ToleratedFailurePercentagePath is not supported (see ToleratedFailurePercentage)",
    "ToleratedFailureCount": "ToleratedFailureCount is not supported: Catch per item and decide in a later step",
    "ToleratedFailureCountPath": "ToleratedFailureCountPath is not supported (see ToleratedFailureCount)",
    "Assign": "variables (Assign) are not supported by the local interpreter",
    "Arguments": "Arguments is JSONata-only; the local interpreter runs JSONPath states",
    "Output": "Output is JSONata-only; the local interpreter runs JSONPath states",
    "Items": "Items is JSONata-only; use ItemsPath",
    "Credentials": "Task Credentials (cross-account roles) are not supported locally",
    "QueryLanguage": "QueryLanguage JSONata is not supported; the local interpreter runs JSONPath",
}

_COMMON = {"Type", "Comment"}
_IO = {"InputPath", "OutputPath"}
_FLOW = {"Next", "End"}
_RESULT = {"Parameters", "ResultSelector", "ResultPath", "Retry", "Catch"}
ALLOWED_FIELDS = {
    "Task": _COMMON
    | _IO
    | _FLOW
    | _RESULT
    | {"Resource", "TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds", "HeartbeatSecondsPath"},
    "Pass": _COMMON | _IO | _FLOW | {"Parameters", "ResultPath", "Result"},
    "Choice": _COMMON | _IO | {"Choices", "Default"},
    "Wait": _COMMON | _IO | _FLOW | {"Seconds", "SecondsPath", "Timestamp", "TimestampPath"},
    "Succeed": _COMMON | _IO,
    "Fail": _COMMON | {"Error", "ErrorPath", "Cause", "CausePath"},
    "Parallel": _COMMON | _IO | _FLOW | _RESULT | {"Branches"},
    "Map": _COMMON
    | _IO
    | _FLOW
    | _RESULT
    | {
        "ItemSelector",
        "ItemsPath",
        "ItemProcessor",
        "Iterator",
        "MaxConcurrency",
        "MaxConcurrencyPath",
        "ItemReader",
        "ResultWriter",
        "Label",
    },
}


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
        error_equals,
        interval_seconds=1,
        max_attempts=3,
        backoff_rate=2.0,
        max_delay_seconds=None,
        jitter_strategy="NONE",
    ):
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

    def __init__(self, error_equals, next_, result_path):
        self.error_equals = tuple(error_equals)
        self.next = next_
        self.result_path = result_path  # Path, or None for ResultPath: null


def error_matches(names: tuple, error: str) -> bool:
    """Does an ErrorEquals list match ``error``? (States.ALL: anything; States.TaskFailed:
    anything but States.Timeout.) Uncatchable errors never reach here."""
    for n in names:
        if n == error or n == STATES_ALL:
            return True
        if n == STATES_TASK_FAILED and error != STATES_TIMEOUT:
            return True
    return False


class State:
    """A compiled state. ``where`` is its location in the definition."""

    type = ""

    def __init__(self, name: str, where: str, obj: dict):
        self.name = name
        self.where = where
        self.comment = obj.get("Comment")
        self.next: str | None = obj.get("Next")
        self.end: bool = obj.get("End") is True
        self.input_path: Path | None = ROOT
        self.output_path: Path | None = ROOT
        self.parameters: Template | None = None
        self.result_selector: Template | None = None
        self.result_path: Path | None = ROOT
        self.retry: list[Retrier] = []
        self.catch: list[Catcher] = []

    def __repr__(self) -> str:
        return f"<{self.type} state {self.name!r}>"


class TaskState(State):
    type = "Task"

    def __init__(self, name, where, obj):
        super().__init__(name, where, obj)
        self.resource: str = obj.get("Resource", "")
        self.timeout_seconds: int | None = None
        self.timeout_seconds_path: Path | None = None
        self.heartbeat_seconds: int | None = None
        self.heartbeat_seconds_path: Path | None = None


class PassState(State):
    type = "Pass"

    def __init__(self, name, where, obj):
        super().__init__(name, where, obj)
        self.result: Any = obj.get("Result", MISSING)


class ChoiceState(State):
    type = "Choice"

    def __init__(self, name, where, obj):
        super().__init__(name, where, obj)
        self.choices: list[Rule] = []
        self.default: str | None = obj.get("Default")
        self.uses_context = False


class WaitState(State):
    type = "Wait"

    def __init__(self, name, where, obj):
        super().__init__(name, where, obj)
        self.seconds: int | None = None
        self.seconds_path: Path | None = None
        self.timestamp: datetime | None = None
        self.timestamp_path: Path | None = None


class SucceedState(State):
    type = "Succeed"


class FailState(State):
    type = "Fail"

    def __init__(self, name, where, obj):
        super().__init__(name, where, obj)
        self.error: str | None = obj.get("Error")
        self.cause: str | None = obj.get("Cause")
        self.error_expr: Path | Call | None = None
        self.cause_expr: Path | Call | None = None


class ParallelState(State):
    type = "Parallel"

    def __init__(self, name, where, obj):
        super().__init__(name, where, obj)
        self.branches: list[Graph] = []


class ItemReader:
    __slots__ = ("input_type", "max_items", "max_items_path", "parameters", "resource")

    def __init__(self):
        self.resource = S3_GET_OBJECT
        self.parameters: Template | None = None
        self.input_type = "JSON"
        self.max_items: int | None = None
        self.max_items_path: Path | None = None


class ResultWriter:
    """A Distributed Map's ``ResultWriter``: export the child executions' results to S3
    (``Parameters`` -> ``Bucket`` and ``Prefix``) instead of returning them as the state's result.
    ``transformation``/``output_type`` come from ``WriterConfig`` (defaults NONE / JSON, as AWS
    uses when WriterConfig is absent)."""

    __slots__ = ("output_type", "parameters", "resource", "transformation")

    def __init__(self):
        self.resource = S3_PUT_OBJECT
        self.parameters: Template | None = None
        self.transformation = "NONE"
        self.output_type = "JSON"


class MapState(State):
    type = "Map"

    def __init__(self, name, where, obj):
        super().__init__(name, where, obj)
        self.processor: Graph | None = None
        self.distributed = False
        self.execution_type: str | None = None
        self.items_path: Path = ROOT
        self.item_selector: Template | None = None
        self.max_concurrency = 0
        self.max_concurrency_path: Path | None = None
        self.item_reader: ItemReader | None = None
        self.result_writer: ResultWriter | None = None
        self.label: str | None = obj.get("Label")


_STATE_CLASSES = {
    c.type: c
    for c in (TaskState, PassState, ChoiceState, WaitState, SucceedState, FailState, ParallelState, MapState)
}


class Graph:
    """``StartAt`` + ``States``: the top level, a Parallel branch, or a Map ItemProcessor."""

    def __init__(self, start_at: str, states: dict[str, State], where: str):
        self.start_at = start_at
        self.states = states
        self.where = where


class StateMachine:
    """A validated, compiled state machine definition.

    ``StateMachine.from_json(definition, name)`` accepts a JSON string/bytes or a parsed
    dict; ``substitutions`` replaces ``${Key}`` placeholders first (as SAM's
    DefinitionSubstitutions do). Raises :class:`DefinitionError` /
    :class:`UnsupportedFeatureError`.
    """

    def __init__(
        self,
        name: str,
        definition: dict,
        graph: Graph,
        timeout_seconds: int | None,
        all_states: dict[str, State],
        arn: str | None = None,
    ):
        self.name = name
        self.definition = definition
        self.graph = graph
        self.timeout_seconds = timeout_seconds
        self.states = all_states  # every state by name, nested ones included
        self.arn = arn
        self.comment = definition.get("Comment")

    def __repr__(self) -> str:
        return f"<StateMachine {self.name!r}: {len(self.states)} states>"

    @classmethod
    def from_json(
        cls,
        definition: str | bytes | dict,
        name: str = "StateMachine",
        *,
        substitutions: dict[str, str] | None = None,
        arn: str | None = None,
    ) -> StateMachine:
        if isinstance(definition, (bytes, bytearray)):
            definition = definition.decode("utf-8")
        if isinstance(definition, str):
            try:
                definition = json.loads(definition)
            except ValueError as exc:
                raise DefinitionError([("", f"the definition is not valid JSON: {exc}")], name) from None
        if not isinstance(definition, dict):
            raise DefinitionError([("", "the definition must be a JSON object")], name)
        if substitutions is not None:
            definition = substitute(definition, substitutions, name)
        builder = _Builder(name)
        graph, timeout = builder.top(definition)
        builder.raise_if_problems()
        return cls(name, definition, graph, timeout, builder.all_states, arn)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        name: str | None = None,
        *,
        substitutions: dict[str, str] | None = None,
        arn: str | None = None,
    ) -> StateMachine:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if name is None:
            base = os.path.basename(os.fspath(path))
            name = base.split(".")[0]
        return cls.from_json(text, name, substitutions=substitutions, arn=arn)


_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


def substitute(definition: Any, substitutions: dict[str, str], name: str = "") -> Any:
    """Replace ``${Key}`` in every string (keys and values). An unknown key is an error."""
    missing: set[str] = set()

    def repl(m: re.Match) -> str:
        key = m.group(1)
        if key not in substitutions:
            missing.add(key)
            return m.group(0)
        return str(substitutions[key])

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return _PLACEHOLDER.sub(repl, v) if "${" in v else v
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {walk(k): walk(x) for k, x in v.items()}
        return v

    out = walk(definition)
    if missing:
        raise DefinitionError([("", f"no substitution given for ${{{k}}}") for k in sorted(missing)], name)
    return out


# --------------------------------------------------------------------------- builder


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Builder:
    def __init__(self, machine: str):
        self.machine = machine
        self.problems: list[tuple[str, str]] = []
        self.unsupported: list[bool] = []
        self.all_states: dict[str, State] = {}
        self.names_where: dict[str, str] = {}

    def bad(self, where: str, message: str, unsupported: bool = False) -> None:
        self.problems.append((where, message))
        self.unsupported.append(unsupported)

    def raise_if_problems(self) -> None:
        if self.problems:
            cls = UnsupportedFeatureError if all(self.unsupported) else DefinitionError
            raise cls(self.problems, self.machine)

    # -- helpers
    def path(self, obj: dict, field: str, where: str, reference=False, nullable=True, default=ROOT):
        if field not in obj:
            return default
        v = obj[field]
        loc = f"{where}.{field}"
        if v is None:
            if nullable:
                return None
            self.bad(loc, "must be a path, not null")
            return default
        if not isinstance(v, str):
            self.bad(loc, "must be a string path beginning with '$'")
            return default
        try:
            return compile_reference_path(v) if reference else compile_path(v)
        except PathSyntaxError as exc:
            self.bad(loc, str(exc))
            return default

    def result_path(self, obj: dict, where: str, field="ResultPath"):
        p = self.path(obj, field, where, reference=True)
        if p is not None and p.context:
            self.bad(
                f"{where}.{field}", "ResultPath must not begin with '$$' (it cannot write the Context Object)"
            )
            return ROOT
        return p

    def template(self, obj: dict, field: str, where: str) -> Template | None:
        if field not in obj:
            return None
        try:
            return Template(obj[field], f"{where}.{field}")
        except TemplateError as exc:
            self.bad(f"{where}.{field}" + (f".{exc.field}" if exc.field else ""), exc.message)
            return None

    def int_field(self, obj, field, where, minimum=1, default=None):
        if field not in obj:
            return default
        v = obj[field]
        if not _is_int(v) or v < minimum:
            self.bad(
                f"{where}.{field}",
                "must be a positive integer" if minimum == 1 else f"must be an integer >= {minimum}",
            )
            return default
        return v

    def target(self, graph_names: set, name: Any, where: str) -> None:
        if not isinstance(name, str):
            self.bad(where, "must be a state name (string)")
        elif name not in graph_names:
            self.bad(
                where,
                f"names state {name!r}, which does not exist in this scope"
                + (
                    ""
                    if name not in self.names_where
                    else f" (it is defined at {self.names_where[name]}; a transition cannot cross into or out "
                    f"of a Parallel branch or Map processor)"
                ),
            )

    # -- top level and graphs
    def top(self, d: dict):
        allowed = {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"}
        for k in d:
            if k not in allowed:
                self.bad(k, "unknown top-level field")
        ql = d.get("QueryLanguage", "JSONPath")
        if ql != "JSONPath":
            self.bad("QueryLanguage", _UNSUPPORTED_FIELDS["QueryLanguage"], unsupported=ql == "JSONata")
        if "Version" in d and d["Version"] != "1.0":
            self.bad("Version", 'only version "1.0" exists')
        timeout = self.int_field(d, "TimeoutSeconds", "", 1)
        if timeout is None and "TimeoutSeconds" in d:
            pass
        return self.graph(d, ""), timeout

    def graph(self, d: Any, where: str) -> Graph:
        prefix = f"{where}." if where else ""
        if not isinstance(d, dict):
            self.bad(where, "must be an object with StartAt and States")
            return Graph("", {}, where)
        start = d.get("StartAt")
        states_obj = d.get("States")
        if not isinstance(start, str):
            self.bad(prefix + "StartAt", "required: the name of the first state")
        if not isinstance(states_obj, dict) or not states_obj:
            self.bad(prefix + "States", "required: a non-empty object of states")
            return Graph(start or "", {}, where)
        states: dict[str, State] = {}
        for name, obj in states_obj.items():
            loc = f"{prefix}States.{name}"
            if len(name) > 80:
                self.bad(loc, "a state name must be at most 80 characters")
            if name in self.names_where:
                self.bad(
                    loc,
                    f"duplicate state name (also at {self.names_where[name]}); names must be "
                    f"unique in the whole state machine",
                )
            else:
                self.names_where[name] = loc
            st = self.state(name, obj, loc)
            if st is not None:
                states[name] = st
                self.all_states.setdefault(name, st)
        names = set(states_obj)
        if isinstance(start, str) and start not in names:
            self.bad(prefix + "StartAt", f"names state {start!r}, which does not exist in this scope")
        for st in states.values():
            for loc, tgt in _transitions(st):
                self.target(names, tgt, loc)
        # reachability (AWS rejects unreachable states)
        if isinstance(start, str) and start in states:
            seen, todo = set(), [start]
            while todo:
                n = todo.pop()
                if n in seen or n not in states:
                    continue
                seen.add(n)
                todo.extend(t for _, t in _transitions(states[n]) if isinstance(t, str))
            for n in states:
                if n not in seen:
                    self.bad(f"{prefix}States.{n}", "state is not reachable from StartAt")
        return Graph(start if isinstance(start, str) else "", states, where)

    # -- states
    def state(self, name: str, obj: Any, where: str) -> State | None:
        if not isinstance(obj, dict):
            self.bad(where, "a state must be a JSON object")
            return None
        typ = obj.get("Type")
        if typ not in _STATE_CLASSES:
            self.bad(
                where + ".Type", f"unknown or missing state Type {typ!r} (one of {', '.join(_STATE_CLASSES)})"
            )
            return None
        for k in obj:
            if k in ALLOWED_FIELDS[typ]:
                continue
            if k == "QueryLanguage" and obj[k] == "JSONPath":
                continue
            if k in _UNSUPPORTED_FIELDS:
                self.bad(f"{where}.{k}", _UNSUPPORTED_FIELDS[k], unsupported=True)
            else:
                self.bad(f"{where}.{k}", f"field not allowed in a {typ} state")
        st = _STATE_CLASSES[typ](name, where, obj)
        # flow
        if typ in ("Choice", "Succeed", "Fail"):
            pass
        else:
            has_next, end = "Next" in obj, obj.get("End")
            if "End" in obj and not isinstance(end, bool):
                self.bad(where + ".End", "must be a boolean")
            if has_next and end is True:
                self.bad(where, "a state cannot have both Next and End: true")
            elif not has_next and end is not True:
                self.bad(where, "a non-terminal state needs Next (or End: true)")
            if has_next and not isinstance(obj["Next"], str):
                self.bad(where + ".Next", "must be a state name (string)")
        if "Comment" in obj and not isinstance(obj["Comment"], str):
            self.bad(where + ".Comment", "must be a string")
        if typ != "Fail":
            st.input_path = self.path(obj, "InputPath", where)
            st.output_path = self.path(obj, "OutputPath", where)
        getattr(self, "_" + typ.lower())(st, obj, where)
        return st

    def _results(self, st: State, obj: dict, where: str, selector=True) -> None:
        st.parameters = self.template(obj, "Parameters", where)
        if selector:
            st.result_selector = self.template(obj, "ResultSelector", where)
        st.result_path = self.result_path(obj, where)

    def _errors(self, st: State, obj: dict, where: str) -> None:
        st.retry = self.retriers(obj.get("Retry", []), where + ".Retry") if "Retry" in obj else []
        st.catch = self.catchers(obj.get("Catch", []), where + ".Catch") if "Catch" in obj else []

    def error_equals(self, r: dict, where: str, last: bool) -> list[str]:
        ee = r.get("ErrorEquals")
        loc = where + ".ErrorEquals"
        if not isinstance(ee, list) or not ee or not all(isinstance(e, str) for e in ee):
            self.bad(loc, "required: a non-empty array of error names")
            return []
        if STATES_ALL in ee:
            if len(ee) != 1:
                self.bad(loc, "'States.ALL' must appear alone in its ErrorEquals")
            if not last:
                self.bad(loc, "'States.ALL' may only appear in the last element of the array")
        return ee

    def retriers(self, rs: Any, where: str) -> list[Retrier]:
        if not isinstance(rs, list):
            self.bad(where, "must be an array of Retriers")
            return []
        out = []
        for i, r in enumerate(rs):
            loc = f"{where}[{i}]"
            if not isinstance(r, dict):
                self.bad(loc, "a Retrier must be an object")
                continue
            for k in r:
                if k not in (
                    "ErrorEquals",
                    "IntervalSeconds",
                    "MaxAttempts",
                    "BackoffRate",
                    "MaxDelaySeconds",
                    "JitterStrategy",
                    "Comment",
                ):
                    self.bad(f"{loc}.{k}", "field not allowed in a Retrier")
            ee = self.error_equals(r, loc, i == len(rs) - 1)
            interval = self.int_field(r, "IntervalSeconds", loc, 1, 1)
            attempts = self.int_field(r, "MaxAttempts", loc, 0, 3)
            backoff = r.get("BackoffRate", 2.0)
            if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 1.0:
                self.bad(loc + ".BackoffRate", "must be a number >= 1.0")
                backoff = 2.0
            max_delay = self.int_field(r, "MaxDelaySeconds", loc, 1, None)
            jitter = r.get("JitterStrategy", "NONE")
            if jitter not in ("NONE", "FULL"):
                self.bad(loc + ".JitterStrategy", 'must be "FULL" or "NONE"')
                jitter = "NONE"
            out.append(Retrier(ee, interval, attempts, float(backoff), max_delay, jitter))
        return out

    def catchers(self, cs: Any, where: str) -> list[Catcher]:
        if not isinstance(cs, list):
            self.bad(where, "must be an array of Catchers")
            return []
        out = []
        for i, c in enumerate(cs):
            loc = f"{where}[{i}]"
            if not isinstance(c, dict):
                self.bad(loc, "a Catcher must be an object")
                continue
            for k in c:
                if k == "Assign":
                    self.bad(f"{loc}.{k}", _UNSUPPORTED_FIELDS["Assign"], unsupported=True)
                elif k not in ("ErrorEquals", "Next", "ResultPath", "Comment"):
                    self.bad(f"{loc}.{k}", "field not allowed in a Catcher")
            ee = self.error_equals(c, loc, i == len(cs) - 1)
            if not isinstance(c.get("Next"), str):
                self.bad(loc + ".Next", "required: the state to go to")
            out.append(Catcher(ee, c.get("Next"), self.result_path(c, loc)))
        return out

    def _task(self, st: TaskState, obj: dict, where: str) -> None:
        if not isinstance(obj.get("Resource"), str) or not obj.get("Resource"):
            self.bad(where + ".Resource", "required: the URI (ARN) of the task to run")
        self._results(st, obj, where)
        self._errors(st, obj, where)
        for f in ("TimeoutSeconds", "HeartbeatSeconds"):
            if f in obj and f + "Path" in obj:
                self.bad(where, f"a Task cannot have both {f} and {f}Path")
        st.timeout_seconds = self.int_field(obj, "TimeoutSeconds", where, 1)
        st.heartbeat_seconds = self.int_field(obj, "HeartbeatSeconds", where, 1)
        st.timeout_seconds_path = self.path(
            obj, "TimeoutSecondsPath", where, reference=True, nullable=False, default=None
        )
        st.heartbeat_seconds_path = self.path(
            obj, "HeartbeatSecondsPath", where, reference=True, nullable=False, default=None
        )
        if st.timeout_seconds and st.heartbeat_seconds and st.heartbeat_seconds >= st.timeout_seconds:
            self.bad(where + ".HeartbeatSeconds", "must be smaller than TimeoutSeconds")

    def _pass(self, st: PassState, obj: dict, where: str) -> None:
        self._results(st, obj, where, selector=False)

    def _choice(self, st: ChoiceState, obj: dict, where: str) -> None:
        choices = obj.get("Choices")
        if not isinstance(choices, list) or not choices:
            self.bad(where + ".Choices", "required: a non-empty array of Choice Rules")
            return
        for i, rule in enumerate(choices):
            try:
                st.choices.append(compile_rule(rule, True, f"{where}.Choices[{i}]"))
            except ChoiceRuleError as exc:
                self.bad(exc.location, exc.message, unsupported="not supported" in exc.message)
        st.uses_context = any(rule_uses_context(r) for r in st.choices)
        if "Default" in obj and not isinstance(obj["Default"], str):
            self.bad(where + ".Default", "must be a state name")

    def _wait(self, st: WaitState, obj: dict, where: str) -> None:
        given = [f for f in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath") if f in obj]
        if len(given) != 1:
            self.bad(
                where, "a Wait state needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath"
            )
        st.seconds = self.int_field(obj, "Seconds", where, 0)
        st.seconds_path = self.path(obj, "SecondsPath", where, reference=True, nullable=False, default=None)
        st.timestamp_path = self.path(
            obj, "TimestampPath", where, reference=True, nullable=False, default=None
        )
        if "Timestamp" in obj:
            st.timestamp = parse_timestamp(obj["Timestamp"])
            if st.timestamp is None:
                self.bad(
                    where + ".Timestamp",
                    "must be an RFC 3339 timestamp such as 2016-03-14T01:59:00Z (uppercase T and Z)",
                )

    def _succeed(self, st, obj, where) -> None:
        pass

    def _fail(self, st: FailState, obj: dict, where: str) -> None:
        for f in ("Error", "Cause"):
            loc = f"{where}.{f}"
            if f in obj and f + "Path" in obj:
                self.bad(where, f"a Fail state cannot have both {f} and {f}Path")
            if f in obj and not isinstance(obj[f], str):
                self.bad(loc, "must be a string")
            if f + "Path" in obj:
                v = obj[f + "Path"]
                expr = None
                if isinstance(v, str) and v.startswith("$"):
                    try:
                        expr = compile_reference_path(v)
                    except PathSyntaxError as exc:
                        self.bad(loc + "Path", str(exc))
                elif isinstance(v, str):
                    try:
                        expr = parse_intrinsic(v)
                    except IntrinsicSyntaxError as exc:
                        self.bad(loc + "Path", f"must be a Reference Path or an intrinsic function: {exc}")
                else:
                    self.bad(loc + "Path", "must be a string")
                setattr(st, f.lower() + "_expr", expr)

    def _parallel(self, st: ParallelState, obj: dict, where: str) -> None:
        self._results(st, obj, where)
        self._errors(st, obj, where)
        branches = obj.get("Branches")
        if not isinstance(branches, list) or not branches:
            self.bad(where + ".Branches", "required: a non-empty array of {StartAt, States}")
            return
        for i, b in enumerate(branches):
            loc = f"{where}.Branches[{i}]"
            if isinstance(b, dict):
                for k in b:
                    if k not in ("StartAt", "States", "Comment"):
                        self.bad(f"{loc}.{k}", "field not allowed in a branch")
            st.branches.append(self.graph(b, loc))

    def _map(self, st: MapState, obj: dict, where: str) -> None:
        self._results(st, obj, where)
        self._errors(st, obj, where)
        if "ItemSelector" in obj and "Parameters" in obj:
            self.bad(where, "a Map state cannot have both ItemSelector and (deprecated) Parameters")
        st.item_selector = st.parameters if "Parameters" in obj else self.template(obj, "ItemSelector", where)
        st.parameters = None
        if ("ItemProcessor" in obj) == ("Iterator" in obj):
            self.bad(where, "a Map state needs exactly one of ItemProcessor and (deprecated) Iterator")
        field = "ItemProcessor" if "ItemProcessor" in obj else "Iterator"
        proc = obj.get(field)
        ploc = f"{where}.{field}"
        mode = "INLINE"
        if isinstance(proc, dict):
            for k in proc:
                if k not in ("StartAt", "States", "Comment", "ProcessorConfig"):
                    self.bad(f"{ploc}.{k}", "field not allowed in an ItemProcessor")
            cfg = proc.get("ProcessorConfig", {})
            if not isinstance(cfg, dict):
                self.bad(ploc + ".ProcessorConfig", "must be an object")
                cfg = {}
            for k in cfg:
                if k not in ("Mode", "ExecutionType"):
                    self.bad(f"{ploc}.ProcessorConfig.{k}", "field not allowed in ProcessorConfig")
            mode = cfg.get("Mode", "INLINE")
            if mode not in ("INLINE", "DISTRIBUTED"):
                self.bad(ploc + ".ProcessorConfig.Mode", "must be INLINE or DISTRIBUTED")
            et = cfg.get("ExecutionType")
            if mode == "DISTRIBUTED":
                if et is None:
                    self.bad(
                        ploc + ".ProcessorConfig.ExecutionType", "required with Mode DISTRIBUTED (STANDARD)"
                    )
                elif et == "EXPRESS":
                    self.bad(
                        ploc + ".ProcessorConfig.ExecutionType",
                        "EXPRESS child executions are not supported: use STANDARD (EXPRESS children "
                        "cannot run .sync tasks and moto rejects them)",
                        unsupported=True,
                    )
                elif et != "STANDARD":
                    self.bad(ploc + ".ProcessorConfig.ExecutionType", "must be STANDARD or EXPRESS")
            elif et is not None:
                self.bad(ploc + ".ProcessorConfig.ExecutionType", "only allowed with Mode DISTRIBUTED")
            st.execution_type = et
        st.distributed = mode == "DISTRIBUTED"
        st.processor = self.graph(proc, ploc)
        st.items_path = self.path(obj, "ItemsPath", where, reference=True, nullable=False)
        if "MaxConcurrency" in obj and "MaxConcurrencyPath" in obj:
            self.bad(where, "a Map state cannot have both MaxConcurrency and MaxConcurrencyPath")
        st.max_concurrency = self.int_field(obj, "MaxConcurrency", where, 0, 0)
        st.max_concurrency_path = self.path(
            obj, "MaxConcurrencyPath", where, reference=True, nullable=False, default=None
        )
        if "Label" in obj:
            if not st.distributed:
                self.bad(where + ".Label", "only allowed in a DISTRIBUTED Map")
            elif not isinstance(obj["Label"], str) or len(obj["Label"]) > 40:
                self.bad(where + ".Label", "must be a string of at most 40 characters")
        if "ItemReader" in obj:
            if not st.distributed:
                self.bad(where + ".ItemReader", "ItemReader is only allowed in a DISTRIBUTED Map")
            st.item_reader = self.item_reader(obj["ItemReader"], where + ".ItemReader")
        if "ResultWriter" in obj:
            if not st.distributed:
                self.bad(where + ".ResultWriter", "ResultWriter is only allowed in a DISTRIBUTED Map")
            st.result_writer = self.result_writer(obj["ResultWriter"], where + ".ResultWriter")

    def result_writer(self, r: Any, where: str) -> ResultWriter | None:
        if not isinstance(r, dict):
            self.bad(where, "must be an object")
            return None
        rw = ResultWriter()
        for k in r:
            if k not in ("Resource", "Parameters", "WriterConfig"):
                self.bad(
                    f"{where}.{k}",
                    "field not allowed in a ResultWriter"
                    if k != "Arguments"
                    else _UNSUPPORTED_FIELDS["Arguments"],
                    unsupported=k == "Arguments",
                )
        if "Resource" not in r and "Parameters" not in r:
            self.bad(
                where,
                "a ResultWriter with only WriterConfig (results transformed into the state output, "
                "not exported) is not supported: give Resource and Parameters",
                unsupported=True,
            )
        elif r.get("Resource") != S3_PUT_OBJECT:
            self.bad(where + ".Resource", f"must be {S3_PUT_OBJECT}")
        elif not isinstance(r.get("Parameters"), dict):
            self.bad(where + ".Parameters", "required: an object with Bucket and Prefix")
        else:
            params = r["Parameters"]
            if "Bucket" not in params and "Bucket.$" not in params:
                self.bad(where + ".Parameters.Bucket", "required")
            for k in params:
                if k.removesuffix(".$") not in ("Bucket", "Prefix"):
                    self.bad(f"{where}.Parameters.{k}", "field not allowed (Bucket and Prefix only)")
            rw.parameters = self.template(r, "Parameters", where)
        cfg = r.get("WriterConfig", {})
        if not isinstance(cfg, dict):
            self.bad(where + ".WriterConfig", "must be an object")
            return rw
        for k in cfg:
            if k not in ("Transformation", "OutputType"):
                self.bad(
                    f"{where}.WriterConfig.{k}", "field not allowed (Transformation and OutputType only)"
                )
        rw.transformation = cfg.get("Transformation", "NONE")
        if rw.transformation not in TRANSFORMATIONS:
            self.bad(where + ".WriterConfig.Transformation", f"must be one of {', '.join(TRANSFORMATIONS)}")
        rw.output_type = cfg.get("OutputType", "JSON")
        if rw.output_type not in OUTPUT_TYPES:
            self.bad(where + ".WriterConfig.OutputType", f"must be one of {', '.join(OUTPUT_TYPES)}")
        return rw

    def item_reader(self, r: Any, where: str) -> ItemReader | None:
        if not isinstance(r, dict):
            self.bad(where, "must be an object")
            return None
        ir = ItemReader()
        for k in r:
            if k not in ("Resource", "Parameters", "ReaderConfig"):
                self.bad(
                    f"{where}.{k}",
                    "field not allowed in an ItemReader"
                    if k != "Arguments"
                    else _UNSUPPORTED_FIELDS["Arguments"],
                    unsupported=k == "Arguments",
                )
        res = r.get("Resource")
        if res != S3_GET_OBJECT:
            known = isinstance(res, str) and res.startswith("arn:aws:states:::s3:")
            self.bad(
                where + ".Resource",
                f"only {S3_GET_OBJECT} (a JSON array object) is supported"
                + (f", not {res!r}" if known else ""),
                unsupported=known,
            )
        ir.parameters = self.template(r, "Parameters", where)
        cfg = r.get("ReaderConfig", {})
        if not isinstance(cfg, dict):
            self.bad(where + ".ReaderConfig", "must be an object")
            return ir
        for k in cfg:
            if k not in ("InputType", "MaxItems", "MaxItemsPath"):
                self.bad(
                    f"{where}.ReaderConfig.{k}",
                    "not supported (the JSON reader takes InputType and MaxItems/MaxItemsPath)",
                    unsupported=True,
                )
        it = cfg.get("InputType")
        if res == S3_GET_OBJECT and it != "JSON":
            known = it in ("CSV", "JSONL", "PARQUET", "MANIFEST")
            self.bad(
                where + ".ReaderConfig.InputType",
                "only InputType JSON is supported"
                + (f", not {it}" if known else " (required for s3:getObject)"),
                unsupported=known,
            )
        if "MaxItems" in cfg and "MaxItemsPath" in cfg:
            self.bad(where + ".ReaderConfig", "cannot have both MaxItems and MaxItemsPath")
        ir.max_items = self.int_field(cfg, "MaxItems", where + ".ReaderConfig", 1)
        if ir.max_items is not None and ir.max_items > 100_000_000:
            self.bad(where + ".ReaderConfig.MaxItems", "must be at most 100000000")
        ir.max_items_path = self.path(
            cfg, "MaxItemsPath", where + ".ReaderConfig", reference=True, nullable=False, default=None
        )
        return ir


def _transitions(st: State) -> Iterator[tuple[str, Any]]:
    if st.type == "Choice":
        for i, r in enumerate(st.choices):
            yield f"{st.where}.Choices[{i}].Next", r.next
        if st.default is not None:
            yield f"{st.where}.Default", st.default
    elif st.next is not None:
        yield f"{st.where}.Next", st.next
    for i, c in enumerate(st.catch):
        if c.next is not None:
            yield f"{st.where}.Catch[{i}].Next", c.next
