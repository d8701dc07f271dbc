"""Plan Lambda: find the quanta of a ProcessVisit input, write the cluster manifest, return its key."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from isrflow.infra.edge import lambda_edge
from isrflow.infra.settings import open_registry, settings
from isrflow.model.messages import PlanEvent
from isrflow.process_visit.plan import plan_visit


@lambda_edge
def lambda_handler(event: dict, context: LambdaContext | None = None) -> dict:
    config = settings()
    root = config.required("datastore_root")
    result = plan_visit(PlanEvent.model_validate(event), open_registry(config), root)
    return result.model_dump(mode="json")
