"""Worker processes over shared memory: the combine's way past the GIL.

Threads running the kernel hand the GIL over at every numpy call (about 100 a chunk), which
bounds their scaling (:mod:`isrflow.calibration.routing` has the measurements). Forked worker
processes each have their own interpreter, and see the pixels without copying them when the
pixels live in a :class:`SharedArena`: one anonymous ``MAP_SHARED`` mapping made before the
fork, which parent and children see at the same physical pages. Lambda has no ``/dev/shm``,
so neither POSIX shared memory nor ``multiprocessing``'s queues and pools are used: only an
anonymous mapping, ``os.fork`` and a socket pair per worker (``multiprocessing.Pipe``).

A task is a module-level function and its arguments; arrays inside the arena travel as
:class:`Shared` descriptors (offset, shape, strides, dtype: a few bytes) and are rebuilt as
views in the child, so no pixel crosses a pipe. An exception in a child is sent back and
raised again in the parent; a child that dies (killed for memory, say) raises
:class:`WorkerProcessError` naming it.

Forking a process that runs other threads is safe when the child takes no lock that one of
them could hold at the fork. The children here run only the task (numpy on arrays of the
arena), pickle and their socket: the interpreter re-initialises its own locks after a fork and
glibc its allocator's, and a thread blocked in a wait, as the local runtime's parent watcher
is, holds nothing. So :class:`ForkedPool` forks whatever other threads run (Python 3.12 warns
about any such fork, for children that go on to run arbitrary code), but the combine forks
before it starts its own reading and writing threads, which do take locks (file objects, the
checksum). Children never return into the caller's code: they leave with ``os._exit``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, Pipe
from typing import Any

import numpy as np

from isrflow.calibration import routing
from isrflow.model.errors import WorkerProcessError

#: Arrays in the arena start on cache-line boundaries (routing.ARENA_ALIGN counts it).
ALIGN = routing.ARENA_ALIGN


def can_fork() -> bool:
    """Whether this platform forks (``os.fork``: Linux and macOS, not Windows)."""
    return hasattr(os, "fork")


@dataclass(frozen=True)
class Shared:
    """Where an array of a :class:`SharedArena` lies: byte offset, shape, strides (bytes), dtype."""

    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: str


class SharedArena:
    """``nbytes`` of anonymous shared memory, handed out as numpy arrays (a bump allocator).

    Made before :class:`ForkedPool` forks, its pages are the same in the parent and every
    child: what one writes the others read. The memory is returned when the arena and every
    array of it are gone.
    """

    def __init__(self, nbytes: int):
        self.nbytes = max(ALIGN, int(nbytes))
        self._map = mmap.mmap(-1, self.nbytes)  # MAP_SHARED | MAP_ANONYMOUS
        self._bytes = np.frombuffer(self._map, dtype=np.uint8)
        self._address = self._bytes.__array_interface__["data"][0]
        self._used = 0

    def empty(self, shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
        """A new C-contiguous array of the arena (contents undefined: zeros until written)."""
        dt = np.dtype(dtype)
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        size = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
        start = -(-self._used // ALIGN) * ALIGN
        if start + size > self.nbytes:
            raise MemoryError(
                f"shared arena of {self.nbytes} bytes cannot hold {size} more ({self.nbytes - start} left)"
            )
        self._used = start + size
        return self._bytes[start : start + size].view(dt).reshape(dims)

    def describe(self, array: np.ndarray) -> Shared:
        """The descriptor of ``array``, a view of this arena's memory (ValueError if it is not)."""
        start = array.__array_interface__["data"][0] - self._address
        # the furthest byte any element reaches, for negative strides too
        low = start + sum(min(0, (n - 1) * s) for n, s in zip(array.shape, array.strides, strict=True))
        high = start + sum(max(0, (n - 1) * s) for n, s in zip(array.shape, array.strides, strict=True))
        if array.size and not (low >= 0 and high + array.itemsize <= self.nbytes):
            raise ValueError("array is not in the shared arena: worker processes cannot see it")
        return Shared(start, tuple(array.shape), tuple(array.strides), array.dtype.str)

    def view(self, shared: Shared) -> np.ndarray:
        """The array a descriptor names, as a view of this arena (in any process)."""
        return np.ndarray(
            shared.shape,
            np.dtype(shared.dtype),
            buffer=self._map,
            offset=shared.offset,
            strides=shared.strides,
        )


