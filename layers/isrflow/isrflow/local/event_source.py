"""The SQS -> Lambda event source mapping, locally: batches from the local queue to a handler.

Like the real mapping with ReportBatchItemFailures: receive up to ``batch_size`` messages,
waiting up to ``window_s`` to fill a batch; invoke the handler with an SQS-shaped event;
delete what succeeded; make the listed failures visible again after ``retry_delay_s``; if the
handler raises, the whole batch comes back. Redeliveries beyond the queue's max receive count
go to its dead-letter queue. ``retry_delay_s`` stands in for the visibility timeout, which is
minutes in AWS and would only slow a laptop down.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from .queue import LocalQueue, ReceivedMessage


def sqs_event(messages: list[ReceivedMessage], queue_arn: str) -> dict[str, Any]:
    """An SQS event as Lambda receives it."""
    return {
        "Records": [
            {
                "messageId": m.message_id,
                "receiptHandle": m.receipt,
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": str(m.receive_count),
                    "SentTimestamp": str(int(m.sent * 1000)),
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "local",
            }
            for m in messages
        ]
    }


class QueuePoller:
    def __init__(self, queue: LocalQueue, invoke: Callable[[dict], Any], *, batch_size: int = 1000,
                 window_s: float = 0.2, retry_delay_s: float = 1.0, queue_arn: str = "arn:aws:sqs:local:000000000000:registry",
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.queue, self.invoke = queue, invoke
        self.batch_size, self.window_s, self.retry_delay_s = batch_size, window_s, retry_delay_s
        self.queue_arn, self.sleep, self.clock = queue_arn, sleep, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.errors: list[str] = []

    def _collect(self) -> list[ReceivedMessage]:
        batch = self.queue.receive(self.batch_size)
        if not batch or len(batch) >= self.batch_size or self.window_s <= 0:
            return batch
        deadline = self.clock() + self.window_s
        while len(batch) < self.batch_size and self.clock() < deadline and not self._stop.is_set():
            more = self.queue.receive(self.batch_size - len(batch))
            if more:
                batch.extend(more)
            else:
                self.sleep(min(0.02, max(0.0, deadline - self.clock())))
        return batch

    def poll_once(self) -> int:
        """Deliver one batch; returns how many messages were delivered (0 = queue empty)."""
        batch = self._collect()
        if not batch:
            return 0
        self.batches += 1
        try:
            response = self.invoke(sqs_event(batch, self.queue_arn)) or {}
        except Exception as exc:  # the whole batch is redelivered
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self.queue.change_visibility([m.receipt for m in batch], self.retry_delay_s)
            return len(batch)
        failed = {f.get("itemIdentifier") for f in response.get("batchItemFailures", [])}
        self.queue.delete([m.receipt for m in batch if m.message_id not in failed])
        retry = [m.receipt for m in batch if m.message_id in failed]
        if retry:
            self.queue.change_visibility(retry, self.retry_delay_s)
        return len(batch)

    def drain(self, max_batches: int = 1000) -> int:
        """Deliver batches until the queue has nothing visible (tests and one-shot CLI use)."""
        total = 0
        for _ in range(max_batches):
            n = self.poll_once()
            if n == 0:
                break
            total += n
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.poll_once() == 0:
                self._stop.wait(0.05)

    def start(self) -> "QueuePoller":
        self._thread = threading.Thread(target=self._run, name="registry-writer-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
