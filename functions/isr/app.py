"""ISR Lambda (container image): process one cluster of quanta from a ProcessVisit map item."""

from __future__ import annotations

from isrflow.messages import IsrClusterEvent
from isrflow.process_visit.worker import process_cluster
from isrflow.queues import sender_for
from isrflow.settings import settings


def lambda_handler(event: dict, context: object = None) -> dict:
    config = settings().require("registry_queue_url")
    summary = process_cluster(IsrClusterEvent.model_validate(event), sender_for(config.registry_queue_url))
    return summary.model_dump(mode="json")
