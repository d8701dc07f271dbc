"""Callers waiting for the local queue's consumer: the event source closes its batching window for
them and wakes them after each batch (no idle window, no polling interval); pool workers load the
handlers when they start. Simulated clocks only: no timing assertions."""

from __future__ import annotations

import sys
import threading

import pytest

from isrflow.infra.queues import LocalSender, awaiting_consumer
from isrflow.local.event_source import QueuePoller
from isrflow.local.lambdas import LambdaPool, LocalFunction, _handler, preload_handlers
from isrflow.local.queue import LocalQueue, Waiter

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="abstract Unix sockets are Linux's"
)


class FakeTime:
    """A clock that only the poller's sleeps advance (seconds)."""

    def __init__(self):
        self.now = 1000.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def _poller(queue, seen, fake):
    return QueuePoller(
        queue,
        lambda event: seen.append(len(event["Records"])),
        batch_size=100,
        window_s=5.0,
        clock=fake.clock,
        sleep=fake.sleep,
    )


def test_without_waiter_the_batch_waits_out_the_window(tmp_path):
    queue, seen, fake = LocalQueue(tmp_path / "q.sqlite3"), [], FakeTime()
    queue.send(["a", "b"])
    assert _poller(queue, seen, fake).poll_once() == 2
    assert seen == [2] and fake.slept >= 5.0


def test_a_waiter_closes_the_window_and_gets_every_message_sent_before_it(tmp_path):
    queue, seen, fake = LocalQueue(tmp_path / "q.sqlite3"), [], FakeTime()
    queue.send(["a", "b"])
    sender_side = LocalQueue(tmp_path / "q.sqlite3")  # another process's view of the same queue
    with sender_side.waiting(60.0):
        assert queue.has_waiters()
        assert _poller(queue, seen, fake).poll_once() == 2
    assert seen == [2] and fake.slept < 5.0
    assert not queue.has_waiters()  # the mark is cleared on exit
    assert queue.counts() == {"visible": 0, "in_flight": 0, "dead_letter": 0}


def test_a_waiter_that_died_stops_counting_after_its_seconds(tmp_path):
    now = [100.0]
    queue = LocalQueue(tmp_path / "q.sqlite3", clock=lambda: now[0])
    waiting = queue.waiting(30.0)
    waiting.__enter__()  # never exited: a killed Summarize
    assert queue.has_waiters()
    now[0] += 31.0
    assert not queue.has_waiters() and queue.notify_waiters() == 0


@linux_only
def test_the_poller_wakes_waiters_after_each_batch(tmp_path):
    queue, fake = LocalQueue(tmp_path / "q.sqlite3"), FakeTime()
    queue.send(["a"])
    other = LocalQueue(tmp_path / "q.sqlite3")
    with other.waiting(60.0) as waiter:
        assert not waiter.sleep(0)  # nothing delivered yet
        _poller(queue, [], fake).poll_once()
        assert waiter.sleep(0)  # the signal sent after the batch is there
        assert not waiter.sleep(0)  # and consumed


@linux_only
def test_a_blocked_waiter_is_woken_by_another_queue_object(tmp_path):
    queue = LocalQueue(tmp_path / "q.sqlite3")
    woke = []
    entered = threading.Event()

    def wait():
        with LocalQueue(tmp_path / "q.sqlite3").waiting(600.0) as waiter:
            entered.set()
            woke.append(waiter.sleep(600.0))

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    assert entered.wait(30)
    assert queue.notify_waiters() == 1
    thread.join(60)
    assert woke == [True]


def test_awaiting_consumer_is_the_local_queue_waiter_or_a_plain_sleep(tmp_path):
    import time

    sender = LocalSender(f"sqlite://{tmp_path / 'q.sqlite3'}#registry")
    with awaiting_consumer(sender, 10.0) as sleep:
        assert sender.queue.has_waiters() and callable(sleep)
    assert not sender.queue.has_waiters()
    with awaiting_consumer(object(), 10.0) as sleep:  # an SQS sender: no signal, time.sleep
        assert sleep is time.sleep


def test_a_waiter_without_abstract_sockets_sleeps(monkeypatch):
    slept = []
    waiter = Waiter()
    waiter.close()  # as on a platform without abstract sockets: no address
    monkeypatch.setattr("isrflow.local.queue.time.sleep", slept.append)
    assert waiter.sleep(0.25) is False and slept == [0.25]


def test_preload_imports_handlers_with_their_environment_and_skips_broken_ones(tmp_path, monkeypatch):
    good = tmp_path / "good.py"
    good.write_text(
        "import os\nSEEN = os.environ.get('PRELOAD_PROBE')\n\ndef handler(event, context):\n    return SEEN\n"
    )
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.delenv("PRELOAD_PROBE", raising=False)
    fn = LocalFunction(
        name="Good", handler_file=str(good), handler_attr="handler", environment={"PRELOAD_PROBE": "yes"}
    )
    broken = LocalFunction(name="Bad", handler_file=str(bad), handler_attr="handler")
    preload_handlers([broken, fn], modules=["isrflow.no_such_module", "json"])
    import os

    assert "PRELOAD_PROBE" not in os.environ  # restored after the import
    assert _handler(fn)(None, None) == "yes"  # already loaded, with the function's environment
    with pytest.raises(RuntimeError, match="broken at import"):  # the invocation reports it
        _handler(broken)


def test_start_workers_starts_every_worker_process_without_invoking_a_handler(tmp_path):
    marker = tmp_path / "invoked"
    module = tmp_path / "probe.py"
    module.write_text(
        f"def handler(event, context):\n    open({str(marker)!r}, 'w').close()\n    return 'ran'\n"
    )
    fn = LocalFunction(name="Probe", handler_file=str(module), handler_attr="handler")
    pool = LambdaPool(2, preload=[fn])
    try:
        pids = pool.start_workers()
        assert len(set(pids)) == 2  # one task each: both workers started and initialised
        assert set(pids) == {p.pid for p in pool._pool._processes.values()}  # type: ignore[union-attr]
        assert not marker.exists() and pool.invocations == 0  # nothing was invoked
        assert pool.invoke(fn, {}) == "ran" and marker.exists()
    finally:
        pool.close()
