"""Handlers on the registry-only layer that record failures and end executions, one per function of
template.yaml (each parses its own event; a state invokes the function of its step):

ProcessVisit and BuildCalibration's ISR map:

- :func:`record_failure_handler` (RecordFailureFunction): the map item's Catch, the worker itself
  failed: every quantum of its cluster without a successful result is recorded as failed;

ProcessVisit:

- :func:`summarize_handler` (SummarizeFunction): ends the execution (counts, processing records,
  waits for the registry);

BuildCalibration:

- :func:`record_combine_failure_handler` (RecordCombineFailureFunction): a master whose combine
  failed (a combine Map item's Catch, or a Fargate task that exited non-zero);
- :func:`certify_calib_handler` (CertifyCalibFunction): certifies the built masters;
- :func:`summarize_calib_handler` (SummarizeCalibFunction): ends the execution.

Only the registry-only layer is imported (no numpy): the library steps are imported per handler."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from isrflow.infra.edge import lambda_edge
from isrflow.infra.queues import sender_for
from isrflow.infra.settings import open_registry, settings
from isrflow.model.messages import CalibStepEvent, CombineFailureEvent, RecordFailureEvent, SummarizeEvent


def _queue_url() -> str:
    """The registry queue's URL (ConfigError when ISRFLOW_REGISTRY_QUEUE_URL is unset)."""
    return settings().required("registry_queue_url")


@lambda_edge
def record_failure_handler(event: dict, context: LambdaContext | None = None) -> dict:
    """``{"recorded": n}``: the quanta recorded as failed (a throttle raises WorkerThrottledError instead)."""
    from isrflow.process_visit.summary import record_failure

    return record_failure(RecordFailureEvent.model_validate(event))


@lambda_edge
def summarize_handler(event: dict, context: LambdaContext | None = None) -> dict:
    """The execution's VisitSummary, once the registry has applied its messages."""
    from isrflow.process_visit.summary import summarize

    summary = summarize(
        SummarizeEvent.model_validate(event), open_registry(settings()), sender_for(_queue_url())
    )
    return summary.model_dump(mode="json")


@lambda_edge
def record_combine_failure_handler(event: dict, context: LambdaContext | None = None) -> dict:
    """``{"recorded": 1, "key": master, "error": reason}``: the master's result, marked failed."""
    from isrflow.build_calibration.summary import record_combine_failure

    return record_combine_failure(CombineFailureEvent.model_validate(event))


@lambda_edge
def certify_calib_handler(event: dict, context: LambdaContext | None = None) -> dict:
    """The CertifyResult: the built masters certified through the registry queue."""
    from isrflow.build_calibration.summary import certify

    return certify(CalibStepEvent.model_validate(event), sender_for(_queue_url())).model_dump(mode="json")


@lambda_edge
def summarize_calib_handler(event: dict, context: LambdaContext | None = None) -> dict:
    """The execution's CalibSummary, once the registry has applied its messages."""
    from isrflow.build_calibration.summary import summarize

    summary = summarize(
        CalibStepEvent.model_validate(event), open_registry(settings()), sender_for(_queue_url())
    )
    return summary.model_dump(mode="json")
