"""The SQS -> Lambda event source mapping, locally: batches from the local queue to a handler.

Like the real mapping: receive up to ``batch_size`` messages, waiting up to ``window_s``
(MaximumBatchingWindowInSeconds) to fill a batch; invoke the handler with an SQS-shaped event;
delete what succeeded. With ReportBatchItemFailures the listed failures stay in the queue (an
identifier that is empty or not in the batch fails the whole batch, as on AWS); if the
handler raises, the whole batch stays. What stays becomes visible again when its visibility
runs out: the queue's visibility timeout (900 s for the template's registry queue), unless
the handler changed it with ChangeMessageVisibility, as the registry writer does for the
items it returns. Receives beyond the queue's max receive count go to its dead-letter queue.

A registry outage is not a poison message: when the handler fails with
RegistryUnavailableError (``is_outage``), the poller puts the batch back without counting that
receive (:meth:`LocalQueue.release`) and waits before its next receive, doubling the wait from
``outage_backoff_s`` up to ``max_outage_backoff_s`` while the outage lasts; the first batch that
goes through resets it. An outage of any length therefore dead-letters nothing, and the backlog
is applied within ``max_outage_backoff_s`` of the registry coming back. (On AWS each receive
counts; what an outage longer than maxReceiveCount x 900 s dead-letters is brought back with
``isrflow registry redrive --aws``.)

Not AWS behaviour either: while a caller waits for the consumer (:meth:`LocalQueue.waiting`,
which the Summarize handlers enter after sending an execution's completion marker), the
batching window closes as soon as the queue has nothing more visible, and the caller is woken
after each batch that went through (no polling interval). The same messages are delivered,
only earlier: the local runtime does not add up to a window of idle seconds to every
execution that waits for the registry.

``retry_delay_s`` is not AWS behaviour: a number makes the poller itself set what stays to
visible-after-that-many-seconds (unit tests and benchmarks of the handlers use 0 to skip the
wait); None (the default, and what the local runtime uses) leaves visibility to the queue and
the handler, as AWS does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from isrflow.local.queue import LocalQueue, ReceivedMessage


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


def is_registry_outage(exc: BaseException) -> bool:
    """Whether a failed invocation failed because the registry could not be reached (the writer
    raised RegistryUnavailableError, in process or as a Lambda error name)."""
    name = "RegistryUnavailableError"
    return type(exc).__name__ == name or getattr(exc, "error", None) == name


class QueuePoller:
    """Feeds ``queue`` to ``invoke(event)`` in batches (see the module docstring). Defaults are the
    mapping's AWS defaults (BatchSize 10, no batching window); ``window_s`` in seconds of ``clock``."""

    def __init__(
        self,
        queue: LocalQueue,
        invoke: Callable[[dict], Any],
        *,
        batch_size: int = 10,
        window_s: float = 0.0,
        retry_delay_s: float | None = None,
        queue_arn: str = "arn:aws:sqs:local:000000000000:registry",
        report_batch_item_failures: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        outage_backoff_s: float = 1.0,
        max_outage_backoff_s: float = 60.0,
        is_outage: Callable[[BaseException], bool] = is_registry_outage,
    ):
        self.queue, self.invoke = queue, invoke
        self.batch_size, self.window_s, self.retry_delay_s = batch_size, window_s, retry_delay_s
        self.report_batch_item_failures = report_batch_item_failures
        self.queue_arn, self.sleep, self.clock = queue_arn, sleep, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.errors: list[str] = []
        self.outage_backoff_s, self.max_outage_backoff_s = outage_backoff_s, max_outage_backoff_s
        self.is_outage = is_outage
        #: seconds to wait before the next receive (0 unless the registry is unavailable)
        self.backoff_s = 0.0
        self.outage_batches = 0

    def _collect(self) -> list[ReceivedMessage]:
        batch = self.queue.receive(self.batch_size)
        if not batch or len(batch) >= self.batch_size or self.window_s <= 0:
            return batch
        deadline = self.clock() + self.window_s
        while len(batch) < self.batch_size and self.clock() < deadline and not self._stop.is_set():
            more = self.queue.receive(self.batch_size - len(batch))
            if more:
                batch.extend(more)
            elif self._has_waiters():  # someone waits for the writer: deliver what was sent before it began
                batch.extend(self.queue.receive(self.batch_size - len(batch)))
                break
            else:
                self.sleep(min(0.02, max(0.0, deadline - self.clock())))
        return batch

    def _notify_waiters(self) -> None:
        """A batch went through: callers waiting for the consumer check again now."""
        notify = getattr(self.queue, "notify_waiters", None)
        if notify is not None:
            notify()

    def _has_waiters(self) -> bool:
        has = getattr(self.queue, "has_waiters", None)
        return bool(has()) if has is not None else False

    def poll_once(self) -> int:
        """Deliver one batch; returns how many messages were delivered (0 = queue empty)."""
        if self.backoff_s > 0:
            self._pause(self.backoff_s)
        batch = self._collect()
        if not batch:
            return 0
        self.batches += 1
        try:
            response = self.invoke(sqs_event(batch, self.queue_arn)) or {}
        except Exception as exc:  # the whole batch is redelivered
            self.errors.append(f"{type(exc).__name__}: {exc}")
            if self.is_outage(exc):  # not the messages' fault: this receive does not count
                self.outage_batches += 1
                self.queue.release([m.receipt for m in batch])
                self.backoff_s = min(
                    self.max_outage_backoff_s, max(self.outage_backoff_s, 2 * self.backoff_s)
                )
                return len(batch)
            self._keep(batch)
            return len(batch)
        self.backoff_s = 0.0
        failed = self._failed_ids(batch, response)
        if failed is None:  # a malformed partial-batch response fails the whole batch
            self._keep(batch)
            return len(batch)
        self.queue.delete([m.receipt for m in batch if m.message_id not in failed])
        self._keep([m for m in batch if m.message_id in failed])
        self._notify_waiters()
        return len(batch)

    def _failed_ids(self, batch: list[ReceivedMessage], response: Any) -> set[str] | None:
        """The message ids the handler reported as failed; None = the whole batch failed."""
        if not self.report_batch_item_failures or not isinstance(response, dict):
            return set()
        entries = response.get("batchItemFailures") or []
        ids = {m.message_id for m in batch}
        failed = set()
        for entry in entries:
            item = entry.get("itemIdentifier") if isinstance(entry, dict) else None
            if not item or item not in ids:
                self.errors.append(
                    f"batchItemFailures names {item!r}, not a message of the batch: the whole batch failed"
                )
                return None
            failed.add(item)
        return failed

    def _keep(self, messages: list[ReceivedMessage]) -> None:
        """Leave messages in the queue: visible again when their visibility runs out (or, with
        ``retry_delay_s``, after that many seconds)."""
        if messages and self.retry_delay_s is not None:
            self.queue.change_visibility([m.receipt for m in messages], self.retry_delay_s)

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` (the injected ``sleep``; a real wait ends early on :meth:`stop`)."""
        if self.sleep is time.sleep:
            self._stop.wait(seconds)
        else:
            self.sleep(seconds)

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

    def start(self) -> QueuePoller:
        self._thread = threading.Thread(target=self._run, name="registry-writer-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
