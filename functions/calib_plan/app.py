"""BuildCalibration's step handlers on the registry-only layer (no numpy), one per function of
template.yaml (each parses its own event; a state invokes the function of its step):

- :func:`plan_handler` (CalibPlanFunction): the input frames of every master, the ISR cluster
  manifest, the master groups (:func:`isrflow.build_calibration.plan.plan_build`; the registry);
- :func:`normalize_handler` (NormalizeFlatsFunction): flat normalisation, one scale per exposure
  over the focal plane;
- :func:`prepare_combine_handler` (PrepareCombineFunction): one combine request per master, routed
  to the combine Lambda or Fargate;
- :func:`delete_intermediates_handler` (DeleteIntermediatesFunction): after the combine, delete the
  ISR'd inputs of the masters built.

The library steps are imported per handler: a function loads only what its step uses."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from isrflow.infra.edge import lambda_edge
from isrflow.infra.settings import open_registry, settings
from isrflow.model.messages import CalibPlanEvent, CalibStepEvent


@lambda_edge
def plan_handler(event: dict, context: LambdaContext | None = None) -> dict:
    """The CalibPlanResult the later states read (manifests written under manifests/)."""
    from isrflow.build_calibration.plan import plan_build

    config = settings()
    root = config.required("datastore_root")
    result = plan_build(CalibPlanEvent.model_validate(event), open_registry(config), root)
    return result.model_dump(mode="json")


@lambda_edge
def normalize_handler(event: dict, context: LambdaContext | None = None) -> dict:
    """The NormalizeResult (the scales document written beside the manifests)."""
    from isrflow.build_calibration.prepare import normalize_flats

    return normalize_flats(CalibStepEvent.model_validate(event)).model_dump(mode="json")


@lambda_edge
def prepare_combine_handler(event: dict, context: LambdaContext | None = None) -> dict:
    """The PrepareCombineResult (the combine manifest the combine Map reads)."""
    from isrflow.build_calibration.prepare import prepare_combine

    return prepare_combine(CalibStepEvent.model_validate(event)).model_dump(mode="json")


@lambda_edge
def delete_intermediates_handler(event: dict, context: LambdaContext | None = None) -> dict:
    """IntermediatesDeleted: the masters built and the intermediates deleted."""
    from isrflow.build_calibration.cleanup import delete_intermediates

    return delete_intermediates(CalibStepEvent.model_validate(event)).model_dump(mode="json")
