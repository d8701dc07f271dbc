"""ISR Lambda (container image): process one cluster of quanta from a ProcessVisit map item, or
(``action: mosaic``, ProcessVisit with previews) assemble the focal-plane mosaics of an execution."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from isrflow.infra.edge import lambda_edge
from isrflow.infra.queues import sender_for
from isrflow.infra.settings import settings
from isrflow.model.messages import IsrClusterEvent, MosaicEvent
from isrflow.process_visit.worker import process_cluster


@lambda_edge
def lambda_handler(event: dict, context: LambdaContext | None = None) -> dict:
    if event.get("action") == "mosaic":
        from isrflow.process_visit.mosaics import make_mosaics

        return make_mosaics(MosaicEvent.model_validate(event))
    config = settings().require("registry_queue_url")
    summary = process_cluster(IsrClusterEvent.model_validate(event), sender_for(config.registry_queue_url))
    return summary.model_dump(mode="json")
