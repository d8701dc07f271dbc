"""Test helper: feed an SQS queue (moto) to the registry writer, as the event source mapping would."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3

Writer = Callable[[dict], dict]


def _in_process_writer(event: dict) -> dict:
    from functions.registry_writer.app import lambda_handler

    return lambda_handler(event)


def drain_into_writer(
    queue_url: str, stop: threading.Event, sqs: Any = None, writer: Writer | None = None, batch: int = 10
) -> None:
    """Until ``stop`` is set: receive batches, run the writer, delete what it did not report as failed."""
    sqs = sqs or boto3.client("sqs")
    writer = writer or _in_process_writer
    while not stop.is_set():
        got: list[dict] = []
        while len(got) < batch:  # gather up to `batch` messages, as the event source mapping does
            more = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, batch - len(got)),
                WaitTimeSeconds=0,
                AttributeNames=["All"],
            ).get("Messages", [])
            got += more
            if not more:
                break
        if not got:
            stop.wait(0.05)
            continue
        event = {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": {
                        "ApproximateReceiveCount": m.get("Attributes", {}).get("ApproximateReceiveCount", "1")
                    },
                    "eventSource": "aws:sqs",
                }
                for m in got
            ]
        }
        failed = {f["itemIdentifier"] for f in writer(event)["batchItemFailures"]}
        for m in got:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


@contextlib.contextmanager
def writer_draining(
    queue_url: str, sqs: Any = None, writer: Writer | None = None, batch: int = 10
) -> Iterator[None]:
    """The writer drains ``queue_url`` in a thread for the duration of the block."""
    stop = threading.Event()
    thread = threading.Thread(
        target=drain_into_writer, args=(queue_url, stop, sqs, writer, batch), daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
