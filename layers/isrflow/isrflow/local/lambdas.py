"""Local Lambda: run the real handlers in a process pool (all cores) with a Lambda-like context.

A function is its handler file + attribute, its environment and its timeout, as
template.yaml declares them. Each worker process loads a handler module once (by file path,
under a unique module name, so every function's ``app.py`` can coexist) and sets the
function's environment around each call. A handler's exception comes back as an error with
the exception's class name and message, as the Lambda service reports it to Step Functions.

Workers never re-run the caller's ``__main__``: multiprocessing's forkserver and spawn start
methods normally re-import the main script in every child, so a plain script without an
``if __name__ == "__main__"`` guard would run again (and try to start runtimes) in each worker.
The handlers need nothing from ``__main__``, so :func:`script_safe_context` starts workers (and
the fork server) while ``__main__`` is replaced by an empty module.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile
import threading
import time
import traceback
import types
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext, ForkServerProcess, SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any

from isrflow.local.processes import die_with


@dataclass(frozen=True)
class LocalFunction:
    """What the local runtime needs to invoke one function."""

    name: str
    handler_file: str
    handler_attr: str = "lambda_handler"
    environment: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 900.0
    memory_mb: int = 1024

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:local:000000000000:function:{self.name}"


class LambdaError(Exception):
    """A handler failed: ``error`` is the error name Step Functions sees, ``cause`` its JSON cause."""

    def __init__(self, error: str, message: str, trace: list[str] | None = None):
        super().__init__(f"{error}: {message}")
        self.error = error
        self.message = message
        self.trace = trace or []


class LambdaContext:
    """The attributes handlers use from the Lambda context object."""

    def __init__(self, fn: LocalFunction, deadline: float):
        self.function_name = fn.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = fn.arn
        self.memory_limit_in_mb = fn.memory_mb
        self.aws_request_id = uuid.uuid4().hex
        self.log_group_name = f"/aws/lambda/{fn.name}"
        self.log_stream_name = "local"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


_MODULES: dict[tuple[str, str], Any] = {}


def _handler(fn: LocalFunction):
    key = (fn.handler_file, fn.handler_attr)
    handler = _MODULES.get(key)
    if handler is None:
        path = Path(fn.handler_file)
        module_name = f"isrflow_fn_{fn.name}_{abs(hash(str(path))) % 10**8}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise LambdaError("Runtime.ImportModuleError", f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        handler = getattr(module, fn.handler_attr)
        _MODULES[key] = handler
    return handler


@contextmanager
def _function_environment(fn: LocalFunction):
    """``fn``'s environment variables set in this process, the previous values restored after."""
    saved = {k: os.environ.get(k) for k in fn.environment}
    os.environ.update(fn.environment)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def invoke_here(fn: LocalFunction, event: Any) -> tuple[str, Any]:
    """Run one invocation in this process: ("ok", result) or ("error", (name, message, trace))."""
    with _function_environment(fn):
        try:
            result = _handler(fn)(event, LambdaContext(fn, time.time() + fn.timeout_s))
            return "ok", result
        except LambdaError as exc:
            return "error", (exc.error, exc.message, exc.trace)
        except Exception as exc:  # the Lambda service reports the class name and message
            return "error", (type(exc).__name__, str(exc), traceback.format_exception(exc)[-8:])


def invoke_here_timed(fn: LocalFunction, event: Any) -> tuple[str, Any, float]:
    """:func:`invoke_here` plus the handler's wall seconds in the worker (what Lambda bills)."""
    start = time.perf_counter()
    status, value = invoke_here(fn, event)
    return status, value, time.perf_counter() - start


_MAIN_SWAP = threading.Lock()


@contextmanager
def _main_hidden():
    """While a worker process is being started, ``__main__`` is an empty module: the child's
    preparation data then names no main script to re-import (see the module docstring)."""
    with _MAIN_SWAP:
        main = sys.modules.get("__main__")
        if main is None or getattr(main, "__file__", None) is None:  # Jupyter, python -c: nothing to hide
            yield
            return
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


class _ScriptSafeForkServerProcess(ForkServerProcess):
    @staticmethod
    def _Popen(process_obj):
        with _main_hidden():
            return ForkServerProcess._Popen(process_obj)


class _ScriptSafeSpawnProcess(SpawnProcess):
    @staticmethod
    def _Popen(process_obj):
        with _main_hidden():
            return SpawnProcess._Popen(process_obj)


class _ScriptSafeForkServerContext(ForkServerContext):
    Process = _ScriptSafeForkServerProcess


