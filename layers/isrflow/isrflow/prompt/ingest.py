"""The ingest function's logic: one uploaded object -> registry messages (+ ProcessVisit).

1. Read the headers only: ranged reads of 2880-byte blocks, HDU by HDU, with the event's
   ETag as a precondition (an object overwritten meanwhile is left to its own event:
   ``superseded``). The walk also proves the object holds every byte its headers announce.
2. Translate them (:mod:`.headers`): camera, instrument, exposure, one observation per detector.
3. Send the dimension records (instrument, detector, exposure) and one ``raw`` dataset per
   detector into ``<INSTRUMENT>/raw/all``, pointing at the uploaded object where it is (no copy).
   Message ids are derived from bucket/key/ETag, dataset ids from the data id, so a duplicate
   event sends byte-identical messages and the writer applies them once. ``replace=True``: a
   re-upload of the same frame (new content, new ETag) re-points its raw dataset.
4. With prompt processing on and a science frame, start ProcessVisit for exactly the file's
   detectors (:mod:`.config`, :mod:`.starter`). Its Plan retries while the writer has not yet
   applied the raw (``QuantaNotFoundError``), so no wait is needed here and the function never
   touches the database.

An object that is not FITS, is truncated, or is not a raw of a known camera is *quarantined*:
the function succeeds (no retry storm), writes a :class:`QuarantineRecord` as JSON to
``quarantine/<key>.json`` in the data bucket, emits ``UploadQuarantined``, registers nothing
and leaves the object in place. Transient failures (S3, SQS, Step Functions) raise, so the
asynchronous invocation is retried and finally dead-lettered.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from isrflow.infra.edge import add_count, add_metadata
from isrflow.infra.queues import QueueSender
from isrflow.io.datastore import check_key, contained_path
from isrflow.io.fitsheader import read_hdu_headers
from isrflow.io.storage import ObjectChangedError, ObjectNotFoundError, join, storage_for
from isrflow.model.errors import CameraError, IsrflowError, IsrInputError, UnsafeKeyError
from isrflow.model.ids import raw_collection
from isrflow.model.messages import (
    DatasetMessage,
    IngestOutcome,
    QuarantineRecord,
    S3ObjectCreatedEvent,
    dimension_records,
)
from isrflow.prompt.config import PromptConfig
from isrflow.prompt.headers import observations_from_headers
from isrflow.prompt.starter import ExecutionStarter, execution_name

QUARANTINE_PREFIX = "quarantine"
RAW_PREFIX = "raw"  # the only prefix whose uploads are ingested (the EventBridge rule's)
_MESSAGE_NS = uuid.UUID("0c4e2b59-8d51-5f0e-a3d1-7b9a64c2e8f3")

logger = logging.getLogger("isrflow.ingest")


@dataclass
class _CountingReader:
    """Ranged reads of one object version, counted for the log line."""

    uri: str
    etag: str | None
    reads: int = 0
    bytes_read: int = 0

    def __call__(self, offset: int, length: int) -> bytes:
        data = storage_for(self.uri).read_range(self.uri, offset, length, if_match=self.etag)
        self.reads += 1
        self.bytes_read += len(data)
        return data


def object_uri(datastore_root: str, bucket: str, key: str) -> str:
    """The URI of ``bucket/key``: on S3 that object; locally the data bucket is the datastore root.

    Only keys under ``raw/`` are ingested (as the EventBridge rule): a key outside it, with a
    ``..``/``.`` segment, absolute, or (locally) resolving outside the datastore root raises
    UnsafeKeyError naming the key, before anything is read. On S3 the event's bucket must be the
    datastore's (the rule matches only that bucket; an event naming another is refused too).
    """
    if datastore_root.startswith("s3://"):
        check_key(key, prefix=RAW_PREFIX)
        expected = datastore_root[len("s3://") :].split("/", 1)[0]
        if bucket != expected:
            raise UnsafeKeyError(
                f"{key!r}: event for bucket {bucket!r}, not the datastore's bucket {expected!r}"
            )
        return f"s3://{bucket}/{key}"
    contained_path(datastore_root, key, prefix=RAW_PREFIX)
    return join(datastore_root, key)


def quarantine_uri(datastore_root: str, key: str) -> str:
    """Where the quarantine record of ``key`` goes (``quarantine/<key>.json``), checked as :func:`object_uri`."""
    check_key(key)
    if not datastore_root.startswith("s3://"):
        contained_path(datastore_root, f"{QUARANTINE_PREFIX}/{key}.json")
    return join(datastore_root, QUARANTINE_PREFIX, key) + ".json"


def object_size(uri: str) -> int:
    """The object's size in bytes (when the event does not carry it)."""
    if uri.startswith("s3://"):
        from isrflow.io.storage import split_s3

        bucket, key = split_s3(uri)
        store = storage_for(uri)
        try:
            return int(store.client.head_object(Bucket=bucket, Key=key)["ContentLength"])  # type: ignore[attr-defined]
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise ObjectNotFoundError(f"{uri}: no such object") from None
            raise
    from isrflow.io.datastore import uri_to_path

    try:
        return uri_to_path(uri).stat().st_size
    except FileNotFoundError:
        raise ObjectNotFoundError(f"{uri}: no such object") from None


