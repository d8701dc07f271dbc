"""When the items the registry writer returns for retry come back (SQS redelivery timing).

A child delivered one batch before its parent is returned in ``batchItemFailures``. SQS would
hide it for the queue's whole visibility timeout (900 s); the writer shortens that to a few
seconds with ChangeMessageVisibilityBatch. Checked on moto's SQS (the AWS code path, moto's
clock patched) and on the local queue with the local event source (an injected clock): the
child comes back at 4 s, not at ~1 s (the old local shortcut) and not at 900 s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from registry_helpers import dims, raw_msg

from functions.registry_writer import app as writer_app
from isrflow.infra import queues
from isrflow.local.event_source import QueuePoller
from isrflow.local.queue import LocalQueue
from isrflow.model.errors import CollectionError
from isrflow.model.messages import dump_message
from isrflow.registry import BatchItem, BatchResult, Registry
from isrflow.registry.redelivery import (
    SQS_MAX_VISIBILITY_S,
    queue_name_of,
    queue_url_from_arn,
    redelivery_span_s,
    resolve_queue_url,
    retrier_budget_s,
    retry_visibility_s,
)
from tests.fake_aws import use_fake_aws

QUEUE_NAME = "isrflow-registry"
T0 = 1_800_000_000.0  # seconds; the fake clocks start here


class Clock:
    """An injectable POSIX clock (seconds) that only moves when a test says so."""

    def __init__(self, start: float = T0):
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    import isrflow.infra.settings

    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    reg = Registry.open(url, tmp_path / "datastore", create=True)
    reg.apply(dims(detectors=(1,))[:1])  # the instrument; its detector and exposure come later
    monkeypatch.setenv("ISRFLOW_REGISTRY_URL", url)
    for key in (
        "ISRFLOW_REGISTRY_SECRET_ARN",
        "ISRFLOW_REGISTRY_GIVE_UP_AFTER",
        "ISRFLOW_REGISTRY_QUEUE_URL",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(queues, "_VISIBILITY", {})
    yield reg
    cached = isrflow.infra.settings._REGISTRIES.pop(url, None)
    if cached is not None:
        cached.close()
    reg.close()


def _parent() -> list[str]:
    """The detector and exposure records the child's raw dataset needs."""
    return [dump_message(m) for m in dims(detectors=(1,))[1:]]


def _child() -> str:
    return dump_message(raw_msg(100, 1))


def _has_child(registry: Registry) -> bool:
    try:
        return len(registry.query_datasets("raw", ["HSC/raw/all"])) == 1
    except CollectionError:  # the run is created with its first dataset
        return False


# --- the policy ---------------------------------------------------------------------------------


def test_retry_visibility_backs_off_with_the_receive_count_and_is_capped() -> None:
    assert [retry_visibility_s(n) for n in range(1, 8)] == [4, 8, 16, 32, 60, 60, 60]
    assert retry_visibility_s(0) == 4 and retry_visibility_s(10_000) == 60
    # the template's writer gives up on the 4th delivery: 4 + 8 + 16 s of waits, 4 deliveries
    assert redelivery_span_s(4, batching_window_s=5, writer_batch_s=10) == 28 + 4 * 15
    assert retrier_budget_s(2, 8, 2.0, 30) == 150  # Plan's QuantaNotFoundError retrier
    assert retrier_budget_s(1, 6, 2.0) == 63  # the old one


def test_queue_urls_and_arns() -> None:
    arn = "arn:aws:sqs:us-east-1:123456789012:isrflow-registry"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/isrflow-registry"
    assert queue_url_from_arn(arn) == url
    china = "https://sqs.cn-north-1.amazonaws.com.cn/1/q"
    assert queue_url_from_arn("arn:aws-cn:sqs:cn-north-1:1:q") == china
    local = "sqlite:////r/q.sqlite3#isrflow-registry"
    assert queue_name_of(arn) == queue_name_of(url) == queue_name_of(local) == "isrflow-registry"
    # the configured URL wins when it names the records' queue (VPC endpoint, local queue) ...
    endpoint = "https://vpce-1.sqs.us-east-1.vpce.amazonaws.com/123456789012/isrflow-registry"
    assert resolve_queue_url([arn, arn], endpoint) == endpoint
    assert resolve_queue_url([None], endpoint) == endpoint
    # ... otherwise the records' ARN decides
    assert resolve_queue_url([arn], "https://sqs.us-east-1.amazonaws.com/123456789012/other") == url
    assert resolve_queue_url([None], None) is None
    assert resolve_queue_url([arn, arn.replace("registry", "x")], None) is None
    with pytest.raises(ValueError, match="not an SQS queue ARN"):
        queue_url_from_arn("arn:aws:sns:us-east-1:1:topic")


