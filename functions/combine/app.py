"""Combine Lambda (container image): build one master calibration from its combine request.

The same library call as the Fargate entry point (``fargate.py``): the payload carries only
the request's datastore URI. A failed combine is answered normally with ``status: failed``
and its reason (also written to the master's result), so the Map item ends cleanly.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from isrflow.build_calibration.run import run_combine
from isrflow.infra.edge import lambda_edge
from isrflow.infra.queues import sender_for
from isrflow.infra.settings import settings
from isrflow.model.messages import CombineEvent


@lambda_edge
def lambda_handler(event: dict, context: LambdaContext | None = None) -> dict:
    queue_url = settings().required("registry_queue_url")
    memory = getattr(context, "memory_limit_in_mb", None)
    result = run_combine(
        CombineEvent.model_validate(event).request_uri,
        sender_for(queue_url),
        memory_mb=float(memory) if memory else None,
    )
    return result.model_dump(
        mode="json", include={"key", "status", "route", "output_uri", "duration_s", "error"}
    )
