"""Validation and compilation of an ASL definition into the model of :mod:`isrflow.local.asl.states`.

Every problem is collected (not only the first) with its location; Map states are added by
:class:`isrflow.local.asl.map_builder.DefinitionBuilder`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from isrflow.local.asl.choice import ChoiceRuleError, compile_rule, parse_timestamp, rule_uses_context
from isrflow.local.asl.errors import DefinitionError, UnsupportedFeatureError
from isrflow.local.asl.intrinsics import Call, IntrinsicSyntaxError, parse_intrinsic
from isrflow.local.asl.jsonpath import (
    ROOT,
    Path,
    PathSyntaxError,
    compile_path,
    compile_reference_path,
)
from isrflow.local.asl.payload_template import PayloadTemplate, PayloadTemplateError
from isrflow.local.asl.states import (
    STATE_CLASSES,
    STATES_ALL,
    Catcher,
    ChoiceState,
    FailState,
    Graph,
    ParallelState,
    PassState,
    Retrier,
    State,
    TaskState,
    WaitState,
)

UNSUPPORTED_FIELDS = {
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


# --------------------------------------------------------------------------- builder


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class StateBuilder:
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

    def template(self, obj: dict, field: str, where: str) -> PayloadTemplate | None:
        if field not in obj:
            return None
        try:
            return PayloadTemplate(obj[field], f"{where}.{field}")
        except PayloadTemplateError as exc:
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
            self.bad("QueryLanguage", UNSUPPORTED_FIELDS["QueryLanguage"], unsupported=ql == "JSONata")
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
        if typ not in STATE_CLASSES:
            self.bad(
                where + ".Type", f"unknown or missing state Type {typ!r} (one of {', '.join(STATE_CLASSES)})"
            )
            return None
        for k in obj:
            if k in ALLOWED_FIELDS[typ]:
                continue
            if k == "QueryLanguage" and obj[k] == "JSONPath":
                continue
            if k in UNSUPPORTED_FIELDS:
                self.bad(f"{where}.{k}", UNSUPPORTED_FIELDS[k], unsupported=True)
            else:
                self.bad(f"{where}.{k}", f"field not allowed in a {typ} state")
        st = STATE_CLASSES[typ](name, where, obj)
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
                    self.bad(f"{loc}.{k}", UNSUPPORTED_FIELDS["Assign"], unsupported=True)
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
                expr: Path | Call | None = None
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


def _transitions(st: State) -> Iterator[tuple[str, Any]]:
    if isinstance(st, ChoiceState):
        for i, r in enumerate(st.choices):
            yield f"{st.where}.Choices[{i}].Next", r.next
        if st.default is not None:
            yield f"{st.where}.Default", st.default
    elif st.next is not None:
        yield f"{st.where}.Next", st.next
    for i, c in enumerate(st.catch):
        if c.next is not None:
            yield f"{st.where}.Catch[{i}].Next", c.next
