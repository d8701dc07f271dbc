"""The embedded default: template.yaml and the ASL files, whole on one machine.

Everything is wired from ``template.yaml`` (functions -> handler file, environment, timeout;
the registry queue -> the writer's batch settings; the state machines' substitutions), so the
local runtime and AWS cannot drift. Behind the integrations sit local services:

- Lambda: the real handlers in a process pool using all cores (:mod:`.lambdas`);
- S3: the repository's ``file://`` datastore; the data bucket's name maps to its root (the
  Distributed Maps' ItemReader reads and ResultWriter writes objects there);
- SQS: the durable SQLite queue (:mod:`.queue`) feeding the registry writer in batches like
  the event source mapping (:mod:`.event_source`);
- the registry: the repository's SQLite (or PostgreSQL) database;
- Step Functions: the project's ASL interpreter (:mod:`.asl`);
- ECS (``ecs:runTask.sync``): the template's Fargate tasks as subprocesses whose exit code is
  the container's; a non-zero exit fails the state with ``States.TaskFailed`` (:mod:`.tasks`).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from isrflow.infra.settings import (
    ENV_DATASTORE_ROOT,
    ENV_REGISTRY_QUEUE_URL,
    ENV_REGISTRY_SECRET_ARN,
    ENV_REGISTRY_URL,
)
from isrflow.io.calib_cache import ENV_CACHE_DIR
from isrflow.io.storage import ObjectNotFoundError, storage_for
from isrflow.local.asl import (
    ECS_RUN_TASK_SYNC,
    Execution,
    ExecutionAlreadyExists,
    Interpreter,
    LocalIntegrations,
    StateMachine,
    TaskFailure,
)
from isrflow.local.event_source import QueuePoller
from isrflow.local.lambdas import LambdaError, LambdaPool, LocalFunction, invoke_here
from isrflow.local.queue import LocalQueue
from isrflow.local.records import ExecutionRecorder, InvocationRecord
from isrflow.local.sam_template import LocalApp, load_app
from isrflow.local.tasks import LocalTasks
from isrflow.local.throttle import ConcurrencyGate, LambdaThrottled
from isrflow.registry.repo import read_repo_config

#: The project root (template.yaml, functions/, statemachines/).
PROJECT_ROOT = Path(__file__).resolve().parents[4]
QUEUE_FILE = "queue.sqlite3"
#: Library modules the handlers import lazily (short cold starts on Lambda: the science stack is
#: loaded by the invocations that use it). A local pool worker is a warm Lambda of every function,
#: so it imports them when it starts instead of inside an execution's first ISR invocation.
WARM_IMPORTS = (
    "isrflow.isr.pipeline",
    "isrflow.io.rawio",
    "isrflow.io.exposure_io",
    "isrflow.io.calib_cache",
)
#: The calibration cache's disk tier of the local pool, under the repository (:mod:`isrflow.io.calib_cache`).
CALIB_CACHE_DIR = "cache/calibs"


class _PoolIntegrations(LocalIntegrations):
    """lambda:invoke dispatched to the process pool, errors reported as the Lambda service does."""

    def __init__(self, runtime: LocalRuntime):
        super().__init__({name: (lambda event, context: None) for name in runtime.functions})
        self.runtime = runtime

    def call_handler(self, name: str, event: Any, task, request_id: str) -> Any:
        fn = self.runtime.functions[name]
        gate = getattr(self.runtime, "throttles", None) or _NO_GATE  # benchmarks pass a bare runtime
        try:
            recorder = getattr(self.runtime, "invocation_recorder", None)
            on_done = recorder(name, task.execution_arn) if recorder is not None else None
            with gate.slot(name):
                return self.runtime.pool.invoke(fn, event, on_done=on_done)
        except LambdaThrottled as exc:  # refused by the "Lambda service": the handler never ran
            raise TaskFailure(exc.error, exc.cause) from None
        except LambdaError as exc:
            raise TaskFailure(
                exc.error,
                json.dumps(
                    {
                        "errorMessage": exc.message,
                        "errorType": exc.error,
                        "requestId": request_id,
                        "stackTrace": exc.trace,
                    }
                ),
            ) from None


_NO_GATE = ConcurrencyGate()


class LocalRuntime:
    """Run the template's state machines against a repository directory.

    ``clock`` (the interpreter's: Wait states, retry back-offs) and ``seed`` (its random numbers:
    JitterStrategy FULL, States.UUID) make runs deterministic in tests. The registry queue and
    its event source mapping behave as the template declares them (visibility timeout, max
    receive count, batch size, batching window); ``throttles`` enforces each function's
    ReservedConcurrentExecutions and takes injected throttles (:mod:`.throttle`).
    """

    def __init__(
        self,
        repo: str | Path,
        *,
        processes: int | None = None,
        template: str | Path | None = None,
        clock=None,
        parameters: dict[str, str] | None = None,
        seed: int | None = None,
        containers: Any = None,
    ):
        """``containers``: a :class:`~isrflow.local.containers.session.ContainerSession` to run every
        function in its Lambda container (``sam local start-lambda``) with the registry queue on
        SQS (moto server) instead of the process pool and the local queue."""
        self.repo = Path(repo).absolute()
        self.containers = containers
        config = read_repo_config(self.repo)
        self.registry_url = config.registry_url(self.repo)
        self.datastore_root = storage_root(config.datastore_root(self.repo))
        self.app: LocalApp = load_app(template or PROJECT_ROOT / "template.yaml", parameters)
        self.recorder = ExecutionRecorder(self.repo)
        queue_spec = self.app.queues[self._writer_mapping().queue]
        dlq = queue_spec.dead_letter_target or f"{queue_spec.name}-dlq"
        self.queue: LocalQueue | None
        if containers is None:
            self.queue = LocalQueue(
                self.repo / QUEUE_FILE,
                queue_spec.name,
                visibility_timeout=queue_spec.visibility_timeout_s,
                max_receive_count=queue_spec.max_receive_count,
                dead_letter=dlq,
            )
            env = {
                ENV_DATASTORE_ROOT: self.datastore_root,
                ENV_REGISTRY_QUEUE_URL: self.queue.url,
                ENV_REGISTRY_URL: self.registry_url,
                ENV_REGISTRY_SECRET_ARN: "",
            }
        else:
            self.queue = None
            env = containers.function_env()
        self.functions: dict[str, LocalFunction] = {}
        for spec in self.app.functions.values():
            environment = dict(spec.environment) | env
            if (
                containers is None and ENV_CACHE_DIR in environment
            ):  # the pool's processes share one disk cache
                environment[ENV_CACHE_DIR] = str(self.repo / CALIB_CACHE_DIR)
            self.functions[spec.name] = LocalFunction(
                name=spec.name,
                handler_file=str(spec.handler_file),
                handler_attr=spec.handler_attribute,
                environment=environment,
                timeout_s=float(spec.timeout_s),
                memory_mb=spec.memory_mb,
            )
        self.bucket_names = {b.name for b in self.app.buckets.values()}
        self.throttles = ConcurrencyGate(
            {spec.name: spec.reserved_concurrency for spec in self.app.functions.values()}
        )
        # every worker loads the handlers the state machines invoke when it starts, not at its first call
        # (the registry writer runs in this process, behind the event source)
        writer_name = self.app.functions[self._writer_mapping().function].name
        preload = [fn for name, fn in self.functions.items() if name != writer_name]
        self.pool = (
            LambdaPool(processes, preload=preload, modules=WARM_IMPORTS)
            if containers is None
            else containers.lambdas(self.app)
        )
        integrations = _PoolIntegrations(self)
        self.tasks = LocalTasks(self.app, env, self.repo / "logs" / "tasks")
        integrations.register_service(ECS_RUN_TASK_SYNC, self.tasks.run_task_sync)
        self.interpreter = Interpreter(
            integrations,
            item_reader=self._read_object,
            result_writer=self._write_object,
            clock=clock,
            seed=seed,
        )
        mapping = self._writer_mapping()
        writer = self.functions[self.app.functions[mapping.function].name]
        # As on AWS: items the writer returns come back when it says (ChangeMessageVisibility) or
        # after the queue's visibility timeout; no local shortcut (retry_delay_s=None).
        if containers is None:
            assert self.queue is not None  # the local queue is made above when containers is None
            self.poller = QueuePoller(
                self.queue,
                lambda event: _invoke_in_process(writer, event),
                batch_size=mapping.batch_size,
                window_s=float(mapping.batching_window_s),
                retry_delay_s=None,
                queue_arn=queue_spec.arn,
                report_batch_item_failures=mapping.report_batch_item_failures,
            )
        else:
            self.poller = containers.event_source(lambda event: self.pool.invoke(writer, event), mapping)
        self.machines = {
            sm.name: StateMachine.from_json(sm.definition_text(), sm.name, arn=sm.arn)
            for sm in self.app.state_machines.values()
        }
        self._started = False

    def _writer_mapping(self):
        mappings = [m for m in self.app.event_source_mappings if m.enabled]
        if len(mappings) != 1:
            raise RuntimeError(
                f"expected one queue -> function mapping in the template, found {len(mappings)}"
            )
        return mappings[0]

    def _read_object(self, bucket: str, key: str) -> bytes:
        """The ItemReader's s3:getObject: the data bucket is the repository's datastore."""
        if bucket not in self.bucket_names:
            raise TaskFailure("S3.NoSuchBucket", json.dumps({"errorMessage": f"no local bucket {bucket!r}"}))
        uri = f"{self.datastore_root.rstrip('/')}/{key}"
        try:
            return storage_for(uri).read_bytes(uri)
        except ObjectNotFoundError:
            raise TaskFailure("S3.NoSuchKey", json.dumps({"errorMessage": f"{uri} does not exist"})) from None

    def _write_object(self, bucket: str, key: str, body: bytes) -> None:
        """The ResultWriter's s3:putObject: into the repository's datastore, like ``_read_object``."""
        if bucket not in self.bucket_names:
            raise TaskFailure("S3.NoSuchBucket", json.dumps({"errorMessage": f"no local bucket {bucket!r}"}))
        uri = f"{self.datastore_root.rstrip('/')}/{key}"
        storage_for(uri).write_bytes(uri, body)

    def machine(self, name_or_arn: str) -> StateMachine:
        for key, machine in self.machines.items():
            if name_or_arn in (key, machine.arn) or key.startswith(name_or_arn):
                return machine
        raise KeyError(f"no state machine {name_or_arn!r}; known: {', '.join(self.machines)}")

    def start(self) -> LocalRuntime:
        if not self._started:
            if self.queue is not None:  # messages a killed runtime had received are not hidden for 15 min
                self.queue.release_abandoned()
            self.poller.start()
            self._started = True
        return self

    def run(
        self, state_machine: str, payload: dict, name: str | None = None, *, wait: bool = True
    ) -> Execution:
        """Start an execution (and by default wait for it)."""
        self.start()
        machine = self.machine(state_machine)
        name = name or uuid.uuid4().hex[:16]
        if self.recorder.exists(machine.name, name):  # names stay unique across runtime restarts, as on AWS
            arn = (machine.arn or "").replace(":stateMachine:", ":execution:", 1) + ":" + name
            raise ExecutionAlreadyExists(f"Execution Already Exists: '{arn}'")
        execution = self.interpreter.start_execution(
            machine, payload, name=name, wait=wait, before_start=self.recorder.begin
        )
        if wait:
            self.recorder.persist(execution)
        else:
            self.recorder.track(execution)
        return execution

    def drain_registry_queue(self, timeout_s: float = 120.0, poll_s: float = 0.1) -> dict[str, int]:
        """Start the writer and wait (up to ``timeout_s``) until the registry queue holds no visible
        or in-flight message: whatever an earlier, killed runtime's workers sent is applied before
        anyone reads the registry to decide what is left to do. Returns the queue's counts then
        (dead-lettered messages stay where they are: ``isrflow registry redrive``)."""
        self.start()
        if self.queue is None:
            return {}
        deadline = time.monotonic() + timeout_s
        counts = self.queue.counts()
        while (counts["visible"] or counts["in_flight"]) and time.monotonic() < deadline:
            time.sleep(poll_s)
            counts = self.queue.counts()
        return counts

    def invocation_recorder(self, name: str, execution_arn: str):
        """``on_done(seconds, ok)`` for one Lambda invocation made for ``execution_arn``."""
        fn = self.functions[name]
        architecture = next(
            (a for f in self.app.functions.values() if f.name == name for a in f.architectures), "x86_64"
        )

        def on_done(seconds: float, ok: bool) -> None:
            self.recorder.invocation(
                InvocationRecord(
                    function=name,
                    memory_mb=fn.memory_mb,
                    architecture=architecture,
                    duration_s=seconds,
                    execution_arn=execution_arn,
                    ok=ok,
                )
            )

        return on_done

    def close(self) -> None:
        self.recorder.stop_running()
        self.pool.close()  # in-flight handlers finish first (a Summarize may be waiting for the writer)
        self.poller.stop()
        self.recorder.close()

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _invoke_in_process(fn: LocalFunction, event: dict) -> Any:
    status, value = invoke_here(fn, event)
    if status == "ok":
        return value
    name, message, _ = value
    raise LambdaError(name, message)


def storage_root(root: str) -> str:
    """A datastore root as a URI (plain paths become file://)."""
    from isrflow.io.datastore import normalize_root

    return normalize_root(root)
