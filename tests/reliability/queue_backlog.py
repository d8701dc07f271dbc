"""Test helper for defect 4 of issue 10: the local registry queue and event source feeding the
real writer handler on one injected clock, and backlogs of registry messages.

Nothing sleeps for real: the clock (POSIX seconds) moves when the poller "sleeps", when a
writer batch "takes" ``batch_s`` seconds, and to the next visible message when none is.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from functions.registry_writer import app as writer_app
from isrflow.infra import queues
from isrflow.local.event_source import QueuePoller
from isrflow.local.queue import LocalQueue
from isrflow.model.messages import (
    DatasetMessage,
    DetectorRecord,
    ExposureRecord,
    InstrumentRecord,
    dump_message,
)

T0 = 1_800_000_000.0  # s; the fake clock starts here
QUEUE_ARN = "arn:aws:sqs:local:000000000000:RegistryQueue"
RAW_RUN = "HSC/raw/all"


class Clock:
    """An injectable POSIX clock (s) that moves only when told."""

    def __init__(self, start: float = T0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


def instrument() -> InstrumentRecord:
    """The instrument of :func:`backlog`, registered before it (as ``repo create``/ingest do: the
    writer rejects a message of an instrument it does not know)."""
    return InstrumentRecord(name="HSC", camera="hsc")


def backlog(exposures: int, detectors: int, seed: int) -> list[str]:
    """Detector and exposure records and one raw per (exposure, detector), shuffled (seeded):
    most children come before their parents. ``exposures x detectors`` raws."""
    begin = datetime(2026, 11, 19, 10, tzinfo=UTC)
    msgs: list[Any] = [DetectorRecord(instrument="HSC", id=d, name=f"D{d}") for d in range(detectors)]
    for e in range(exposures):
        t = begin + timedelta(seconds=40 * e)
        msgs.append(
            ExposureRecord(
                instrument="HSC",
                id=e,
                obs_type="science",
                physical_filter="HSC-R",
                band="r",
                exptime=30.0,
                darktime=30.0,
                day_obs=20261119,
                begin=t,
                end=t + timedelta(seconds=30),
            )
        )
        msgs += [
            DatasetMessage(
                dataset_type="raw",
                run=RAW_RUN,
                data_id={"instrument": "HSC", "exposure": e, "detector": d},
                uri=f"file:///data/raw/{e}_{d}.fits",
                size=1000 + d,
            )
            for d in range(detectors)
        ]
    bodies = [dump_message(m) for m in msgs]
    random.Random(seed).shuffle(bodies)
    return bodies


class ProcessEnv:
    """The bits of pytest's ``monkeypatch`` that :func:`writer_setup` uses, applied for the rest
    of the process (for the benchmarks, which run outside pytest)."""

    def setenv(self, key: str, value: str) -> None:
        os.environ[key] = value

    def delenv(self, key: str, raising: bool = True) -> None:
        os.environ.pop(key, None)

    def setattr(self, obj: Any, name: str, value: Any) -> None:
        setattr(obj, name, value)


def writer_setup(tmp_path: Path, monkeypatch: Any, clock: Clock, *, give_up_after: int = 4) -> LocalQueue:
    """The template's registry queue (900 s visibility, maxReceiveCount 5, its DLQ) in ``tmp_path``,
    with the writer handler configured as template.yaml configures it, all on ``clock``."""
    queue = LocalQueue(
        tmp_path / "queue.sqlite3",
        "RegistryQueue",
        visibility_timeout=900,
        max_receive_count=5,
        dead_letter="RegistryDeadLetterQueue",
        clock=clock,
    )
    monkeypatch.setenv("ISRFLOW_REGISTRY_QUEUE_URL", queue.url)
    monkeypatch.setenv("ISRFLOW_REGISTRY_GIVE_UP_AFTER", str(give_up_after))
    monkeypatch.delenv("ISRFLOW_REGISTRY_GIVE_UP_MIN_AGE_S", raising=False)
    monkeypatch.setattr(queues, "_VISIBILITY", {queue.url: queues.LocalVisibility(queue.url, clock=clock)})
    monkeypatch.setattr(writer_app, "now", clock)
    return queue


def poller_for(
    queue: LocalQueue, clock: Clock, handler: Callable[[dict], Any], *, batch_s: float, batch_size: int = 5000
) -> QueuePoller:
    """The template's event source mapping (BatchSize 5000) on ``clock``; each handler call
    advances the clock by ``batch_s`` seconds (a writer batch that takes that long)."""

    def invoke(event: dict) -> Any:
        try:
            return handler(event)
        finally:
            clock.now += batch_s

    return QueuePoller(
        queue, invoke, batch_size=batch_size, window_s=0, queue_arn=QUEUE_ARN, sleep=clock.sleep, clock=clock
    )


def run_until_empty(
    queue: LocalQueue, poller: QueuePoller, clock: Clock, *, max_rounds: int = 100_000
) -> int:
    """Poll until nothing is left in the queue (visible or in flight); when nothing is visible,
    move the clock to the next message's visibility. Returns the batches delivered."""
    for _ in range(max_rounds):
        if poller.poll_once():
            continue
        counts = queue.counts()
        if counts["visible"] == 0 and counts["in_flight"] == 0:
            return poller.batches
        nxt = (
            queue._connect()
            .execute("SELECT MIN(visible_at) FROM message WHERE queue = ?", (queue.name,))
            .fetchone()[0]
        )
        clock.now = max(clock.now, float(nxt))
    raise AssertionError(f"queue not empty after {max_rounds} rounds: {queue.counts()}")