def test_batch_result_gives_each_retried_item_its_visibility() -> None:
    items = [
        BatchItem("a", "{}", 1, "ra"),
        BatchItem("b", "{}", 3, "rb"),
        BatchItem("c", "{}", 2, None),
        BatchItem("d", "{}", 1, "rd"),
    ]
    result = BatchResult(applied=["d"], retry=[("a", "x"), ("b", "y"), ("c", "z")])
    assert [(c.item_id, c.receipt, c.seconds) for c in result.visibility_changes(items)] == [
        ("a", "ra", 4),
        ("b", "rb", 16),
    ]  # c has no receipt handle: nothing to change


# --- AWS: moto's SQS ----------------------------------------------------------------------------


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, str, str, Clock]]:
    """moto SQS with the registry queue's 900 s visibility timeout; moto's clock is ``Clock``."""
    use_fake_aws(monkeypatch)
    clock = Clock()
    monkeypatch.setattr("moto.sqs.models.unix_time_millis", lambda *a: clock.now * 1000.0)
    with mock_aws():
        client = boto3.client("sqs")
        url = client.create_queue(QueueName=QUEUE_NAME, Attributes={"VisibilityTimeout": "900"})["QueueUrl"]
        arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        yield client, url, arn, clock


def _sqs_batch(client, url: str, arn: str) -> tuple[dict, list[dict]]:
    reply = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
    got = reply.get("Messages", [])
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"]},
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
            }
            for m in got
        ]
    }
    return event, got