def message_id(event_key: str, subject: str) -> str:
    """Deterministic per (object version, message subject)."""
    return uuid.uuid5(_MESSAGE_NS, f"{event_key}/{subject}").hex


def ingest_upload(
    event: S3ObjectCreatedEvent,
    *,
    datastore_root: str,
    sender: QueueSender,
    prompt: PromptConfig,
    starter: ExecutionStarter | None,
) -> IngestOutcome:
    """Handle one Object Created event (see the module docstring). Its metrics go into the
    invocation's Powertools metric set (:func:`isrflow.infra.edge.add_count`), flushed by the handler."""
    bucket, key = event.bucket, event.key
    etag = event.etag
    uri = object_uri(datastore_root, bucket, key)  # UnsafeKeyError before any read
    quarantine_uri(datastore_root, key)
    base: dict[str, Any] = {"bucket": bucket, "key": key, "etag": etag}
    reader = _CountingReader(uri, etag)
    try:
        size = event.size if event.size is not None else object_size(uri)
        base["size"] = size
        hdus = read_hdu_headers(reader, size, key)
        camera, observations = observations_from_headers(hdus, key)
        exposures = {(o.instrument, o.exposure) for o in observations}
        if len(exposures) != 1:
            raise IsrInputError(f"{key}: holds detectors of {len(exposures)} exposures")
    except (ObjectChangedError, ObjectNotFoundError) as exc:
        outcome = IngestOutcome(
            **base,
            status="superseded",
            reason=str(exc),
            header_reads=reader.reads,
            header_bytes=reader.bytes_read,
        )
        add_count("UploadSuperseded", key=key, reason=outcome.reason)
        logger.info("upload superseded", extra={"key": key, "reason": outcome.reason})
        return outcome
    except (IsrInputError, CameraError, ValueError) as exc:  # not FITS, truncated, not a raw, bad keywords
        return _quarantine(event, datastore_root, uri, base, exc, reader)

    first = observations[0]
    run = raw_collection(first.instrument)
    event_key = f"{bucket}/{key}#{etag or ''}"
    messages = []
    seen: set[str] = set()
    for obs in observations:
        for record in dimension_records(obs, camera):
            subject = record.model_dump_json(exclude={"message_id", "execution_id"})
            if subject not in seen:
                seen.add(subject)
                messages.append(record.model_copy(update={"message_id": message_id(event_key, subject)}))
    datasets = [
        DatasetMessage(
            dataset_type="raw",
            run=run,
            data_id=o.data_id,
            uri=uri,
            size=size,
            replace=True,
            message_id=message_id(event_key, f"raw/{o.detector}"),
        )
        for o in observations
    ]
    sender.send([*messages, *datasets])
    add_count("RawIngested", len(datasets))

    execution = None
    if prompt.enabled and first.obs_type == "science":
        if starter is None or not prompt.state_machine_arn:
            raise IsrflowError("prompt processing is on but no state machine/starter is configured")
        payload = prompt.process_visit_input(observations).model_dump(mode="json", exclude_none=True)
        execution = starter.start(prompt.state_machine_arn, execution_name(bucket, key, etag), payload)
        add_count(
            "PromptExecutionStarted" if execution.outcome == "started" else "PromptExecutionAlreadyStarted"
        )
    outcome = IngestOutcome(
        **base,
        status="ingested",
        camera=camera,
        instrument=first.instrument,
        exposure=first.exposure,
        obs_type=first.obs_type,
        detectors=sorted(o.detector for o in observations),
        datasets=[d.dataset_id for d in datasets],
        messages_sent=len(messages) + len(datasets),
        execution=execution,
        header_reads=reader.reads,
        header_bytes=reader.bytes_read,
    )
    details = {
        "key": key,
        "instrument": first.instrument,
        "exposure": first.exposure,
        "obs_type": first.obs_type,
        "detectors": len(datasets),
        "execution": execution.name if execution else None,
        "header_reads": reader.reads,
    }
    add_metadata(**details)
    logger.info("upload ingested", extra={k: v for k, v in details.items() if v is not None})
    return outcome


def _quarantine(
    event: S3ObjectCreatedEvent, root: str, uri: str, base: dict, exc: Exception, reader: _CountingReader
) -> IngestOutcome:
    record = QuarantineRecord(
        **base,
        uri=uri,
        error=type(exc).__name__,
        reason=str(exc),
        event_id=event.id,
        quarantined=datetime.now(UTC),
    )
    target = quarantine_uri(root, event.key)
    storage_for(target).write_bytes(target, record.model_dump_json(indent=1).encode())
    add_count("UploadQuarantined", key=event.key, error=record.error, reason=record.reason, quarantine=target)
    logger.warning(
        "upload quarantined",
        extra={"key": event.key, "error": record.error, "reason": record.reason, "quarantine": target},
    )
    return IngestOutcome(
        **base,
        status="quarantined",
        reason=f"{record.error}: {record.reason}",
        quarantine_uri=target,
        header_reads=reader.reads,
        header_bytes=reader.bytes_read,
    )


__all__ = ["QUARANTINE_PREFIX", "ingest_upload", "object_size", "object_uri", "quarantine_uri"]
