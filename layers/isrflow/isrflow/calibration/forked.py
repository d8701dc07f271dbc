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
arena, ``pread`` and tile decoding of local files), pickle and their socket: the interpreter
re-initialises its own locks after a fork and glibc its allocator's, and a thread blocked in a
wait, as the local runtime's parent watcher is, holds nothing. Nothing that holds a client
(S3, a database) is used in a child. So :class:`ForkedPool` forks whatever other threads run (Python 3.12 warns
about any such fork, for children that go on to run arbitrary code), but the combine forks
before it starts its own reading and writing threads, which do take locks (file objects, the
checksum). Children never return into the caller's code: they leave with ``os._exit``.
"""

from __future__ import annotations

import contextlib
import gc
import mmap
import os
import pickle
import signal
import sys
import time
import traceback
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
    """Whether worker processes are forked here: on Linux (Lambda, Fargate, the local runtime).
    macOS has ``os.fork``, but forking after its system frameworks have started is unsafe."""
    return sys.platform == "linux" and hasattr(os, "fork")


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
        if array.size == 0:  # nothing to see: any place will do
            return Shared(0, tuple(array.shape), tuple(array.strides), array.dtype.str)
        start = array.__array_interface__["data"][0] - self._address
        # the furthest byte any element reaches, for negative strides too
        low = start + sum(min(0, (n - 1) * s) for n, s in zip(array.shape, array.strides, strict=True))
        high = start + sum(max(0, (n - 1) * s) for n, s in zip(array.shape, array.strides, strict=True))
        if not (low >= 0 and high + array.itemsize <= self.nbytes):
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


def _sendable(exc: BaseException) -> BaseException:
    """``exc`` if the parent can rebuild it from its pickle, else a RuntimeError that tells it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")


def _child(conn: Connection, arena: SharedArena) -> None:
    """A worker's loop: run tasks until told to stop (None) or the parent goes away."""
    # the parent decides about interrupts (it kills busy workers); the parent's handlers, such as
    # one turning SIGTERM into KeyboardInterrupt, are not the child's
    with contextlib.suppress(ValueError):  # only a main thread may; a fork's only thread is one
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for end in list(_PARENT_ENDS):  # other pools' ends: their workers must see EOF when the parent dies
        end.close()
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
            reply = ("error", _sendable(exc))
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result: say what it was
            conn.send(("error", RuntimeError(f"cannot send the task's result: {type(exc).__name__}: {exc}")))


#: The parent's ends of every live pool's pipes (a child closes those of the other pools).
_PARENT_ENDS: set[Connection] = set()


class ForkedPool:
    """``processes`` forked workers that run tasks on the arrays of ``arena``.

    Make it before the caller starts threads that take locks (see the module docstring); close
    it (or use it as a context manager) to stop the workers. The parent only sends tasks and
    waits, so its own threads (reading the next strip, writing the last) keep its GIL. A run cut
    short (a worker died, an interrupt in the parent) closes the pool: its workers are killed.
    """

    def __init__(self, processes: int, arena: SharedArena):
        if not can_fork():
            raise WorkerProcessError("worker processes need os.fork on Linux; this platform does not have it")
        self.arena = arena
        self._workers: list[tuple[int, Connection]] = []
        self._busy = False  # tasks were sent whose answers were not all received
        # the children's garbage collector must not touch (and so copy) every page of the parent's
        # objects: they are frozen while forking, and stay frozen in the children
        gc.freeze()
        try:
            for _ in range(max(1, processes)):
                mine, theirs = Pipe()
                try:
                    pid = os.fork()
                except OSError as exc:  # EAGAIN, ENOMEM: no process to be had
                    mine.close()
                    theirs.close()
                    raise WorkerProcessError(f"cannot fork a worker process: {exc}") from exc
                if pid == 0:  # the child: never returns into the caller's code
                    status = 0
                    try:
                        mine.close()
                        _child(theirs, arena)
                    except BaseException:
                        status = 1
                    finally:
                        os._exit(status)
                theirs.close()
                self._workers.append((pid, mine))
                _PARENT_ENDS.add(mine)
        except BaseException:
            self._busy = True  # kill, do not wait for, whatever was started
            self.close()
            raise
        finally:
            gc.unfreeze()

    @property
    def processes(self) -> int:
        """Worker processes alive."""
        return len(self._workers)

    def share(self, value: Any) -> Any:
        """``value`` with every array of the arena (also inside tuples) replaced by its descriptor;
        arrays anywhere else (a list, a dict) are refused, since a copy would lose the workers' writes."""
        if isinstance(value, np.ndarray):
            return self.arena.describe(value)
        if isinstance(value, tuple):
            return tuple(self.share(v) for v in value)
        if isinstance(value, list | dict | set) and any(
            isinstance(v, np.ndarray) for v in (value.values() if isinstance(value, dict) else value)
        ):
            raise TypeError("arrays go to worker processes as task arguments or inside tuples only")
        return value

    def run(self, function: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Run ``function(*args[i])`` in worker ``i`` (at most one task per worker), all at once;
        their results in order. A task's exception is raised once every worker has answered; a
        dead worker, or any failure in the parent while workers compute, closes the pool."""
        if not self._workers:
            raise WorkerProcessError("the worker processes are stopped")
        if len(args) > len(self._workers):
            raise ValueError(f"{len(args)} tasks for {len(self._workers)} worker processes")
        payloads = [(function, tuple(self.share(a) for a in task)) for task in args]  # before any send
        results: list[Any] = []
        failure: BaseException | None = None
        self._busy = True
        try:
            sent = []
            for (pid, conn), payload in zip(self._workers, payloads, strict=False):
                try:
                    conn.send(payload)
                except (OSError, EOFError) as exc:
                    raise self._died(pid, exc) from exc
                sent.append((pid, conn))
            for pid, conn in sent:
                try:
                    status, value = conn.recv()
                except (OSError, EOFError) as exc:
                    error = self._died(pid, exc)
                    failure = failure or error
                    continue
                if status == "error":
                    failure = failure or value
                results.append(value)
            if isinstance(failure, WorkerProcessError):
                raise failure
        except BaseException:
            self.close()  # busy: the workers still computing are killed
            raise
        self._busy = False
        if failure is not None:
            raise failure
        return results

    def _died(self, pid: int, exc: BaseException) -> WorkerProcessError:
        """The error for a worker whose pipe broke: it has exited (workers close their end only
        by exiting), so it is reaped here and its exit told."""
        for p, conn in self._workers:
            if p == pid:
                _PARENT_ENDS.discard(conn)
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
        """Stop every worker and reap it: idle ones are told to stop (and killed if they have
        not within ``STOP_SECONDS``), busy ones killed at once."""
        workers, self._workers = self._workers, []
        busy, self._busy = self._busy, False
        for _, conn in workers:
            _PARENT_ENDS.discard(conn)
            if not busy:
                with contextlib.suppress(OSError, EOFError):
                    conn.send(None)
            conn.close()
        deadline = time.monotonic() + (0.0 if busy else STOP_SECONDS)
        for pid, _ in workers:
            _reap(pid, deadline)

    def __enter__(self) -> ForkedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: How long an idle worker told to stop may take before it is killed (a stuck worker must not
#: hang the combine until the Lambda times out).
STOP_SECONDS = 2.0


def _reap(pid: int, deadline: float) -> None:
    """Wait for ``pid`` to exit until ``deadline`` (time.monotonic), then kill it; reap it."""
    try:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.001)
    except (ChildProcessError, ProcessLookupError):
        pass
