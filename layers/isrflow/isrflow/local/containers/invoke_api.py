"""The local runtime's Lambda and SQS integrations when the functions run in their containers.

- :class:`InvokeApiLambdas`: ``lambda:invoke`` through the Lambda Invoke API that
  ``sam local start-lambda`` serves on 127.0.0.1 (the same call Step Functions makes); a
  function error comes back as :class:`~isrflow.local.lambdas.LambdaError` with the function's
  own ``errorType`` and ``errorMessage``, as the Lambda service reports it.
- :class:`SqsEventSource`: the registry queue's event source mapping against SQS (moto in
  server mode): batches of up to ``batch_size`` gathered for up to ``window_s``, one writer
  invocation per batch, only the records the writer did not return deleted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from isrflow.local.lambdas import LambdaError, LocalFunction


class InvokeApiLambdas:
    """Invocations of the template's functions (by logical id) at a Lambda Invoke API endpoint."""

    def __init__(self, endpoint: str, logical_ids: dict[str, str], region: str = "us-east-1"):
        import boto3
        from botocore.config import Config

        self.logical_ids = logical_ids  # function name -> the template's logical id
        self.client = boto3.client(
            "lambda",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(
                read_timeout=960, connect_timeout=10, retries={"max_attempts": 0}, max_pool_connections=64
            ),
        )

    def invoke(
        self, fn: LocalFunction, event: Any, on_done: Callable[[float, bool], None] | None = None
    ) -> Any:
        """The runtime's call: ``fn`` by its function name (mapped to its logical id)."""
        return self.invoke_function(self.logical_ids.get(fn.name, fn.name), event, on_done)

    def invoke_function(
        self, function: str, event: Any, on_done: Callable[[float, bool], None] | None = None
    ) -> Any:
        """Invoke ``function`` (a logical id of the template) with ``event``; its answer, or LambdaError."""
        t0 = time.perf_counter()
        ok = False
        try:
            reply = self.client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
            payload = json.loads(reply["Payload"].read() or b"null")
            if reply.get("FunctionError"):
                payload = payload if isinstance(payload, dict) else {}
                raise LambdaError(
                    payload.get("errorType", "Lambda.Unknown"),
                    payload.get("errorMessage", ""),
                    payload.get("stackTrace"),
                )
            ok = True
            return payload
        finally:
            if on_done is not None:
                on_done(time.perf_counter() - t0, ok)

    def close(self) -> None:
        self.client.close()


class SqsEventSource:
    """Polls an SQS queue and feeds its messages to ``invoke`` in batches (one thread)."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        invoke: Callable[[dict], Any],
        *,
        batch_size: int = 10,
        window_s: float = 0.0,
        report_batch_item_failures: bool = True,
    ):
        self.sqs, self.queue_url, self.queue_arn, self.invoke = sqs, queue_url, queue_arn, invoke
        self.batch_size, self.window_s = batch_size, window_s
        self.report_batch_item_failures = report_batch_item_failures
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.errors: list[str] = []

    def _gather(self) -> list[dict]:
        got: list[dict] = []
        deadline = time.monotonic() + self.window_s
        while len(got) < self.batch_size and not self._stop.is_set():
            more = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(got)),
                WaitTimeSeconds=0,
                AttributeNames=["All"],
            ).get("Messages", [])
            got += more
            if not more:
                if got and time.monotonic() >= deadline:
                    break
                if not got:
                    return got
                time.sleep(0.05)
        return got

    def _event(self, messages: list[dict]) -> dict:
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": m.get("MD5OfBody", ""),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": self.queue_arn.split(":")[3]
                    if self.queue_arn.count(":") >= 5
                    else "us-east-1",
                }
                for m in messages
            ]
        }

    def poll_once(self) -> int:
        """One batch (if any): invoke, then delete what was processed. Returns the batch size."""
        messages = self._gather()
        if not messages:
            return 0
        try:
            answer = self.invoke(self._event(messages))
        except Exception as exc:  # the whole batch comes back after its visibility timeout, as on AWS
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return len(messages)
        failed = set()
        if self.report_batch_item_failures and isinstance(answer, dict):
            failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done[start : start + 10])
                ],
            )
        self.batches += 1
        return len(messages)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.poll_once() == 0:
                self._stop.wait(0.2)

    def start(self) -> SqsEventSource:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="sqs-event-source")
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
            self._thread = None
