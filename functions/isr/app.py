"""The ISR image's handlers (functions/Dockerfile, target ``isr``), one per function of template.yaml:

- :func:`isr_handler` (IsrFunction): ISR of one cluster of quanta, an item of ProcessVisit's or
  BuildCalibration's ISR map;
- :func:`mosaic_handler` (MosaicFunction): ProcessVisit's Mosaics state (with ``previews``), the
  focal-plane mosaic PNG of every exposure of the execution."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from isrflow.infra.edge import lambda_edge
from isrflow.infra.queues import sender_for
from isrflow.infra.settings import settings
from isrflow.model.messages import IsrClusterEvent, MosaicEvent


@lambda_edge
def isr_handler(event: dict, context: LambdaContext | None = None) -> dict:
    """One cluster: its outputs written, its quanta's results in one file under results/, registry messages sent."""
    from isrflow.process_visit.worker import process_cluster

    url = settings().required("registry_queue_url")
    summary = process_cluster(IsrClusterEvent.model_validate(event), sender_for(url))
    return summary.model_dump(mode="json")


@lambda_edge
def mosaic_handler(event: dict, context: LambdaContext | None = None) -> dict:
    """The mosaics of the manifest's exposures, from the thumbnails the workers wrote: ``{"mosaics": [uri, ...]}``."""
    from isrflow.process_visit.mosaics import make_mosaics

    return make_mosaics(MosaicEvent.model_validate(event))