def _resolve(arena: SharedArena, value: Any) -> Any:
    if isinstance(value, Shared):
        return arena.view(value)
    if isinstance(value, tuple):
        return tuple(_resolve(arena, v) for v in value)
    return value


def _child(conn: Connection, arena: SharedArena) -> None:
    """A worker's loop: run tasks until told to stop (None) or the parent goes away."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        function, args = message
        try:
            reply: tuple[str, Any] = ("ok", function(*_resolve(arena, args)))
        except BaseException as exc:
            reply = ("error", exc)
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result or exception: say what it was
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))


class ForkedPool:
    """``processes`` forked workers that run tasks on the arrays of ``arena``.

    Make it before the caller starts threads that take locks (see the module docstring); close
    it (or use it as a context manager) to stop the workers. The parent only sends tasks and waits, so its own
    threads (reading the next strip, writing the last) keep its GIL.
    """

    def __init__(self, processes: int, arena: SharedArena):
        if not can_fork():
            raise WorkerProcessError("worker processes need os.fork, which this platform lacks")
        self.arena = arena
        self._workers: list[tuple[int, Connection]] = []
        self._busy = False  # tasks were sent whose answers were not all received
        try:
            for _ in range(max(1, processes)):
                mine, theirs = Pipe()
                pid = os.fork()
                if pid == 0:  # the child: never returns into the caller's code
                    status = 0
                    try:
                        mine.close()
                        for _, other in self._workers:
                            other.close()
                        _child(theirs, arena)
                    except BaseException:
                        status = 1
                    finally:
                        os._exit(status)
                theirs.close()
                self._workers.append((pid, mine))
        except BaseException:
            self.close()
            raise

    @property
    def processes(self) -> int:
        return len(self._workers)

    def share(self, value: Any) -> Any:
        """``value`` with every array of the arena (also inside tuples) replaced by its descriptor."""
        if isinstance(value, np.ndarray):
            return self.arena.describe(value)
        if isinstance(value, tuple):
            return tuple(self.share(v) for v in value)
        return value

    def run(self, function: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Run ``function(*args[i])`` in worker ``i`` (at most one task per worker), all at once;
        their results in order. The first failure is raised once every worker has answered."""
        if len(args) > len(self._workers):
            raise ValueError(f"{len(args)} tasks for {len(self._workers)} worker processes")
        sent = []
        self._busy = True
        for (pid, conn), task in zip(self._workers, args, strict=False):
            try:
                conn.send((function, tuple(self.share(a) for a in task)))
            except (OSError, EOFError) as exc:
                raise self._died(pid, exc) from exc
            sent.append((pid, conn))
        results: list[Any] = []
        failure: BaseException | None = None
        for pid, conn in sent:
            try:
                status, value = conn.recv()
            except (OSError, EOFError) as exc:
                failure = failure or self._died(pid, exc)
                continue
            if status == "error":
                failure = failure or value
            results.append(value)
        self._busy = False
        if failure is not None:
            raise failure
        return results

    def _died(self, pid: int, exc: BaseException) -> WorkerProcessError:
        """The error for a worker whose pipe broke: it has exited (workers close their end only
        by exiting), so it is reaped here and its exit told."""
        for p, conn in self._workers:
            if p == pid:
                conn.close()
        self._workers = [(p, c) for p, c in self._workers if p != pid]
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return WorkerProcessError(f"worker process {pid} is gone ({type(exc).__name__})")
        how = (
            f"was killed by signal {os.WTERMSIG(status)}"
            if os.WIFSIGNALED(status)
            else f"exited with status {os.WEXITSTATUS(status)}"
        )
        return WorkerProcessError(f"worker process {pid} {how} ({type(exc).__name__})")

    def close(self) -> None:
        """Stop every worker and reap it (a worker that does not stop is killed)."""
        workers, self._workers = self._workers, []
        busy, self._busy = self._busy, False
        for _, conn in workers:
            with contextlib.suppress(OSError, EOFError):
                conn.send(None)
            conn.close()
        for pid, _ in workers:
            try:
                if busy:  # a task was cut short: its worker may compute for seconds more
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass

    def __enter__(self) -> ForkedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
