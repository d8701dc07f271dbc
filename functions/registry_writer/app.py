"""Registry writer Lambda: one SQS batch -> one registry transaction.

The event source mapping must enable ``ReportBatchItemFailures``. The handler parses the
records, hands them to :func:`isrflow.registry.apply_batch` and returns the partial-batch
response: only items whose parent is not registered yet are listed in ``batchItemFailures``.
SQS would hide those for the queue's whole visibility timeout (900 s), so the handler first
shortens their visibility with ChangeMessageVisibilityBatch to a few seconds growing with
their receive count (:mod:`isrflow.registry.redelivery`); if that call fails it is logged and
the items simply come back later. Poison messages are recorded in the registry's rejects table
and count as processed: malformed ones, ones holding a value the database cannot store (checked
before the transaction), and one the database refuses anyway (found by bisecting the batch, see
:mod:`isrflow.registry.writer`); the rest of the batch is applied. If the database cannot be
reached or the transaction fails otherwise, the handler raises, so the whole batch becomes
visible again and is redelivered: nothing is lost.

Configuration (environment, read through :mod:`isrflow.infra.settings` like every function):

- ``ISRFLOW_REGISTRY_URL``: registry database URL (``postgresql://...`` in AWS,
  ``sqlite:///...`` locally; a PostgreSQL schema can be chosen with
  ``?options=-csearch_path%3Dschema``), or ``ISRFLOW_REGISTRY_SECRET_ARN``: a Secrets Manager
  secret holding the connection (RDS format).
- ``ISRFLOW_REGISTRY_GIVE_UP_AFTER``: reject (rather than retry) an item whose parent is still
  missing on this delivery count; keep it below the queue's maxReceiveCount. 0/unset = never.
- ``ISRFLOW_REGISTRY_QUEUE_URL``: where visibilities are changed when it names the queue the
  records came from (their ``eventSourceARN``); otherwise the URL is derived from that ARN.
- ``ISRFLOW_REGISTRY_GIVE_UP_MIN_AGE_S``: the give-up count applies only to a message at least
  this old (SentTimestamp; default 6 h). A younger orphan is returned for retry however often it
  was delivered (its parent may be further back in a shuffled backlog); past maxReceiveCount it
  is dead-lettered, kept for ``isrflow registry redrive``, never rejected.

One connection per execution environment: bound the database's connections with the event
source mapping's ``ScalingConfig.MaximumConcurrency``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from aws_lambda_powertools.utilities.data_classes import SQSEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from isrflow.infra.edge import add_count, lambda_edge
from isrflow.infra.queues import visibility_for
from isrflow.infra.settings import open_registry, settings
from isrflow.registry import BatchItem, BatchResult, apply_batch
from isrflow.registry.redelivery import resolve_queue_url

ENV_GIVE_UP_AFTER = "ISRFLOW_REGISTRY_GIVE_UP_AFTER"
ENV_GIVE_UP_MIN_AGE = "ISRFLOW_REGISTRY_GIVE_UP_MIN_AGE_S"
#: Default of ``ISRFLOW_REGISTRY_GIVE_UP_MIN_AGE_S`` (s): an orphan younger than this is never rejected.
GIVE_UP_MIN_AGE_S = 6 * 3600.0
#: The handler's wall clock (s since the epoch); tests replace it.
now = time.time

logger = logging.getLogger("isrflow.registry_writer")


def _age_s(sent_timestamp_ms: Any) -> float | None:
    """Seconds since SQS's SentTimestamp (ms since the epoch); None when absent or malformed."""
    try:
        return max(0.0, now() - int(sent_timestamp_ms) / 1000.0)
    except (TypeError, ValueError):
        return None


def parse_records(event: dict[str, Any]) -> list[BatchItem]:
    """SQS event records (Powertools' :class:`SQSEvent`) -> batch items (messageId, body,
    ApproximateReceiveCount, receiptHandle, age in s from SentTimestamp). Only ``messageId`` is
    required: a record without the other fields is a batch item the writer can still reject."""
    items = []
    for record in SQSEvent(event if event.get("Records") else {"Records": []}).records:
        attributes = record.get("attributes") or {}
        items.append(
            BatchItem(
                item_id=record.message_id,
                body=record.get("body", ""),
                receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
                receipt=record.get("receiptHandle") or None,
                age_s=_age_s(attributes.get("SentTimestamp")),
            )
        )
    return items


def shorten_retry_visibility(
    event: dict[str, Any], items: list[BatchItem], result: BatchResult
) -> dict[str, Any]:
    """ChangeMessageVisibility for the items returned for retry (see the module docstring).

    Never raises: a failure is logged and reported in the returned summary; the items then come
    back after the queue's visibility timeout instead."""
    changes = result.visibility_changes(items)
    if not changes:
        return {}
    arns = [r.get("eventSourceARN") for r in event.get("Records") or []]  # None where a record has none
    url = resolve_queue_url(arns, settings().registry_queue_url)
    info: dict[str, Any] = {
        "visibility_changes": len(changes),
        "visibility_s": sorted({c.seconds for c in changes}),
    }
    if url is None:
        info["visibility_error"] = "no queue URL: neither ISRFLOW_REGISTRY_QUEUE_URL nor eventSourceARN"
    else:
        try:
            failed = visibility_for(url).change([(c.receipt, c.seconds) for c in changes])
        except Exception as exc:  # logged, not fatal: the batch itself was committed
            info["visibility_error"] = f"{type(exc).__name__}: {exc}"
        else:
            if failed:
                info["visibility_error"] = f"{len(failed)} not changed, e.g. {failed[0][1]}"
    if "visibility_error" in info:
        logger.warning("could not shorten the visibility of retried items", extra=info)
    return info


@lambda_edge
def lambda_handler(
    event: dict[str, Any], context: LambdaContext | None = None
) -> dict[str, list[dict[str, str]]]:
    start = time.perf_counter()
    items = parse_records(event)
    give_up = int(os.environ.get(ENV_GIVE_UP_AFTER, "0") or 0) or None
    min_age = float(os.environ.get(ENV_GIVE_UP_MIN_AGE, "") or GIVE_UP_MIN_AGE_S)
    # Raises (RegistryUnavailableError, ...) when the batch could not be committed -> redelivered.
    result = apply_batch(open_registry(settings()), items, give_up_after=give_up, give_up_min_age_s=min_age)
    visibility = shorten_retry_visibility(event, items, result)
    summary = result.summary()
    for name, metric in (
        ("applied", "RegistryMessagesApplied"),
        ("rejected", "RegistryMessagesRejected"),
        ("retry", "RegistryMessagesRetried"),
    ):
        add_count(metric, summary[name])
    logger.info(
        "registry batch applied",
        extra={
            "records": len(items),
            **summary,
            **visibility,
            "seconds": round(time.perf_counter() - start, 4),
            "rejected_reasons": [reason for _, reason in result.rejected[:5]],
            "retry_reasons": [reason for _, reason in result.retry[:5]],
        },
    )
    return {"batchItemFailures": result.batch_item_failures()}


handler = lambda_handler