class _ScriptSafeSpawnContext(SpawnContext):
    Process = _ScriptSafeSpawnProcess


def script_safe_context():
    """The pool's multiprocessing context: forkserver on Linux, spawn elsewhere, main-script safe."""
    return _ScriptSafeForkServerContext() if sys.platform.startswith("linux") else _ScriptSafeSpawnContext()


def preload_handlers(functions: Sequence[LocalFunction], modules: Sequence[str] = ()) -> None:
    """Load the handler modules of ``functions`` into this process now (each imported with its
    function's environment set, as at an invocation), then import ``modules`` (library modules
    the handlers import lazily), so that a worker's first invocation of each function does not
    pay for the imports (sqlalchemy, boto3, astropy: tenths of a second per function). A handler
    or module that fails to load here is skipped; the invocation that needs it reports the error."""
    _load_handlers(functions)
    for name in modules:
        with contextlib.suppress(Exception):  # reported by the invocation that needs it
            importlib.import_module(name)


def _load_handlers(functions: Sequence[LocalFunction]) -> None:
    for fn in functions:
        # A failure is reported by the invocation that needs it, as Runtime.ImportModuleError would be.
        with _function_environment(fn), contextlib.suppress(Exception):
            _handler(fn)


def _start_worker(owner_pid: int, preload: Sequence[LocalFunction], modules: Sequence[str]) -> None:
    """A pool worker's initializer: die with the pool's owner, then load the handlers."""
    die_with(owner_pid)
    preload_handlers(preload, modules)


def _rendezvous(directory: str, count: int, timeout_s: float) -> int:
    """A pool task: mark this process in ``directory``, wait until ``count`` processes have
    (polling every 10 ms, at most ``timeout_s`` seconds), return this process's id."""
    pid = os.getpid()
    Path(directory, str(pid)).touch()
    deadline = time.monotonic() + timeout_s
    while len(os.listdir(directory)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return pid


class LambdaPool:
    """Invoke local functions in worker processes (``processes=0``: in threads of this process).

    ``preload``: functions whose handler modules every worker loads when it starts (the pool's
    start-up, once per runtime), instead of at its first invocation of each; ``modules``: library
    modules it imports then too (:func:`preload_handlers`)."""

    def __init__(
        self, processes: int | None = None, preload: Sequence[LocalFunction] = (), modules: Sequence[str] = ()
    ):
        self.processes = (os.cpu_count() or 1) if processes is None else processes
        if self.processes > 0:
            ctx = script_safe_context()
            # workers end with the process that owns the pool, even after a kill -9 of it (no orphans)
            self._pool: ProcessPoolExecutor | ThreadPoolExecutor = ProcessPoolExecutor(
                self.processes,
                mp_context=ctx,
                initializer=_start_worker,
                initargs=(os.getpid(), tuple(preload), tuple(modules)),
            )
        else:
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lambda")
        self.invocations = 0

    def start_workers(self, timeout_s: float = 120.0) -> list[int]:
        """Start every worker process now and wait until each has loaded its preloaded handlers
        (the pool's initializer), so that the first invocations find warm workers, as benchmarks
        need before their clock starts. Each worker takes one task that waits (at most
        ``timeout_s`` seconds) until every worker holds one, so no worker can take two and leave
        another still starting. No handler is invoked. Returns the workers' process ids."""
        if self.processes <= 0:
            return []
        with tempfile.TemporaryDirectory(prefix="isrflow-pool-") as directory:
            tasks = [
                self._pool.submit(_rendezvous, directory, self.processes, timeout_s)
                for _ in range(self.processes)
            ]
            return [task.result() for task in tasks]

    def submit(self, fn: LocalFunction, event: Any) -> Future:
        self.invocations += 1
        return self._pool.submit(invoke_here, fn, event)

    def invoke(
        self, fn: LocalFunction, event: Any, on_done: Callable[[float, bool], None] | None = None
    ) -> Any:
        """Synchronous invoke (RequestResponse): the result, or LambdaError. ``on_done(seconds, ok)``
        gets the handler's duration measured in the worker (queueing for a free worker excluded)."""
        self.invocations += 1
        future = self._pool.submit(invoke_here_timed, fn, event)
        try:
            status, value, seconds = future.result(timeout=fn.timeout_s)
        except FutureTimeout:
            if on_done is not None:
                on_done(fn.timeout_s, False)
            raise LambdaError("Sandbox.Timedout", f"{fn.name} timed out after {fn.timeout_s:g} s") from None
        if on_done is not None:
            on_done(seconds, status == "ok")
        if status == "ok":
            return value
        name, message, trace = value
        raise LambdaError(name, message, trace)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
