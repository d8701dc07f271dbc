"""Summarize Lambda: ``action=summarize`` ends a ProcessVisit execution; ``action=record_failure``
records the quanta of a cluster whose worker failed as a whole (called from the map's Catch).

BuildCalibration: ``action=record_combine_failure`` records a master whose combine failed (a
combine Map item's Catch, or a Fargate task that exited non-zero); ``action=certify_calib``
certifies the built masters; ``action=summarize_calib`` ends the execution."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from isrflow.infra.edge import lambda_edge
from isrflow.infra.queues import sender_for
from isrflow.infra.settings import open_registry, settings
from isrflow.model.messages import RecordFailureEvent, SummarizeEvent
from isrflow.process_visit.summary import record_failure, summarize


@lambda_edge
def lambda_handler(event: dict, context: LambdaContext | None = None) -> dict:
    action = event.get("action")
    if action == "record_failure":
        return record_failure(RecordFailureEvent.model_validate(event))
    if action in ("record_combine_failure", "certify_calib", "summarize_calib"):
        return _calibration(action, event)
    config = settings().require("registry_queue_url")
    summary = summarize(
        SummarizeEvent.model_validate(event), open_registry(config), sender_for(config.registry_queue_url)
    )
    return summary.model_dump(mode="json")


def _calibration(action: str, event: dict) -> dict:
    from isrflow.calibration import summary as calib
    from isrflow.model.messages import CalibStepEvent, CombineFailureEvent

    if action == "record_combine_failure":
        return calib.record_combine_failure(CombineFailureEvent.model_validate(event))
    config = settings().require("registry_queue_url")
    sender = sender_for(config.registry_queue_url)
    step = CalibStepEvent.model_validate(event)
    if action == "certify_calib":
        return calib.certify(step, sender).model_dump(mode="json")
    return calib.summarize(step, open_registry(config), sender).model_dump(mode="json")