def test_sqs_child_before_parent_comes_back_after_seconds_not_the_visibility_timeout(registry, sqs) -> None:
    client, url, arn, clock = sqs
    client.send_message(QueueUrl=url, MessageBody=_child())
    event, got = _sqs_batch(client, url, arn)
    (child,) = got
    # No ISRFLOW_REGISTRY_QUEUE_URL: the queue URL is derived from the records' eventSourceARN.
    assert writer_app.lambda_handler(event) == {"batchItemFailures": [{"itemIdentifier": child["MessageId"]}]}
    registry.apply(dims(detectors=(1,))[1:])  # the parent arrives meanwhile (another batch)

    clock.now = T0 + 1.0  # the old local shortcut's redelivery time: still hidden
    assert _sqs_batch(client, url, arn)[1] == []
    clock.now = T0 + 3.9
    assert _sqs_batch(client, url, arn)[1] == []
    clock.now = T0 + 4.001  # the writer's 4 s, far before the queue's 900 s
    event, got = _sqs_batch(client, url, arn)
    assert [m["MessageId"] for m in got] == [child["MessageId"]]
    assert got[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert writer_app.lambda_handler(event) == {"batchItemFailures": []}
    assert _has_child(registry)


def test_sqs_second_return_waits_longer(registry, sqs) -> None:
    client, url, arn, clock = sqs
    client.send_message(QueueUrl=url, MessageBody=_child())
    for attempt, wait in ((1, 4), (2, 8)):
        event, got = _sqs_batch(client, url, arn)
        assert len(got) == 1 and got[0]["Attributes"]["ApproximateReceiveCount"] == str(attempt)
        assert len(writer_app.lambda_handler(event)["batchItemFailures"]) == 1
        clock.now += wait - 0.01
        assert _sqs_batch(client, url, arn)[1] == []
        clock.now += 0.02
    assert len(_sqs_batch(client, url, arn)[1]) == 1


def test_a_failing_visibility_call_is_logged_not_fatal(registry, sqs, monkeypatch, caplog) -> None:
    client, url, arn, clock = sqs
    client.send_message(QueueUrl=url, MessageBody=_child())
    event, got = _sqs_batch(client, url, arn)
    for record in event["Records"]:  # a queue that does not exist: ChangeMessageVisibilityBatch raises
        record["eventSourceARN"] = arn.replace(QUEUE_NAME, "gone")
    with caplog.at_level(logging.WARNING, logger="isrflow.registry_writer"):
        response = writer_app.lambda_handler(event)
    assert response == {"batchItemFailures": [{"itemIdentifier": got[0]["MessageId"]}]}
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == "could not shorten the visibility of retried items"
    assert "VisibilityError" in warning.visibility_error  # a structured field of the log line
    clock.now = T0 + 60  # the item keeps the queue's 900 s
    assert _sqs_batch(client, url, arn)[1] == []


# --- locally: the local queue and event source --------------------------------------------------


@pytest.fixture
def local(tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch):
    """The local queue (900 s visibility, 5 receives) and its event source feeding the writer
    handler; the writer reaches the queue through ISRFLOW_REGISTRY_QUEUE_URL, on the same clock."""
    clock = Clock()
    queue = LocalQueue(
        tmp_path / "queue.sqlite3", "RegistryQueue", visibility_timeout=900, max_receive_count=5, clock=clock
    )
    monkeypatch.setenv("ISRFLOW_REGISTRY_QUEUE_URL", queue.url)
    monkeypatch.setattr(queues, "_VISIBILITY", {queue.url: queues.LocalVisibility(queue.url, clock=clock)})
    poller = QueuePoller(
        queue,
        writer_app.lambda_handler,
        batch_size=10,
        window_s=0,
        queue_arn="arn:aws:sqs:local:000000000000:RegistryQueue",
        clock=clock,
    )
    return queue, poller, clock


def test_local_child_before_parent_comes_back_after_seconds_not_1_s_nor_900_s(registry, local) -> None:
    queue, poller, clock = local
    queue.send([_child()])
    assert poller.poll_once() == 1 and not _has_child(registry)  # returned: its parent is missing
    queue.send(_parent())
    assert poller.poll_once() == 2  # the parent's batch
    clock.now = T0 + 1.0
    assert poller.poll_once() == 0  # not back after ~1 s (the old local retry delay)
    clock.now = T0 + 3.999
    assert poller.poll_once() == 0
    clock.now = T0 + 4.0
    assert poller.poll_once() == 1 and _has_child(registry)
    assert queue.counts() == {"visible": 0, "in_flight": 0, "dead_letter": 0}


def test_local_returned_item_without_a_visibility_change_waits_the_visibility_timeout(tmp_path) -> None:
    """What a consumer that does not call ChangeMessageVisibility gets, as on AWS."""
    clock = Clock()
    queue = LocalQueue(tmp_path / "q.sqlite3", "q", visibility_timeout=900, clock=clock)
    queue.send(["m"], ["id"])
    seen = []

    def handler(event):
        seen.append(event["Records"][0]["attributes"]["ApproximateReceiveCount"])
        return {"batchItemFailures": [{"itemIdentifier": "id"}]}

    poller = QueuePoller(queue, handler, window_s=0, clock=clock)
    assert poller.poll_once() == 1
    clock.now = T0 + 899.9
    assert poller.poll_once() == 0
    clock.now = T0 + 900.0
    assert poller.poll_once() == 1 and seen == ["1", "2"]


def test_local_malformed_partial_response_fails_the_whole_batch(tmp_path) -> None:
    clock = Clock()
    queue = LocalQueue(tmp_path / "q.sqlite3", "q", visibility_timeout=30, clock=clock)
    queue.send(["a", "b"], ["a", "b"])
    poller = QueuePoller(
        queue, lambda event: {"batchItemFailures": [{"itemIdentifier": "nope"}]}, window_s=0, clock=clock
    )
    assert poller.poll_once() == 2 and "not a message of the batch" in poller.errors[0]
    assert queue.counts()["in_flight"] == 2  # nothing deleted: both come back after 30 s
    clock.now = T0 + 30
    assert len(queue.receive(10)) == 2


def test_local_change_visibility_has_sqs_semantics(tmp_path) -> None:
    clock = Clock()
    queue = LocalQueue(tmp_path / "q.sqlite3", "q", visibility_timeout=900, clock=clock)
    queue.send(["a", "b"])
    a, b = queue.receive(2)
    assert queue.change_visibility_batch([(a.receipt, 10), (b.receipt, 0), ("1:stale", 5)]) == ["1:stale"]
    assert [m.body for m in queue.receive(10)] == ["b"]  # 0 s: visible at once
    clock.now = T0 + 10
    (again,) = queue.receive(10)
    assert again.body == "a" and again.receive_count == 2
    assert queue.change_visibility([a.receipt], 5) == [a.receipt]  # a's first receipt is stale now
    with pytest.raises(ValueError, match="outside"):
        queue.change_visibility([again.receipt], SQS_MAX_VISIBILITY_S + 1)
