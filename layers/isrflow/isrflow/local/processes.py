"""Which process owns local work, whether it is still alive, and children that die with it.

The local runtime is one process (the CLI, ``local serve``, a test) with worker processes
(the Lambda pool, "Fargate" task subprocesses). After a ``kill -9`` of that process nothing of
it may keep running or keep holding work:

- :func:`die_with` (a Lambda pool worker's initializer) and :func:`die_with_parent` (a task
  subprocess's ``preexec_fn``) end a child as soon as the process that started the runtime is
  gone, so no worker writes outputs or sends registry messages for an execution nobody follows;
- :class:`ProcessIdentity` names a process so that a record written by it (an execution's
  RUNNING record, a queue message it received) can later be found abandoned: same host, and no
  live process with that pid and start time (a recycled pid does not count as alive).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import socket
import threading
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1
_LIBC = None
try:  # loaded in the parent, so a forked child only calls into it
    _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
except OSError:  # not Linux/glibc: children fall back to the watcher thread
    _LIBC = None


def start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks after boot, /proc/PID/stat field 22); None if there is
    no such process or no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may contain spaces: split after the last ")"
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ProcessIdentity:
    """A process: host name, pid and start time (ticks after boot; 0 where /proc is missing)."""

    host: str
    pid: int
    started: int

    @classmethod
    def current(cls) -> ProcessIdentity:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, start_ticks(pid) or 0)

    def token(self) -> str:
        """``host:pid:started``, the form stored in queue rows."""
        return f"{self.host}:{self.pid}:{self.started}"

    @classmethod
    def parse(cls, token: str) -> ProcessIdentity | None:
        host, _, rest = token.rpartition(":")
        host, _, pid = host.rpartition(":")
        try:
            return cls(host, int(pid), int(rest))
        except ValueError:
            return None

    def is_alive(self) -> bool | None:
        """True/False for a process on this host; None when it ran on another host (unknowable here)."""
        if self.host != socket.gethostname():
            return None
        ticks = start_ticks(self.pid)
        if ticks is None:
            if os.path.isdir("/proc"):
                return False
            try:  # no /proc: a live pid is all we can check
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return self.started in (0, ticks)

    def is_dead(self) -> bool:
        """Known to be gone (False when alive or on another host)."""
        return self.is_alive() is False


def die_with_parent(expected_parent: int | None = None) -> None:
    """For ``subprocess.Popen(preexec_fn=...)``: SIGKILL this child when the thread that started it
    ends (the parent process killed included); exits at once if the parent is already gone.
    The starting thread must wait for the child (as a runTask.sync task's thread does)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(137)


def die_with(pid: int) -> None:
    """End this process as soon as process ``pid`` ends (a pool worker's initializer: the worker's
    parent is the fork server, so the process that owns the pool is watched directly).

    A daemon thread waits on a pidfd (Linux 5.3+) or, without one, polls every 0.5 s.
    """
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is None and start_ticks(pid) is None and os.path.isdir("/proc"):
        os._exit(137)  # already gone

    def watch() -> None:
        if fd is not None:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while not poller.poll(None):
                pass
        else:
            event = threading.Event()
            while not event.wait(0.5):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    continue
        os._exit(137)

    threading.Thread(target=watch, name=f"die-with-{pid}", daemon=True).start()


__all__ = ["ProcessIdentity", "die_with", "die_with_parent", "start_ticks"]
