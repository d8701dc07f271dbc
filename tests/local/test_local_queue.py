"""The durable local queue (SQS semantics) and the local event source mapping."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys

from isrflow.local.event_source import QueuePoller
from isrflow.local.queue import LocalQueue, parse_local_url


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_send_receive_delete(tmp_path):
    q = LocalQueue(tmp_path / "q.sqlite3", "registry")
    ids = q.send([f"m{i}" for i in range(5)])
    got = q.receive(3)
    assert [m.body for m in got] == ["m0", "m1", "m2"] and all(m.receive_count == 1 for m in got)
    assert q.counts() == {"visible": 2, "in_flight": 3, "dead_letter": 0}
    assert q.delete([m.receipt for m in got]) == 3
    rest = q.receive(10)
    assert [m.message_id for m in rest] == ids[3:]


def test_visibility_timeout_and_dead_letter(tmp_path):
    clock = FakeClock()
    q = LocalQueue(tmp_path / "q.sqlite3", visibility_timeout=30, max_receive_count=2, clock=clock)
    q.send(["poison"])
    assert len(q.receive()) == 1
    assert q.receive() == []  # hidden while in flight
    clock.now += 31
    second = q.receive()
    assert second[0].receive_count == 2
    clock.now += 31
    assert q.receive() == []  # a third receive moves it to the dead-letter queue
    assert q.counts()["dead_letter"] == 1 and q.dead_letters()[0][1] == "poison"


def test_stale_receipt_does_not_delete(tmp_path):
    clock = FakeClock()
    q = LocalQueue(tmp_path / "q.sqlite3", visibility_timeout=5, clock=clock)
    q.send(["x"])
    first = q.receive()[0]
    clock.now += 6
    second = q.receive()[0]
    assert q.delete([first.receipt]) == 0
    assert q.delete([second.receipt]) == 1


def test_acknowledged_message_survives_a_crash(tmp_path):
    """A message acknowledged by send() is there after the sending process dies abruptly."""
    path = tmp_path / "q.sqlite3"
    code = (
        f"import os, sys; sys.path[:0] = {sys.path!r}; from isrflow.local.queue import LocalQueue; "
        f"LocalQueue({str(path)!r}).send(['durable']); os._exit(9)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert [m.body for m in LocalQueue(path).receive()] == ["durable"]


def _receiver(path, out):
    q = LocalQueue(path)
    got = []
    for _ in range(50):
        got += [m.body for m in q.receive(7)]
    out.put(got)


def test_concurrent_receivers_never_share_a_message(tmp_path):
    path = tmp_path / "q.sqlite3"
    LocalQueue(path).send([str(i) for i in range(300)])
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_receiver, args=(str(path), out)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    seen = [b for r in results for b in r]
    assert len(seen) == len(set(seen)) == 300


def test_url_round_trip(tmp_path):
    q = LocalQueue(tmp_path / "q.sqlite3", "reg")
    assert parse_local_url(q.url) == ((tmp_path / "q.sqlite3").absolute(), "reg")


def test_poller_batches_and_partial_failures(tmp_path):
    q = LocalQueue(tmp_path / "q.sqlite3")
    q.send([json.dumps({"n": i}) for i in range(25)], [f"id{i}" for i in range(25)])
    seen: list[list[int]] = []

    def handler(event):
        ns = [json.loads(r["body"])["n"] for r in event["Records"]]
        seen.append(ns)
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]}
                for r in event["Records"]
                if json.loads(r["body"])["n"] == 3 and r["attributes"]["ApproximateReceiveCount"] == "1"
            ]
        }

    poller = QueuePoller(q, handler, batch_size=10, window_s=0, retry_delay_s=0)
    assert poller.drain() == 26  # 25 + one redelivery of the failed item
    assert [len(b) for b in seen[:2]] == [10, 10]
    delivered = [n for batch in seen for n in batch]
    assert sorted(set(delivered)) == list(range(25)) and delivered.count(3) == 2
    assert q.counts() == {"visible": 0, "in_flight": 0, "dead_letter": 0}


def test_poller_redelivers_whole_batch_when_handler_raises(tmp_path):
    q = LocalQueue(tmp_path / "q.sqlite3")
    q.send(["a", "b"])
    calls = []

    def handler(event):
        calls.append(len(event["Records"]))
        if len(calls) == 1:
            raise ConnectionError("database down")
        return {"batchItemFailures": []}

    poller = QueuePoller(q, handler, batch_size=10, window_s=0, retry_delay_s=0)
    poller.drain()
    assert calls == [2, 2] and poller.errors == ["ConnectionError: database down"]
    assert q.counts()["visible"] == 0
