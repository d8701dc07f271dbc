"""Sending registry messages: to SQS in AWS, to the durable local queue on one machine.

Handlers call :func:`sender_for` with the configured queue URL and :meth:`send` a list of
message models; nothing else in a handler knows which queue is behind it. The registry writer
shortens the visibility of the items it returns for retry through :func:`visibility_for`
(ChangeMessageVisibilityBatch on SQS, the same operation on the local queue). The summaries
wait for the registry writer to catch up with what they sent through :func:`awaiting_consumer`.

The local queue itself is the local runtime's (:mod:`isrflow.local.queue`, not in the registry
layer nor in the images): only a ``sqlite://`` URL, which only the local runtime hands out,
imports it (lazily, in :class:`LocalSender` and :class:`LocalVisibility`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from isrflow.model.errors import IsrflowError
from isrflow.model.messages import dump_message

#: SQS limits: 10 entries and 256 KiB per SendMessageBatch.
SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 256 * 1024


class QueueSendError(IsrflowError):
    """Messages could not be sent to the registry queue."""


class QueueSender(Protocol):
    def send(self, messages: Sequence[BaseModel]) -> int: ...


class SqsSender:
    """SendMessageBatch in chunks of 10 entries / 256 KiB, retrying failed entries."""

    def __init__(self, url: str, client=None, attempts: int = 5, sleep=time.sleep):
        self.url, self._client, self.attempts, self.sleep = url, client, attempts, sleep

    @property
    def client(self):
        if self._client is None:
            from isrflow.infra.aws_clients import aws_client

            self._client = aws_client("sqs")
        return self._client

    def send(self, messages: Sequence[BaseModel]) -> int:
        bodies = [dump_message(m) for m in messages]
        for chunk in _chunks(bodies):
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
            for attempt in range(self.attempts):
                reply = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
                failed = {f["Id"] for f in reply.get("Failed", [])}
                if not failed:
                    break
                entries = [e for e in entries if e["Id"] in failed]
                self.sleep(min(2.0, 0.1 * 2**attempt))
            else:
                raise QueueSendError(f"{len(entries)} messages could not be sent to {self.url}")
        return len(bodies)


class LocalSender:
    """The local durable queue (``sqlite:///path#name``)."""

    def __init__(self, url: str):
        from isrflow.local.queue import LocalQueue, parse_local_url

        path, name = parse_local_url(url)
        self.queue = LocalQueue(path, name)

    def send(self, messages: Sequence[BaseModel]) -> int:
        ids = [getattr(m, "message_id", None) for m in messages]
        self.queue.send([dump_message(m) for m in messages], [i or "" for i in ids])
        return len(messages)


class VisibilityError(IsrflowError):
    """A ChangeMessageVisibility call failed as a whole (the caller logs it; messages then keep
    the visibility they had)."""


class VisibilityChanger(Protocol):
    def change(self, changes: Sequence[tuple[str, int]]) -> list[tuple[str, str]]: ...


class SqsVisibility:
    """ChangeMessageVisibilityBatch in chunks of 10 entries. ``change([(receipt, seconds), ...])``
    returns ``[(receipt, reason), ...]`` for the entries SQS did not change (a stale receipt
    handle, a message no longer in flight); raises VisibilityError if a call fails."""

    def __init__(self, url: str, client=None):
        self.url, self._client = url, client

    @property
    def client(self):
        if self._client is None:
            from isrflow.infra.aws_clients import aws_client

            self._client = aws_client("sqs")
        return self._client

    def change(self, changes: Sequence[tuple[str, int]]) -> list[tuple[str, str]]:
        from isrflow.registry.redelivery import SQS_CHANGE_BATCH_ENTRIES

        failed: list[tuple[str, str]] = []
        for start in range(0, len(changes), SQS_CHANGE_BATCH_ENTRIES):
            chunk = changes[start : start + SQS_CHANGE_BATCH_ENTRIES]
            entries = [
                {"Id": str(i), "ReceiptHandle": receipt, "VisibilityTimeout": int(seconds)}
                for i, (receipt, seconds) in enumerate(chunk)
            ]
            try:
                reply = self.client.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
            except Exception as exc:  # botocore's errors: any of them means "not changed"
                raise VisibilityError(
                    f"ChangeMessageVisibilityBatch on {self.url} failed: {type(exc).__name__}: {exc}"
                ) from exc
            for f in reply.get("Failed", []):
                failed.append((chunk[int(f["Id"])][0], f"{f.get('Code', '?')}: {f.get('Message', '')}"))
        return failed


class LocalVisibility:
    """The local durable queue's ChangeMessageVisibility (``sqlite:///path#name``); ``clock``
    (POSIX seconds, default real time) must be the one the queue's consumers use."""

    def __init__(self, url: str, *, clock=None):
        from isrflow.local.queue import LocalQueue, parse_local_url

        path, name = parse_local_url(url)
        self.queue = LocalQueue(path, name) if clock is None else LocalQueue(path, name, clock=clock)

    def change(self, changes: Sequence[tuple[str, int]]) -> list[tuple[str, str]]:
        return [
            (receipt, "ReceiptHandleIsInvalid: not in flight with this receipt handle")
            for receipt in self.queue.change_visibility_batch(changes)
        ]


_VISIBILITY: dict[str, VisibilityChanger] = {}


def _per_url(cache: dict, url: str, local: Callable[[str], Any], sqs: Callable[[str], Any]) -> Any:
    """The object serving queue ``url``: the local queue's (``sqlite://``) or SQS's, one per URL and process."""
    item = cache.get(url)
    if item is None:
        item = cache[url] = (local if url.startswith("sqlite://") else sqs)(url)
    return item


def visibility_for(url: str) -> VisibilityChanger:
    """The visibility changer for a queue URL (cached per process)."""
    return _per_url(_VISIBILITY, url, LocalVisibility, SqsVisibility)


def _chunks(bodies: list[str]):
    chunk: list[str] = []
    size = 0
    for body in bodies:
        n = len(body.encode())
        if chunk and (len(chunk) == SQS_BATCH_ENTRIES or size + n > SQS_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(body)
        size += n
    if chunk:
        yield chunk


_SENDERS: dict[str, QueueSender] = {}


def sender_for(url: str) -> QueueSender:
    """The sender for a queue URL (cached per process)."""
    return _per_url(_SENDERS, url, LocalSender, SqsSender)


class ConsumerSignal(Protocol):
    """What a waitable queue's :meth:`WaitableQueue.waiting` yields (the local queue's ``Waiter``)."""

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds`` (s) for the consumer's signal; True if one came."""
        ...


@runtime_checkable
class WaitableQueue(Protocol):
    """A queue whose consumer signals the senders waiting on it after each batch (the local queue;
    SQS has no such signal)."""

    def waiting(self, seconds: float) -> AbstractContextManager[ConsumerSignal]:
        """Mark for ``seconds`` (s) that a caller waits for the consumer; yields its signal."""
        ...


def awaiting_consumer(sender: Any, seconds: float) -> AbstractContextManager[Callable[[float], object]]:
    """``with awaiting_consumer(sender, seconds) as sleep:`` around a wait for what ``sender``
    sent to be processed, ``sleep(s)`` being the wait (s) between two checks: when the sender
    writes to a queue whose consumer signals (a ``queue`` with ``waiting``, as the local queue's
    :class:`LocalSender` has), that queue's waiter, which the local event source wakes after each
    batch, marked for ``seconds`` (s); otherwise (SQS has no such signal) ``time.sleep``."""
    queue = getattr(sender, "queue", None)
    if not isinstance(queue, WaitableQueue):
        return nullcontext(time.sleep)
    return _waiting_sleep(queue, seconds)


@contextmanager
def _waiting_sleep(queue: WaitableQueue, seconds: float) -> Iterator[Callable[[float], object]]:
    with queue.waiting(seconds) as waiter:
        yield waiter.sleep
