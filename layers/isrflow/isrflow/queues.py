"""Sending registry messages: to SQS in AWS, to the durable local queue on one machine.

Handlers call :func:`sender_for` with the configured queue URL and :meth:`send` a list of
message models; nothing else in a handler knows which queue is behind it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel

from .errors import IsrflowError
from .messages import dump_message

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
            import boto3

            self._client = boto3.client("sqs")
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
        from .local.queue import LocalQueue, parse_local_url

        path, name = parse_local_url(url)
        self.queue = LocalQueue(path, name)

    def send(self, messages: Sequence[BaseModel]) -> int:
        ids = [getattr(m, "message_id", None) for m in messages]
        self.queue.send([dump_message(m) for m in messages], [i or "" for i in ids])
        return len(messages)


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
    sender = _SENDERS.get(url)
    if sender is None:
        sender = LocalSender(url) if url.startswith("sqlite://") else SqsSender(url)
        _SENDERS[url] = sender
    return sender
