"""Test helper: feed a (moto) SQS queue to the registry writer handler, as the event source mapping would."""

from __future__ import annotations

import threading

import boto3

from functions.registry_writer.app import lambda_handler as writer_handler


def drain_into_writer(queue_url: str, stop: threading.Event) -> None:
    """Until ``stop`` is set: receive batches, run the writer, delete what it did not report as failed."""
    sqs = boto3.client("sqs")
    while not stop.is_set():
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            stop.wait(0.05)
            continue
        event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                              "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs"} for m in got]}
        failed = {f["itemIdentifier"] for f in writer_handler(event)["batchItemFailures"]}
        for m in got:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
