"""Triggers: S3 Object Created (EventBridge) -> ingest -> prompt processing.

The ingest function receives EventBridge's S3 "Object Created" events for keys under raw/ in
the data bucket (locally ``isrflow ingest --watch`` builds the same events). Field names
follow the event (``detail-type``, ``version-id``, ...); unknown fields are ignored. Sizes in
bytes, times timezone-aware UTC.
"""

from __future__ import annotations

import uuid
from typing import Literal

from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from pydantic import (
    BaseModel,
    Field,
)

from isrflow.model.messages.common import UtcDatetime


class S3ObjectCreatedEvent(S3EventNotificationEventBridgeModel):
    """An EventBridge event ``source: aws.s3``, ``detail-type: Object Created``: Powertools'
    :class:`S3EventNotificationEventBridgeModel` narrowed to that source and detail type, with a
    timezone-aware ``time``. Size in bytes; the ETag without quotes."""

    detail_type: Literal["Object Created"] = Field(alias="detail-type")
    source: Literal["aws.s3"]
    time: UtcDatetime

    @property
    def bucket(self) -> str:
        return self.detail.bucket.name

    @property
    def key(self) -> str:
        return self.detail.object.key

    @property
    def etag(self) -> str | None:
        return (self.detail.object.etag or "").strip('"') or None

    @property
    def size(self) -> int | None:
        """The object's size in bytes (Powertools types it as a float), None when absent."""
        size = self.detail.object.size
        return None if size is None else int(size)


class PromptExecution(BaseModel):
    """The ProcessVisit execution an upload started (or found already started)."""

    state_machine_arn: str
    name: str = Field(min_length=1, max_length=80)
    execution_arn: str
    outcome: Literal["started", "already_started"]


class IngestOutcome(BaseModel):
    """What the ingest function did with one upload (its return value; also logged)."""

    bucket: str
    key: str
    etag: str | None = None
    size: int | None = None
    status: Literal["ingested", "quarantined", "superseded"]
    reason: str | None = Field(default=None, description="why it was quarantined or superseded")
    camera: str | None = None
    instrument: str | None = None
    exposure: int | None = None
    obs_type: str | None = None
    detectors: list[int] = Field(default_factory=list)
    datasets: list[uuid.UUID] = Field(default_factory=list, description="raw dataset ids registered")
    messages_sent: int = 0
    execution: PromptExecution | None = None
    quarantine_uri: str | None = None
    header_reads: int = Field(default=0, description="ranged reads made to parse the headers")
    header_bytes: int = Field(default=0, description="bytes read to parse the headers")


class QuarantineRecord(BaseModel):
    """Why an upload was not ingested, written as JSON under ``quarantine/`` in the data bucket.

    The object itself stays where it was uploaded; nothing is registered for it.
    """

    bucket: str
    key: str
    uri: str = Field(description="the uploaded object")
    etag: str | None = None
    size: int | None = None
    error: str = Field(description="error class, e.g. TruncatedFitsError, NotFitsError")
    reason: str
    event_id: str | None = None
    quarantined: UtcDatetime
