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

Layout: this module holds the API (:class:`Interpreter`: start, get, describe, list). Its
steps are inherited, one concern per module: :mod:`.dataflow` (running a graph, the data-flow
steps and Retry/Catch every state shares), :mod:`.basic_states` (Task, Pass, Choice, Wait,
Succeed, Fail) and :mod:`.map_states` (Parallel, Map). :mod:`.execution` has the
:class:`Execution`/:class:`MapRun` objects, :mod:`.run_context` what one run carries.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Callable
from typing import Any

from isrflow.local.asl.clock import Clock, RealClock
from isrflow.local.asl.definition import StateMachine
from isrflow.local.asl.errors import (
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
)
from isrflow.local.asl.execution import Execution, MapRun
from isrflow.local.asl.history import compact_json
from isrflow.local.asl.integrations import Integrations
from isrflow.local.asl.map_states import ParallelMapStates
from isrflow.local.asl.run_context import (
    PAYLOAD_LIMIT,
)

_NAME_OK = re.compile(r"^[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]{1,80}$")


class Interpreter(ParallelMapStates):
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

    # -- API
    def start_execution(
        self,
        machine: StateMachine,
        input: Any = None,
        name: str | None = None,
        *,
        wait: bool = True,
        before_start: Callable[[Execution], object] | None = None,
    ) -> Execution:
        """Start an execution of ``machine`` on ``input`` (a JSON-compatible value; default
        ``{}``). ``wait=True`` runs it to completion on this thread; ``wait=False`` runs it on
        a background thread (use ``Execution.wait()`` / ``stop()``). ``before_start(execution)``
        runs once the execution exists and before its first state (a local runtime records it
        there, so a crash at any later point leaves a record)."""
        if input is None:
            input = {}
        text = compact_json(input)  # raises TypeError for non-JSON input, as the API would reject it
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
