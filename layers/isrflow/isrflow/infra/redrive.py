"""Redrive: move registry messages from the dead-letter queue back to the registry queue.

A message lands in the dead-letter queue when the writer could not apply it within the queue's
maxReceiveCount deliveries: on AWS an outage of the registry longer than about 5 x 900 s, or a
child whose parent had not arrived yet. Neither is a reason to lose it, so the dead-letter queue
keeps it (14 days) until an operator runs ``isrflow registry redrive``; the writer is idempotent,
so a message that was in fact applied already changes nothing when it comes back.

- :func:`redrive_local`: the local runtime's queue file in a repository (``queue.sqlite3``);
  the queue and dead-letter names come from ``template.yaml`` as the runtime reads them.
- :func:`redrive_sqs`: an SQS dead-letter queue into its source queue with ReceiveMessage,
  SendMessageBatch and DeleteMessageBatch (a message is deleted from the dead-letter queue only
  after its copy was sent: at-least-once, never lost).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isrflow.model.errors import IsrflowError

#: The local runtime's queue file in a repository (as :mod:`isrflow.local.runtime` names it).
LOCAL_QUEUE_FILE = "queue.sqlite3"
#: SQS's largest batch for ReceiveMessage / SendMessageBatch / DeleteMessageBatch.
SQS_BATCH = 10


def _aws_errors() -> tuple[type[BaseException], ...]:
    """botocore's client and transport errors (empty tuple without botocore: nothing to catch)."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return ()
    return (BotoCoreError, ClientError)


_AWS_ERRORS = _aws_errors()


class RedriveError(IsrflowError):
    """The messages could not be moved (no such repository or queue, an SQS call failed)."""


@dataclass(frozen=True)
class RedriveResult:
    """How many messages moved from ``source`` (the dead-letter queue) to ``target``."""

    moved: int
    source: str
    target: str
    left: int = 0  # messages still in the dead-letter queue afterwards (0 = all moved, or unknown)


def _local_names(template: str | Path | None) -> tuple[str, str]:
    """(registry queue name, dead-letter queue name) as the local runtime names them."""
    from isrflow.local.runtime import PROJECT_ROOT
    from isrflow.local.sam_template import load_app

    app = load_app(template or PROJECT_ROOT / "template.yaml")
    mappings = [m for m in app.event_source_mappings if m.enabled]
    if len(mappings) != 1:
        raise RedriveError(f"expected one queue -> function mapping in the template, found {len(mappings)}")
    spec = app.queues[mappings[0].queue]
    return spec.name, spec.dead_letter_target or f"{spec.name}-dlq"


def redrive_local(
    repo: str | Path,
    *,
    limit: int | None = None,
    template: str | Path | None = None,
    names: tuple[str, str] | None = None,
    clock: Callable[[], float] | None = None,
) -> RedriveResult:
    """Move the dead-lettered messages of the repository's local registry queue back to it
    (visible now, receive count 0). ``names``: (queue, dead-letter queue), default from the template."""
    from isrflow.local.queue import LocalQueue

    repo = Path(repo)
    if not repo.is_dir():
        raise RedriveError(f"{repo}: no such repository directory")
    path = repo / LOCAL_QUEUE_FILE
    name, dlq = names or _local_names(template)
    if not path.exists():
        return RedriveResult(0, f"{path}#{dlq}", f"{path}#{name}")
    kwargs: dict[str, Any] = {"dead_letter": dlq}
    if clock is not None:
        kwargs["clock"] = clock
    queue = LocalQueue(path, name, **kwargs)
    try:
        moved = queue.redrive(limit)
        left = queue.counts()["dead_letter"]
    finally:
        queue.close()
    return RedriveResult(moved, f"{path}#{dlq}", f"{path}#{name}", left)


def redrive_sqs(
    sqs: Any,
    dead_letter_url: str,
    queue_url: str,
    *,
    limit: int | None = None,
    visibility_s: int = 60,
    empty_receives: int = 2,
) -> RedriveResult:
    """Move messages from the SQS queue ``dead_letter_url`` to ``queue_url`` (boto3 SQS client
    ``sqs``). Each received batch is sent to the target, then deleted from the dead-letter queue
    (only the entries that were sent). Stops after ``empty_receives`` empty receives in a row
    (short polling may miss messages once) or ``limit`` messages. ``visibility_s``: how long a
    received message stays hidden in the dead-letter queue while it is being moved (s)."""
    moved, empty = 0, 0
    while empty < empty_receives and (limit is None or moved < limit):
        want = SQS_BATCH if limit is None else max(1, min(SQS_BATCH, limit - moved))
        try:
            got = sqs.receive_message(
                QueueUrl=dead_letter_url,
                MaxNumberOfMessages=want,
                WaitTimeSeconds=1,
                VisibilityTimeout=visibility_s,
                MessageAttributeNames=["All"],
            )
        except _AWS_ERRORS as exc:
            raise RedriveError(f"ReceiveMessage on {dead_letter_url}: {exc}") from None
        messages = got.get("Messages") or []
        if not messages:
            empty += 1
            continue
        empty = 0
        entries = []
        for i, m in enumerate(messages):
            entry = {"Id": str(i), "MessageBody": m["Body"]}
            if m.get("MessageAttributes"):
                entry["MessageAttributes"] = m["MessageAttributes"]
            entries.append(entry)
        try:
            sent = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except _AWS_ERRORS as exc:
            raise RedriveError(f"SendMessageBatch to {queue_url}: {exc}") from None
        ok = [messages[int(s["Id"])] for s in sent.get("Successful") or []]
        if ok:
            try:
                sqs.delete_message_batch(
                    QueueUrl=dead_letter_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(ok)],
                )
            except _AWS_ERRORS as exc:  # the copies are sent: a second redrive would only duplicate
                raise RedriveError(
                    f"DeleteMessageBatch on {dead_letter_url} after sending {len(ok)}: {exc}"
                ) from None
        moved += len(ok)
        failed = sent.get("Failed") or []
        if failed:
            raise RedriveError(
                f"SendMessageBatch to {queue_url}: {len(failed)} not sent, e.g. "
                f"{failed[0].get('Code')}: {failed[0].get('Message')} ({moved} moved)"
            )
    return RedriveResult(moved, dead_letter_url, queue_url)


def redrive_stack(
    stack: str, *, region: str | None = None, limit: int | None = None, sqs: Any = None, cfn: Any = None
) -> RedriveResult:
    """:func:`redrive_sqs` for a deployed stack: the queues come from its outputs
    ``RegistryDeadLetterQueueUrl`` and ``RegistryQueueUrl``."""
    import boto3

    from isrflow.infra.stack_client import StackError, stack_output

    cfn = cfn or boto3.client("cloudformation", region_name=region)
    try:
        dlq = stack_output(stack, "RegistryDeadLetterQueueUrl", cfn)
        queue = stack_output(stack, "RegistryQueueUrl", cfn)
    except StackError as exc:
        raise RedriveError(str(exc)) from None
    return redrive_sqs(sqs or boto3.client("sqs", region_name=region), dlq, queue, limit=limit)
