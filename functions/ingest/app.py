"""Ingest Lambda: an S3 Object Created event (EventBridge, keys under raw/) -> registry messages,
and with PromptProcessing on, a ProcessVisit execution for the file's detectors.

Reads only the FITS headers (ranged GETs); never touches the database (messages go through the
registry queue); non-FITS or truncated uploads are quarantined, not retried.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from isrflow.infra.edge import lambda_edge
from isrflow.infra.queues import sender_for
from isrflow.infra.settings import settings
from isrflow.model.messages import S3ObjectCreatedEvent
from isrflow.prompt.config import PromptConfig
from isrflow.prompt.ingest import ingest_upload
from isrflow.prompt.starter import StepFunctionsStarter


@lambda_edge
def lambda_handler(event: dict, context: LambdaContext | None = None) -> dict:
    config = settings().require("datastore_root", "registry_queue_url")
    root, queue_url = config.required("datastore_root"), config.required("registry_queue_url")
    outcome = ingest_upload(
        S3ObjectCreatedEvent.model_validate(event),
        datastore_root=root,
        sender=sender_for(queue_url),
        prompt=PromptConfig.from_env(),
        starter=StepFunctionsStarter(),
    )
    return outcome.model_dump(mode="json")
