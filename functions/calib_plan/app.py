"""BuildCalibration planning Lambda (registry-only layer, no numpy):

- ``action: plan`` (default): the input frames of every master, the ISR cluster manifest, the
  master groups (:func:`isrflow.calibration.plan.plan_build`);
- ``action: normalize``: flat normalisation, one scale per exposure over the focal plane;
- ``action: prepare_combine``: one combine request per master, routed to the Lambda or Fargate;
- ``action: delete_intermediates``: after the combine, delete the ISR'd inputs of the masters built.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from isrflow.infra.edge import lambda_edge
from isrflow.infra.settings import open_registry, settings
from isrflow.model.messages import CalibPlanEvent, CalibStepEvent


@lambda_edge
def lambda_handler(event: dict, context: LambdaContext | None = None) -> dict:
    action = event.get("action", "plan")
    if action == "normalize":
        from isrflow.calibration.prepare import normalize_flats

        return normalize_flats(CalibStepEvent.model_validate(event)).model_dump(mode="json")
    if action == "prepare_combine":
        from isrflow.calibration.prepare import prepare_combine

        return prepare_combine(CalibStepEvent.model_validate(event)).model_dump(mode="json")
    if action == "delete_intermediates":
        from isrflow.calibration.cleanup import delete_intermediates

        return delete_intermediates(CalibStepEvent.model_validate(event)).model_dump(mode="json")
    from isrflow.calibration.plan import plan_build

    config = settings().require("datastore_root")
    result = plan_build(CalibPlanEvent.model_validate(event), open_registry(config), config.datastore_root)
    return result.model_dump(mode="json")
