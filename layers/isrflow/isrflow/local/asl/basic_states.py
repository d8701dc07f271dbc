"""The Task, Pass, Choice, Wait, Succeed and Fail states."""

from __future__ import annotations

import json
from typing import Any

from isrflow.local.asl.choice import ChoiceRuntimeError, parse_timestamp
from isrflow.local.asl.dataflow import DataFlowSteps
from isrflow.local.asl.errors import (
    IntegrationNotConfigured,
    TaskFailure,
)
from isrflow.local.asl.history import JsonText, compact_json
from isrflow.local.asl.integrations import TaskContext, is_lambda_arn, split_resource
from isrflow.local.asl.intrinsics import Call, IntrinsicError
from isrflow.local.asl.jsonpath import MISSING, Path, PathNotFound
from isrflow.local.asl.run_context import (
    Env,
    Failure,
    Run,
    error_of,
)
from isrflow.local.asl.states import (
    ChoiceState,
    FailState,
    PassState,
    State,
    SucceedState,
    TaskState,
    WaitState,
)


class BasicStates(DataFlowSteps):
    """Task, Pass, Choice, Wait, Succeed and Fail."""

    # -- Task
    def _task(self, st: TaskState, raw: Any, run: Run, cancel: tuple, entered_id: int, entered: float):
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
            env = Env(run, st.name, entered, retry_count)
            params = (
                effective
                if st.parameters is None
                else self._template(st.parameters, effective, env, st, entered_id, prev)
            )
            try:
                text = compact_json(params)
            except (TypeError, ValueError) as exc:
                raise self._runtime(
                    st, entered_id, f"the task parameters are not JSON: {exc}", prev
                ) from None
            self._check_size(text, "the task parameters", prev)
            if plain_lambda:
                d: dict[str, Any] = {"resource": resource, "input": JsonText(text)}
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
                error, cause = error_of(exc)
            if error is None and timeout is not None and run.clock.now() - started > timeout:
                error, cause = "States.Timeout", f"The task ran longer than its TimeoutSeconds ({timeout} s)"
            if error is None:
                try:
                    out_text = compact_json(result)
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
                raise Failure(error, cause, prev)
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
                f"{field} '{path.text}' must select a positive integer, not {compact_json(v)}",
                entered_id,
            )
        return v

    # -- Pass, Choice, Wait, Succeed, Fail
    def _pass(self, st: PassState, raw: Any, run: Run, cancel: tuple, entered_id: int, entered: float):
        effective = self._path(st.input_path, raw, st, run, entered, entered_id, "InputPath")
        if st.parameters is not None:
            effective = self._template(
                st.parameters, effective, Env(run, st.name, entered), st, entered_id, entered_id
            )
        result = effective if st.result is MISSING else st.result
        return self._finish_state(st, raw, result, run, entered, entered_id, entered_id)

    def _choice(self, st: ChoiceState, raw: Any, run: Run, cancel: tuple, entered_id: int, entered: float):
        effective = self._path(st.input_path, raw, st, run, entered, entered_id, "InputPath")
        ctx = Env(run, st.name, entered).context_object if st.uses_context else MISSING
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
                raise Failure(
                    "States.NoChoiceMatched", f"No Matches! (state '{st.name}' has no Default)", entered_id
                )
            target = st.default
        output = self._path(st.output_path, effective, st, run, entered, entered_id, "OutputPath")
        prev = run.history.add(
            "ChoiceStateExited", run.clock.now(), entered_id, {"name": st.name, "output": output}
        )
        return target, output, prev

    def _wait(self, st: WaitState, raw: Any, run: Run, cancel: tuple, entered_id: int, entered: float):
        effective = self._path(st.input_path, raw, st, run, entered, entered_id, "InputPath")
        seconds: float
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
                    f"SecondsPath must select a non-negative integer, not {compact_json(seconds)}",
                    entered_id,
                )
        else:
            ts = st.timestamp
            if ts is None:
                timestamp_path = st.timestamp_path
                assert timestamp_path is not None  # a Wait state has exactly one of its four fields (builder)
                try:
                    value = timestamp_path.apply(effective)
                except PathNotFound:
                    raise self._runtime(
                        st, entered_id, f"Invalid path '{timestamp_path.text}' (TimestampPath)", entered_id
                    ) from None
                ts = parse_timestamp(value)
                if ts is None:
                    raise self._runtime(
                        st,
                        entered_id,
                        f"TimestampPath must select an RFC 3339 timestamp, not {compact_json(value)}",
                        entered_id,
                    )
            seconds = max(0.0, ts.timestamp() - run.clock.now())
        run.sleep(seconds, cancel)
        output = self._path(st.output_path, effective, st, run, entered, entered_id, "OutputPath")
        prev = run.history.add(
            "WaitStateExited", run.clock.now(), entered_id, {"name": st.name, "output": output}
        )
        return (None if st.end else st.next), output, prev

    def _succeed(self, st: SucceedState, raw: Any, run: Run, cancel: tuple, entered_id: int, entered: float):
        effective = self._path(st.input_path, raw, st, run, entered, entered_id, "InputPath")
        output = self._path(st.output_path, effective, st, run, entered, entered_id, "OutputPath")
        prev = run.history.add(
            "SucceedStateExited", run.clock.now(), entered_id, {"name": st.name, "output": output}
        )
        return None, output, prev

    def _fail(self, st: FailState, raw: Any, run: Run, cancel: tuple, entered_id: int, entered: float):
        env = Env(run, st.name, entered)
        error, cause = st.error, st.cause
        if st.error_expr is not None:
            error = self._fail_field(st, st.error_expr, raw, env, entered_id, "ErrorPath")
        if st.cause_expr is not None:
            cause = self._fail_field(st, st.cause_expr, raw, env, entered_id, "CausePath")
        raise Failure(error, cause, entered_id)

    def _fail_field(
        self, st: FailState, expr: Path | Call, raw: Any, env: Env, entered_id: int, field: str
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
                st, entered_id, f"{field} must resolve to a string, not {compact_json(v)}", entered_id
            )
        return v
