"""Batch items: what the SQS writer receives (:class:`BatchItem`), its outcome
(:class:`BatchResult`), and each item's parsed message and status while a batch is applied.

An item that is malformed or holds a value the database cannot store
(:func:`.limits.limit_violation`; ordinary dataset messages are cleared by the quicker
:func:`.writer_limits.certainly_storable`) is rejected here, before any transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from isrflow.model.errors import MissingParentError, RegistryError, RejectedMessageError
from isrflow.model.messages import message_error_summary, parse_message
from isrflow.registry.limits import limit_violation
from isrflow.registry.redelivery import VisibilityChange, retry_visibility_s
from isrflow.registry.writer_limits import certainly_storable


@dataclass
class BatchItem:
    """One item of a batch: an id (the SQS messageId), its body, how often SQS delivered it and
    its receipt handle (what ChangeMessageVisibility needs; None outside SQS)."""

    item_id: str
    body: str | bytes | dict[str, Any] | BaseModel
    receive_count: int = 1
    receipt: str | None = None
    #: age of the message (s since it was first sent); None = unknown
    age_s: float | None = None


@dataclass
class BatchResult:
    """Outcome of a batch: item ids applied, rejected (with reason) and to retry (with reason)."""

    applied: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    retry: list[tuple[str, str]] = field(default_factory=list)

    def batch_item_failures(self) -> list[dict[str, str]]:
        """The ``batchItemFailures`` list of the SQS partial-batch response (retry items only)."""
        return [{"itemIdentifier": item_id} for item_id, _ in self.retry]

    def summary(self) -> dict[str, int]:
        return {"applied": len(self.applied), "rejected": len(self.rejected), "retry": len(self.retry)}

    def visibility_changes(self, items: Sequence[BatchItem]) -> list[VisibilityChange]:
        """How long each item returned for retry should stay invisible (see :mod:`.redelivery`):
        a few seconds growing with its receive count, instead of the queue's visibility timeout.
        Items without a receipt handle are left out."""
        retry = {item_id for item_id, _ in self.retry}
        return [
            VisibilityChange(i.item_id, i.receipt, retry_visibility_s(i.receive_count))
            for i in items
            if i.item_id in retry and i.receipt
        ]


class Item:
    """One item while a batch is applied: its parsed message (None if malformed), the body
    text, its status (pending, applied, rejected, retry) with the reason and error type."""

    __slots__ = (
        "age_s",
        "body",
        "error",
        "fixed",
        "fresh",
        "item_id",
        "message",
        "reason",
        "receive_count",
        "status",
    )

    def __init__(self, item_id: str, message: Any, body: str, receive_count: int) -> None:
        self.item_id = item_id
        self.message = message
        self.body = body
        self.receive_count = receive_count
        self.status = "pending"
        self.reason = ""
        self.error: type[RegistryError] = RejectedMessageError
        self.fixed = False  # rejected before any transaction (parse, database limits): never reset
        self.age_s: float | None = None
        #: its dataset was found absent and inserted by this run (so, most likely, was its message)
        self.fresh = False

    def reset(self) -> None:
        """Back to pending before a (re)run of the batch, unless rejected before the transaction."""
        self.fresh = False
        if not self.fixed:
            self.status, self.reason, self.error = "pending", "", RejectedMessageError

    def reject_fixed(self, reason: str) -> None:
        """Reject for good: the item is left out of every transaction of this batch."""
        self.reject(reason)
        self.fixed = True

    def reject(self, reason: str, error: type[RegistryError] = RejectedMessageError) -> None:
        self.status, self.reason, self.error = "rejected", reason, error

    def retry(self, reason: str) -> None:
        self.status, self.reason, self.error = "retry", reason, MissingParentError

    def applied(self) -> None:
        self.status = "applied"


def to_item(raw: BatchItem) -> Item:
    """Parse one batch item; reject it (before any transaction) if it is malformed or holds a
    value the database cannot store (:func:`.limits.limit_violation`)."""
    item = parse_item(raw)
    if item.message is None:
        item.fixed = True  # rejected as malformed
    else:
        problem = None if certainly_storable(item.message) else limit_violation(item.message)
        if problem is not None:
            item.reject_fixed(f"value not storable in the registry: {problem}")
    return item


def parse_item(raw: BatchItem) -> Item:
    """The item with its parsed message (:func:`isrflow.model.messages.parse_message`), or rejected as malformed."""
    body = raw.body
    if isinstance(body, BaseModel):
        text = body.model_dump_json(exclude_none=True)
        try:  # re-validate: a model built with model_construct or mutated afterwards is checked too
            return Item(raw.item_id, parse_message(text), text, raw.receive_count)
        except ValidationError as exc:
            item = Item(raw.item_id, None, text, raw.receive_count)
            item.reject(f"invalid message: {message_error_summary(exc)}")
            return item
    if isinstance(body, dict):
        text = json.dumps(body, default=str)
        data: Any = body
    else:
        text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body)
        data = text
    try:
        return Item(raw.item_id, parse_message(data), text, raw.receive_count)
    except ValidationError as exc:
        item = Item(raw.item_id, None, text, raw.receive_count)
        item.reject(f"invalid message: {message_error_summary(exc)}")
        return item
