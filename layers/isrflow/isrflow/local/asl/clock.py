"""Injectable clocks: the interpreter never reads the time or sleeps except through one.

A clock has ``now() -> float`` (POSIX seconds) and ``sleep(seconds, interrupt=None)``.
``interrupt`` is a :class:`threading.Event`; a real sleep returns early when it is set
(that is how ``Execution.stop()`` ends a Wait or a retry back-off).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> None: ...


class RealClock:
    """Wall-clock time; sleeps really sleep (interruptibly)."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> None:
        if seconds <= 0:
            return
        if interrupt is None:
            time.sleep(seconds)
        else:
            interrupt.wait(seconds)


class FakeClock:
    """A clock for tests: ``sleep`` returns at once, advances the time and records the wait.

    ``sleeps`` lists every wait requested, in order (retry back-offs and Wait states), so a
    test can assert e.g. ``[2, 4, 5]`` for IntervalSeconds 2, BackoffRate 2, MaxDelaySeconds 5.
    ``advance(s)`` moves time forward (a handler can call it to simulate a slow task).
    """

    def __init__(self, start: float = 1_700_000_000.0):
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if seconds > 0:
                self._now += seconds
