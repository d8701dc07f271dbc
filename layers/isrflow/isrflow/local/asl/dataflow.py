"""Running an execution's graph and the data-flow steps every state shares (InputPath,
Parameters, ResultSelector, ResultPath, OutputPath, payload size, Retry and Catch).

:class:`DataFlowSteps` is the base of :class:`~isrflow.local.asl.interpreter.Interpreter`; the states
themselves are in :mod:`isrflow.local.asl.basic_states` and :mod:`isrflow.local.asl.map_states`.
"""

from __future__ import annotations

import random
import threading
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from isrflow.local.asl.clock import Clock
from isrflow.local.asl.definition import StateMachine
from isrflow.local.asl.execution import ABORTED, FAILED, SUCCEEDED, TIMED_OUT, Execution, MapRun
from isrflow.local.asl.history import compact_json
from isrflow.local.asl.integrations import Integrations
from isrflow.local.asl.jsonpath import MISSING, ROOT, Path, PathNotFound, PathSetError
from isrflow.local.asl.payload_template import PayloadTemplateEvalError
from isrflow.local.asl.run_context import (
    DISCARDED,
    UNCATCHABLE,
    Abort,
    Env,
    Failure,
    Run,
    TimedOut,
)
from isrflow.local.asl.states import (
    Graph,
    State,
    error_matches,
)


class DataFlowSteps:
    """Execution running and data-flow steps (the interpreter's configuration is set by its ``__init__``)."""

    # -- configuration (set by Interpreter.__init__)
    integrations: Integrations
    clock: Clock
    item_reader: Callable[[str, str], bytes] | None
    result_writer: Callable[[str, str, bytes], None] | None
    max_workers: int
    region: str
    account: str
    role_arn: str
    payload_limit_bytes: int | None
    max_history_events: int | None
    _seeded: bool
    _rng: random.Random
    _rng_lock: threading.Lock
    _lock: threading.Lock
    _executions: dict[str, Execution]
    _map_runs: dict[str, MapRun]
    _handlers: dict[str, Callable[..., tuple[Any, Any, int]]]

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

    # -- running an execution
    def _execute(
        self, execution: Execution, deadline: float | None, extra_cancel: tuple, timeout_aborts: bool = False
    ) -> None:
        run = Run(self, execution, deadline, (execution._stop_event, *extra_cancel), timeout_aborts)
        prev = run.event(
            "ExecutionStarted",
            {"input": execution.input, "inputDetails": {"truncated": False}, "roleArn": self.role_arn},
            0,
        )
        try:
            output, prev = self._run_graph(execution.graph, execution.input, run, run.base_cancel, prev)
            if self.payload_limit_bytes is not None:
                self._check_size(compact_json(output), "the execution output", prev)
        except Failure as f:
            run.event("ExecutionFailed", self._error_details(f.error, f.cause), f.prev)
            self._finish(execution, FAILED, error=f.error, cause=f.cause)
        except Abort:
            err, cause = execution._stop_reason
            run.event("ExecutionAborted", self._error_details(err, cause), len(execution._history))
            self._finish(execution, ABORTED, error=err, cause=cause)
        except TimedOut:
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

    def _run_graph(self, graph: Graph, data: Any, run: Run, cancel: tuple, prev: int) -> tuple[Any, int]:
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
    def _runtime(self, st: State, entered_id: int, message: str, prev: int) -> Failure:
        return Failure(
            "States.Runtime",
            f"An error occurred while executing the state '{st.name}' "
            f"(entered at the event id #{entered_id}). {message}",
            prev,
        )

    def _path(
        self, path: Path | None, data: Any, st: State, run: Run, entered: float, entered_id: int, field: str
    ) -> Any:
        if path is ROOT:
            return data
        if path is None:
            return {}
        try:
            ctx = Env(run, st.name, entered).context_object if path.context else MISSING
            return path.apply(data, ctx)
        except PathNotFound:
            raise self._runtime(
                st,
                entered_id,
                f"Invalid path '{path.text}' : No results for path: {path.text} ({field})",
                entered_id,
            ) from None

    def _template(self, tpl, data: Any, env: Env, st: State, entered_id: int, prev: int) -> Any:
        try:
            return tpl.evaluate(data, env)
        except PayloadTemplateEvalError as exc:
            if exc.error == "States.Runtime":
                raise self._runtime(st, entered_id, exc.cause, prev) from None
            raise Failure(exc.error, exc.cause, prev) from None

    def _check_size(self, text: str, what: str, prev: int) -> None:
        limit = self.payload_limit_bytes
        if limit is not None and len(text) * 4 > limit:
            n = len(text.encode("utf-8"))
            if n > limit:
                raise Failure(
                    "States.DataLimitExceeded",
                    f"The state/task returned a result with a size exceeding the maximum number "
                    f"of bytes service limit ({what}: {n} bytes > {limit})",
                    prev,
                )

    def _finish_state(
        self, st: State, raw: Any, result: Any, run: Run, entered: float, entered_id: int, prev: int
    ) -> tuple[str | None, Any, int]:
        """ResultSelector -> ResultPath -> OutputPath, then the StateExited event."""
        if st.result_path is None or result is DISCARDED:
            output = raw
        else:
            if st.result_selector is not None:
                result = self._template(
                    st.result_selector, result, Env(run, st.name, entered), st, entered_id, prev
                )
            output = self._result_path(st.result_path, raw, result, st, entered_id, prev)
        output = self._path(st.output_path, output, st, run, entered, entered_id, "OutputPath")
        if self.payload_limit_bytes is not None:
            self._check_size(compact_json(output), f"the output of state '{st.name}'", prev)
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
                f"Unable to apply ReferencePath {path.text} to input {compact_json(raw)[:1000]}: {exc}",
                prev,
            ) from None

    def _with_recovery(
        self,
        st: State,
        raw: Any,
        run: Run,
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
            except Failure as f:
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
                            self._check_size(compact_json(output), f"the output of state '{st.name}'", prev)
                        prev = run.history.add(
                            st.type + "StateExited",
                            run.clock.now(),
                            prev,
                            {"name": st.name, "output": output},
                        )
                        return c.next, output, prev
                raise
            return self._finish_state(st, raw, result, run, entered, entered_id, prev)
