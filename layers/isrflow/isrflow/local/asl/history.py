"""Execution history events shaped like Step Functions' GetExecutionHistory.

Each event is ``{"id", "previousEventId", "timestamp" (aware datetime, as boto3 returns),
"type", "<detailsKey>": {...}}`` with the details key AWS uses for that type
(``stateEnteredEventDetails``, ``taskScheduledEventDetails``, ``executionFailedEventDetails``,
...), and ``input``/``output``/``parameters`` as JSON text.

Events are recorded cheaply (raw values, float times) and shaped only when read.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

_JSON_FIELDS = ("input", "output", "parameters")
_DETAILS_SUFFIX = {"input": "inputDetails", "output": "outputDetails"}


class JsonText(str):
    """A value already serialised to JSON text (kept as is in the history)."""

    __slots__ = ()


def to_json_text(value: Any) -> str:
    if isinstance(value, JsonText):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def details_key(event_type: str) -> str:
    if event_type.endswith("StateEntered"):
        return "stateEnteredEventDetails"
    if event_type.endswith("StateExited"):
        return "stateExitedEventDetails"
    return event_type[0].lower() + event_type[1:] + "EventDetails"


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def compact_json(value: Any) -> str:
    """``value`` as compact JSON text (no spaces, non-ASCII kept), as Step Functions writes payloads."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def iso_timestamp(ts: float) -> str:
    """A POSIX time ``ts`` (seconds) as ISO 8601 UTC with milliseconds, e.g. ``2026-01-02T03:04:05.678Z``."""
    return to_datetime(ts).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class History:
    """An append-only, thread-safe event log for one execution."""

    __slots__ = ("_events", "_lock", "max_events", "overflowed")

    def __init__(self, max_events: int | None = 25_000):
        self._events: list[tuple] = []
        self._lock = threading.Lock()
        self.max_events = max_events
        self.overflowed = False

    def add(self, event_type: str, ts: float, prev: int = 0, details: dict | None = None) -> int:
        with self._lock:
            self._events.append((event_type, prev, ts, details))
            n = len(self._events)
        if self.max_events is not None and n > self.max_events:
            self.overflowed = True
        return n

    def __len__(self) -> int:
        return len(self._events)

    def types(self) -> list[str]:
        with self._lock:
            return [e[0] for e in self._events]

    def events(self, reverse_order: bool = False) -> list[dict]:
        with self._lock:
            raw = list(self._events)
        out = []
        for i, (typ, prev, ts, details) in enumerate(raw, 1):
            ev: dict[str, Any] = {"timestamp": to_datetime(ts), "type": typ, "id": i, "previousEventId": prev}
            if details is not None:
                d: dict[str, Any] = {}
                for k, v in details.items():
                    if k in _JSON_FIELDS:
                        d[k] = to_json_text(v)
                        if k in _DETAILS_SUFFIX:
                            d[_DETAILS_SUFFIX[k]] = {"truncated": False}
                    else:
                        d[k] = v
                ev[details_key(typ)] = d
            out.append(ev)
        if reverse_order:
            out.reverse()
        return out


_ATTEMPT_EVENTS = {"TaskScheduled", "LambdaFunctionScheduled", "MapStateStarted", "ParallelStateStarted"}
_FAILURE_EVENTS = {
    "TaskFailed",
    "TaskTimedOut",
    "TaskStartFailed",
    "TaskSubmitFailed",
    "LambdaFunctionFailed",
    "LambdaFunctionTimedOut",
    "LambdaFunctionStartFailed",
    "LambdaFunctionScheduleFailed",
    "MapStateFailed",
    "ParallelStateFailed",
}


def count_state_transitions(events: Iterable[dict]) -> int:
    """State transitions (the Standard-workflow billing unit) in one execution's history.

    Counts every state entered plus every retry (an attempt event — TaskScheduled,
    LambdaFunctionScheduled, MapStateStarted, ParallelStateStarted — whose previous event
    is a failure). Works on AWS GetExecutionHistory output as well as on the local
    interpreter's. Distributed Map children are separate executions: add theirs.
    """
    events = list(events)
    by_id = {e.get("id"): e.get("type") for e in events}
    n = 0
    for e in events:
        t = e.get("type", "")
        if t.endswith("StateEntered") or (
            t in _ATTEMPT_EVENTS and by_id.get(e.get("previousEventId")) in _FAILURE_EVENTS
        ):
            n += 1
    return n
