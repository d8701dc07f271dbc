"""Progress of long work (simulate, ingest, calibration builds, runs) with a total and an ETA.

On a terminal one line is redrawn in place: ``label [#####.....] 12/40 30% 4.1 s, ETA 9.6 s``.
Elsewhere (a log file, CI, a notebook's captured stream) plain lines are written, one each time
another tenth of the total is done and one at the end, so logs stay short. Times are wall
seconds of the injectable ``clock`` (tests pass a fake one).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


class Progress:
    """Count ``done`` of ``total`` steps and show it; ``total`` None or 0: a count with no ETA."""

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ):
        self.label, self.total, self.enabled = label, total or None, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.start = clock()
        self.done = 0
        self._last_line = ""
        self._next_tenth = 1
        self._closed = False

    def line(self) -> str:
        """The progress text now: count, percentage, elapsed seconds and the estimated time left."""
        elapsed = self.clock() - self.start
        if not self.total:
            return f"{self.label}: {self.done} done, {_seconds(elapsed)}"
        fraction = min(self.done / self.total, 1.0)
        filled = round(fraction * BAR_WIDTH)
        eta = (
            ""
            if self.done == 0
            else f", ETA {_seconds(elapsed / self.done * max(self.total - self.done, 0))}"
        )
        return (
            f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.done}/{self.total} "
            f"{fraction * 100:.0f}% {_seconds(elapsed)}{eta}"
        )

    def update(self, n: int = 1) -> None:
        self.set(self.done + n)

    def set(self, done: int) -> None:
        """Set the number of steps done (shown if it changed what is displayed)."""
        self.done = done
        if not self.enabled:
            return
        if self.tty:
            text = self.line()
            if text != self._last_line:
                self.stream.write("\r" + text + " ")
                self.stream.flush()
                self._last_line = text
        elif self.total and done * 10 >= self._next_tenth * self.total and done < self.total:
            self._next_tenth = done * 10 // self.total + 1
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        """The final line (a newline after the redrawn one on a terminal)."""
        if self._closed or not self.enabled:
            return
        self._closed = True
        if self.tty:
            self.stream.write("\r" + self.line() + " \n")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        # the work failed: its error line follows alone (a redrawn line is only ended)
        if self.enabled and not self._closed and self.tty and self._last_line:
            self.stream.write("\n")
            self.stream.flush()
        self._closed = True


__all__ = ["Progress"]
