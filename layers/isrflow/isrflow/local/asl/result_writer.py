"""What a Distributed Map's ``ResultWriter`` (``arn:aws:states:::s3:putObject``) exports.

AWS writes, under ``<Prefix>/<map run id>/`` (a ``/`` is added after a non-empty prefix that
lacks one; the map run id is the last ``:`` part of the MapRunArn):

- one result file per child status group that has entries: ``SUCCEEDED_0.json`` (SUCCEEDED
  children), ``FAILED_0.json`` (FAILED, TIMED_OUT and ABORTED children), ``PENDING_0.json``
  (items whose child never started because the run stopped early). AWS starts a new ``_n``
  file past 5 GB; locally there is always one per group;
- ``manifest.json``: ``{"DestinationBucket", "MapRunArn", "ResultFiles": {"FAILED": [...],
  "PENDING": [...], "SUCCEEDED": [...]}}``, each file as ``{"Key", "Size"}`` (Size in bytes);

and the Map state's result becomes ``{"MapRunArn", "ResultWriterDetails": {"Bucket", "Key"}}``
with Key = the manifest's key.

A record (Transformation NONE, AWS's default with a ResultWriter) is the child execution's
metadata with its input and output as JSON *text*: ``ExecutionArn, Name, StateMachineArn,
Status, StartDate, StopDate, Input, InputDetails, Output, OutputDetails`` (``Error``/``Cause``
instead of ``Output`` for a failed child). COMPACT keeps only each succeeded child's output
(parsed); FLATTEN does the same and splices an output that is an array into the list. Failed
children are always written in the NONE form. OutputType JSONL writes one record per line
instead of one JSON array (the file names stay ``*_0.json``, as for JSON).

Pure functions: the interpreter calls :func:`export_files` and writes what it returns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from isrflow.local.asl.history import to_datetime

SUCCEEDED, FAILED, PENDING = "SUCCEEDED", "FAILED", "PENDING"
GROUPS = (FAILED, PENDING, SUCCEEDED)  # the manifest's key order


@dataclass(frozen=True)
class ChildRecord:
    """One item of a map run, as the ResultWriter sees it. ``status`` is the child execution's
    (SUCCEEDED, FAILED, TIMED_OUT, ABORTED) or PENDING when it never started; ``input`` is the
    child's input (for a pending item: the item as read); times are epoch seconds."""

    status: str
    input: Any
    execution_arn: str | None = None
    name: str | None = None
    state_machine_arn: str | None = None
    output: Any = None
    error: str | None = None
    cause: str | None = None
    start_ts: float | None = None
    stop_ts: float | None = None


@dataclass(frozen=True)
class Export:
    """The objects to write (``(key, body)``, manifest last) and the state's result."""

    objects: list[tuple[str, bytes]]
    manifest_key: str
    result: dict
    results_written: int


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return to_datetime(ts).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def group_of(status: str) -> str:
    if status == SUCCEEDED:
        return SUCCEEDED
    if status == PENDING:
        return PENDING
    return FAILED


def full_record(child: ChildRecord) -> dict:
    """The NONE-transformation record of one child."""
    if child.status == PENDING:
        return {"Input": _text(child.input), "InputDetails": {"Included": True}, "Status": PENDING}
    rec: dict[str, Any] = {
        "ExecutionArn": child.execution_arn,
        "Input": _text(child.input),
        "InputDetails": {"Included": True},
        "Name": child.name,
        "RedriveCount": 0,
        "StartDate": _iso(child.start_ts),
        "StateMachineArn": child.state_machine_arn,
        "Status": child.status,
        "StopDate": _iso(child.stop_ts),
    }
    if child.status == SUCCEEDED:
        rec["Output"] = _text(child.output)
        rec["OutputDetails"] = {"Included": True}
    else:
        if child.error is not None:
            rec["Error"] = child.error
        if child.cause is not None:
            rec["Cause"] = child.cause
    return rec


def _succeeded_entries(children: Sequence[ChildRecord], transformation: str) -> list:
    if transformation == "NONE":
        return [full_record(c) for c in children]
    out: list = []
    for c in children:
        if transformation == "FLATTEN" and isinstance(c.output, list):
            out.extend(c.output)
        else:
            out.append(c.output)
    return out


def _encode(entries: list, output_type: str) -> bytes:
    if output_type == "JSONL":
        return "".join(_text(e) + "\n" for e in entries).encode("utf-8")
    return _text(entries).encode("utf-8")


def manifest_prefix(prefix: str, map_run_arn: str) -> str:
    """``<Prefix>/<map run id>/``."""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return f"{prefix}{map_run_arn.rsplit(':', 1)[-1]}/"


def export_files(
    children: Sequence[ChildRecord],
    *,
    bucket: str,
    prefix: str,
    map_run_arn: str,
    transformation: str = "NONE",
    output_type: str = "JSON",
) -> Export:
    """Everything a ResultWriter writes for one map run (``children`` in item order)."""
    base = manifest_prefix(prefix, map_run_arn)
    grouped: dict[str, list[ChildRecord]] = {g: [] for g in GROUPS}
    for c in children:
        grouped[group_of(c.status)].append(c)
    objects: list[tuple[str, bytes]] = []
    files: dict[str, list[dict]] = {g: [] for g in GROUPS}
    for g in (SUCCEEDED, FAILED, PENDING):
        if not grouped[g]:
            continue
        entries = (
            _succeeded_entries(grouped[g], transformation)
            if g == SUCCEEDED
            else [full_record(c) for c in grouped[g]]
        )
        body = _encode(entries, output_type)
        key = f"{base}{g}_0.json"
        objects.append((key, body))
        files[g].append({"Key": key, "Size": len(body)})
    manifest_key = base + "manifest.json"
    manifest = {"DestinationBucket": bucket, "MapRunArn": map_run_arn, "ResultFiles": files}
    objects.append((manifest_key, json.dumps(manifest, indent=2).encode("utf-8")))
    written = len(grouped[SUCCEEDED]) + len(grouped[FAILED])
    return Export(
        objects,
        manifest_key,
        {"MapRunArn": map_run_arn, "ResultWriterDetails": {"Bucket": bucket, "Key": manifest_key}},
        written,
    )


def read_manifest_results(read, bucket: str, manifest_key: str, output_type: str = "JSON") -> dict[str, list]:
    """The records of every result file a manifest lists, by group: ``read(bucket, key) ->
    bytes`` fetches an object; ``output_type`` is the writer's (JSON arrays or JSON Lines)."""
    manifest = json.loads(read(bucket, manifest_key))
    out: dict[str, list] = {g: [] for g in GROUPS}
    for group, files in manifest["ResultFiles"].items():
        for f in files:
            text = read(bucket, f["Key"]).decode("utf-8")
            if output_type == "JSONL":
                out[group].extend(json.loads(line) for line in text.splitlines() if line.strip())
            else:
                out[group].extend(json.loads(text))
    return out
