"""The local backend of :class:`isrflow.Client`: a repository directory and the embedded runtime.

A started execution keeps its :class:`~isrflow.local.runtime.LocalRuntime` (process pool, queue
poller) open until it ends; :meth:`LocalRun.wait` closes it, so does the interpreter's exit
(the RUNNING record then becomes ABORTED, as for a killed process). Registry reads open the
repository's registry for the call and close it again.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

#: Seconds between two looks at a running execution's progress.
POLL_S = 0.25


@dataclass(frozen=True)
class CollectionInfo:
    """A collection: its name, type (RUN, CALIBRATION, CHAINED), how many datasets it holds
    (certifications for a CALIBRATION collection; for a CHAINED one, its search path's) and, for
    a chain, its children."""

    name: str
    type: str
    datasets: int
    children: tuple[str, ...] = ()


def _open(repo: Path):
    from isrflow.registry import open_repo

    return open_repo(repo)


def collections_of(registry) -> list[CollectionInfo]:
    """Every collection of ``registry`` with its dataset count, sorted by name."""
    out = []
    for name, ctype in registry.collections():
        children = tuple(registry.get_chain(name)) if ctype == "CHAINED" else ()
        count = len(registry.query_datasets(None, [name])) if (ctype != "CHAINED" or children) else 0
        out.append(CollectionInfo(name=name, type=ctype, datasets=count, children=children))
    return out


class LocalRun:
    """One execution started on a local runtime that this object owns until the execution ends."""

    def __init__(self, runtime, execution):
        self.runtime = runtime
        self.execution = execution
        self._closed = False
        self._lock = threading.Lock()
        _OPEN_RUNS.add(self)

    @property
    def done(self) -> bool:
        return self.execution.status != "RUNNING"

    def results_done(self) -> int:
        """How many quanta (ISR'd detectors; for a calibration build, ISR'd inputs) have a recorded
        result so far: a worker records its cluster's results together, so this moves by clusters."""
        from isrflow.process_visit import layout
        from isrflow.process_visit.results import results_so_far

        prefix = layout.results_prefix(
            self.runtime.datastore_root.rstrip("/"), layout.execution_key(self.execution.execution_arn)
        )
        return len(results_so_far(prefix))

    def wait(self, timeout: float | None = None, on_poll: Callable[[int], None] | None = None) -> None:
        """Until the execution ends (``timeout`` s at most; then it keeps running); ``on_poll(done)``
        gets the number of quanta with a recorded result now and then. Closes the runtime once it has ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(POLL_S)
            if on_poll is not None:
                on_poll(self.results_done())
        if on_poll is not None:
            on_poll(self.results_done())
        self.execution.wait(None)
        self.close()

    def close(self) -> None:
        """Close the runtime (a still running execution is stopped and recorded ABORTED by it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.runtime.close()
        _OPEN_RUNS.discard(self)


_OPEN_RUNS: weakref.WeakSet[LocalRun] = weakref.WeakSet()


@atexit.register
def _close_open_runs() -> None:
    for run in list(_OPEN_RUNS):
        run.close()


class LocalBackend:
    """Registry, datastore and state machines of a repository directory, on this machine."""

    kind = "local"

    def __init__(self, repo: str | Path, *, workers: int | None = None):
        self.repo = Path(repo)
        self.workers = workers

    # ---------------------------------------------------------------- data

    def ingest(
        self,
        files: Sequence[str | Path],
        *,
        transfer: Literal["copy", "move", "link", "direct"] = "copy",
        run: str | None = None,
        camera: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ):
        from isrflow.registry.ingest import ingest

        registry = _open(self.repo)
        try:
            return ingest(
                registry,
                files,
                transfer=transfer,
                run=run,
                camera=camera,
                progress=progress,
            )
        finally:
            registry.close()

    def datasets(
        self, dataset_type: str | None, collections: Sequence[str] | None, where: str | None
    ) -> list:
        registry = _open(self.repo)
        try:
            return registry.query_datasets(dataset_type, list(collections) if collections else None, where)
        finally:
            registry.close()

    def collections(self) -> list[CollectionInfo]:
        registry = _open(self.repo)
        try:
            return collections_of(registry)
        finally:
            registry.close()

    def with_registry(self, fn: Callable[[Any], Any]) -> Any:
        registry = _open(self.repo)
        try:
            return fn(registry)
        finally:
            registry.close()

    # ---------------------------------------------------------------- executions

    def start(
        self, state_machine: str, payload: dict, *, name: str | None = None, containers=None
    ) -> LocalRun:
        """Start ``state_machine`` (a name of the template's) with ``payload`` on a new local runtime."""
        from isrflow.local.runtime import LocalRuntime

        runtime = LocalRuntime(self.repo, processes=self.workers, containers=containers)
        try:
            runtime.start()
            execution = runtime.run(state_machine, payload, name=name, wait=False)
        except BaseException:
            runtime.close()
            raise
        return LocalRun(runtime, execution)

    def drain_registry_queue(self) -> dict[str, int]:
        """Apply what the registry queue still holds (a killed run's workers' messages, say)."""
        from isrflow.local.runtime import LocalRuntime

        with LocalRuntime(self.repo, processes=self.workers) as runtime:
            return runtime.drain_registry_queue()

    def status(self, execution: str, prices_path: str | Path | None = None, progress=None):
        from isrflow.ops.status import execution_status

        return execution_status(execution, repo=self.repo, prices_path=prices_path, progress=progress)

    def executions(self) -> list:
        from isrflow.local.records import list_records

        return sorted(list_records(self.repo), key=lambda r: r.start_date, reverse=True)

    def describe(self, execution: str) -> dict:
        from isrflow.local.records import load_record

        return load_record(self.repo, execution).describe()


__all__ = ["CollectionInfo", "LocalBackend", "LocalRun", "collections_of"]
