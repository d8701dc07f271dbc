"""Summarize Lambda: ``action=summarize`` ends a ProcessVisit execution; ``action=record_failure``
records the quanta of a cluster whose worker failed as a whole (called from the map's Catch)."""

from __future__ import annotations

from isrflow.messages import RecordFailureEvent, SummarizeEvent
from isrflow.process_visit.summary import record_failure, summarize
from isrflow.queues import sender_for
from isrflow.settings import open_registry, settings


def lambda_handler(event: dict, context: object = None) -> dict:
    if event.get("action") == "record_failure":
        return record_failure(RecordFailureEvent.model_validate(event))
    config = settings().require("registry_queue_url")
    summary = summarize(SummarizeEvent.model_validate(event), open_registry(config), sender_for(config.registry_queue_url))
    return summary.model_dump(mode="json")
