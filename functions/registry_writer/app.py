"""Registry writer Lambda: one SQS batch -> one registry transaction.

The event source mapping must enable ``ReportBatchItemFailures``. The handler parses the
records, hands them to :func:`isrflow.registry.apply_batch` and returns the partial-batch
response: only items whose parent is not registered yet are listed in ``batchItemFailures``
(SQS redelivers them later). Poison messages are recorded in the registry's rejects table
and count as processed. If the database cannot be reached or the transaction fails, the
handler raises, so the whole batch becomes visible again and is redelivered: nothing is lost.

Configuration (environment, read through :mod:`isrflow.settings` like every function):

- ``ISRFLOW_REGISTRY_URL``: registry database URL (``postgresql://...`` in AWS,
  ``sqlite:///...`` locally; a PostgreSQL schema can be chosen with
  ``?options=-csearch_path%3Dschema``), or ``ISRFLOW_REGISTRY_SECRET_ARN``: a Secrets Manager
  secret holding the connection (RDS format).
- ``ISRFLOW_REGISTRY_GIVE_UP_AFTER``: reject (rather than retry) an item whose parent is still
  missing on this delivery count; keep it below the queue's maxReceiveCount. 0/unset = never.

One connection per execution environment: bound the database's connections with the event
source mapping's ``ScalingConfig.MaximumConcurrency``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from isrflow.registry import BatchItem, apply_batch
from isrflow.settings import open_registry, settings

ENV_GIVE_UP_AFTER = "ISRFLOW_REGISTRY_GIVE_UP_AFTER"

logger = logging.getLogger("isrflow.registry_writer")
logger.setLevel(logging.INFO)


def parse_records(event: dict[str, Any]) -> list[BatchItem]:
    """SQS event records -> batch items (messageId, body, ApproximateReceiveCount)."""
    items = []
    for record in event.get("Records") or []:
        attributes = record.get("attributes") or {}
        items.append(
            BatchItem(
                item_id=record["messageId"],
                body=record.get("body", ""),
                receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
            )
        )
    return items


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, list[dict[str, str]]]:
    start = time.perf_counter()
    items = parse_records(event)
    give_up = int(os.environ.get(ENV_GIVE_UP_AFTER, "0") or 0) or None
    # Raises (RegistryUnavailableError, ...) when the batch could not be committed -> redelivered.
    result = apply_batch(open_registry(settings()), items, give_up_after=give_up)
    logger.info(
        json.dumps(
            {
                "message": "registry batch applied",
                "records": len(items),
                **result.summary(),
                "seconds": round(time.perf_counter() - start, 4),
                "rejected_reasons": [reason for _, reason in result.rejected[:5]],
                "retry_reasons": [reason for _, reason in result.retry[:5]],
            }
        )
    )
    return {"batchItemFailures": result.batch_item_failures()}


handler = lambda_handler
