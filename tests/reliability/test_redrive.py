"""Defect 4 of issue 10: ``isrflow registry redrive`` brings dead-lettered registry messages back,
from the local runtime's queue (``--repo``) and from the stack's SQS dead-letter queue
(``--aws --stack``, on moto), and the writer then applies them."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws
from queue_backlog import RAW_RUN, Clock, backlog, instrument, poller_for, run_until_empty, writer_setup

from functions.registry_writer import app as writer_app
from isrflow.cli import cli
from isrflow.infra.redrive import redrive_local, redrive_sqs
from isrflow.local.queue import LocalQueue
from isrflow.registry import Registry
from tests.fake_aws import use_fake_aws

REGION = "us-east-1"


def _dead_lettered(path: Path, bodies: list[str], clock: Clock) -> LocalQueue:
    """The template's queue names in ``path``, every body received past maxReceiveCount (1 here)."""
    queue = LocalQueue(
        path,
        "RegistryQueue",
        max_receive_count=1,
        dead_letter="RegistryDeadLetterQueue",
        visibility_timeout=900,
        clock=clock,
    )
    queue.send(bodies)
    assert len(queue.receive(len(bodies))) == len(bodies)
    clock.now += 901
    assert queue.receive(len(bodies)) == []  # the second receive moves them to the DLQ
    assert queue.counts() == {"visible": 0, "in_flight": 0, "dead_letter": len(bodies)}
    return queue


def test_local_redrive_cli_moves_every_dead_letter_back(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    queue = _dead_lettered(repo / "queue.sqlite3", [f"m{i}" for i in range(7)], Clock())
    result = CliRunner().invoke(cli, ["registry", "redrive", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert "redrove 7 message(s)" in result.output and "RegistryDeadLetterQueue" in result.output
    assert queue.counts()["dead_letter"] == 0
    got = queue.receive(10)
    assert sorted(m.body for m in got) == [f"m{i}" for i in range(7)]
    assert {m.receive_count for m in got} == {1}  # counted afresh: not dead-lettered again at once


def test_local_redrive_then_the_writer_applies_every_row(tmp_path, monkeypatch) -> None:
    import isrflow.infra.settings

    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    registry = Registry.open(url, tmp_path / "datastore", create=True)
    registry.apply([instrument()])
    monkeypatch.setenv("ISRFLOW_REGISTRY_URL", url)
    monkeypatch.delenv("ISRFLOW_REGISTRY_SECRET_ARN", raising=False)
    clock = Clock()
    bodies = backlog(exposures=5, detectors=4, seed=2)
    _dead_lettered(tmp_path / "queue.sqlite3", bodies, clock).close()
    queue = writer_setup(tmp_path, monkeypatch, clock)
    assert redrive_local(tmp_path, clock=clock).moved == len(bodies)
    run_until_empty(queue, poller_for(queue, clock, writer_app.lambda_handler, batch_s=1.0), clock)
    try:
        assert len(registry.query_datasets("raw", [RAW_RUN])) == 20 and registry.rejects() == []
        assert queue.counts() == {"visible": 0, "in_flight": 0, "dead_letter": 0}
    finally:
        cached = isrflow.infra.settings._REGISTRIES.pop(url, None)
        if cached is not None:
            cached.close()
        registry.close()


def test_redrive_needs_exactly_one_target(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in ([], ["--repo", str(tmp_path), "--aws", "--stack", "s"], ["--aws"]):
        result = runner.invoke(cli, ["registry", "redrive", *args])
        assert result.exit_code == 1 and result.output.startswith("error: RedriveError: "), result.output
    result = runner.invoke(cli, ["registry", "redrive", "--repo", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "no such repository" in result.output


_STACK = {
    "Resources": {
        "RegistryDeadLetterQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "reg-dlq"}},
        "RegistryQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "reg"}},
    },
    "Outputs": {
        "RegistryQueueUrl": {"Value": {"Ref": "RegistryQueue"}},
        "RegistryDeadLetterQueueUrl": {"Value": {"Ref": "RegistryDeadLetterQueue"}},
    },
}


@pytest.fixture
def aws(monkeypatch):
    use_fake_aws(monkeypatch, AWS_DEFAULT_REGION=REGION)
    with mock_aws():
        yield boto3.client("sqs", region_name=REGION)


def _all_bodies(sqs, url: str) -> list[str]:
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300).get(
            "Messages", []
        )
        if not got:
            return sorted(out)
        out += [m["Body"] for m in got]


def test_aws_redrive_cli_moves_the_stack_dead_letter_queue(aws) -> None:
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="isrflow-test", TemplateBody=json.dumps(_STACK)
    )
    dlq = aws.get_queue_url(QueueName="reg-dlq")["QueueUrl"]
    queue = aws.get_queue_url(QueueName="reg")["QueueUrl"]
    bodies = [json.dumps({"n": i}) for i in range(23)]  # more than one SQS batch of 10
    for i in range(0, len(bodies), 10):
        aws.send_message_batch(
            QueueUrl=dlq, Entries=[{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[i : i + 10])]
        )
    result = CliRunner().invoke(
        cli, ["registry", "redrive", "--aws", "--stack", "isrflow-test", "--region", REGION]
    )
    assert result.exit_code == 0, result.output
    assert "redrove 23 message(s)" in result.output
    assert _all_bodies(aws, queue) == sorted(bodies)
    assert _all_bodies(aws, dlq) == []


def test_aws_redrive_deletes_only_what_was_sent(aws) -> None:
    """A failed SendMessageBatch entry stays in the dead-letter queue (and the error says so)."""
    dlq = aws.create_queue(QueueName="d")["QueueUrl"]
    queue = aws.create_queue(QueueName="q")["QueueUrl"]
    aws.send_message_batch(QueueUrl=dlq, Entries=[{"Id": str(i), "MessageBody": f"b{i}"} for i in range(3)])

    class HalfFailing:
        def __getattr__(self, name):
            return getattr(aws, name)

        def send_message_batch(self, QueueUrl, Entries):  # boto3's argument names
            ok = aws.send_message_batch(QueueUrl=QueueUrl, Entries=Entries[:1])
            return {
                "Successful": ok["Successful"],
                "Failed": [
                    {"Id": e["Id"], "Code": "InternalError", "Message": "try again", "SenderFault": False}
                    for e in Entries[1:]
                ],
            }

    from isrflow.infra.redrive import RedriveError

    with pytest.raises(RedriveError, match=r"2 not sent.*1 moved"):
        redrive_sqs(HalfFailing(), dlq, queue, visibility_s=0)
    assert len(_all_bodies(aws, queue)) == 1 and len(_all_bodies(aws, dlq)) == 2
