"""Rerun the failed quanta of an execution: a new execution with exactly those quanta.

The new input is the original one with ``where`` dropped and ``quanta`` = the failed
(instrument, exposure, detector) triples, into the same output run, with mode ``replace``:

- ``fail`` would refuse the whole rerun if any failed quantum left an output behind (a worker
  that wrote its output and then failed to send its registry message, say);
- ``skip-existing`` would skip such a quantum, so it would not be rerun at all;
- ``replace`` processes every listed quantum: a missing output is written, an existing one
  replaced (its registry row updated). Quanta that succeeded are not listed, so they are
  never touched whatever the original mode was.

Everything else (collections, ISR config, cluster size, tolerated failures, previews) is kept.
The new execution is named ``<original name, 50 chars>-rerun-<UTC yyyymmddThhmmss>``.

An execution whose process was killed (a local record ABORTED with
:data:`~isrflow.local.records.ABORTED_ERROR`) has no per-quantum failures to read: its
"failed" quanta are those its plan (the manifest it wrote) holds that did not succeed; if it
died before planning, the rerun is its whole input, unchanged. Before the registry is read the
caller drains the registry queue (what its workers sent is applied first), and
:func:`remove_unregistered_outputs` deletes the output files (and temporary files) it wrote but
never registered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from isrflow.io.storage import ObjectNotFoundError, storage_for
from isrflow.local.records import ABORTED_ERROR
from isrflow.model.datasets import Quantum
from isrflow.model.errors import IsrflowError
from isrflow.model.messages import ProcessVisitInput, QuantumKey
from isrflow.ops.aws_status import execution_history
from isrflow.ops.status import DetectorRow, detector_rows, is_aws_arn, plan_result


@dataclass
class FailedQuanta:
    source: str  # local | aws
    execution_arn: str
    name: str
    state_machine_arn: str
    input: dict[str, Any]
    failed: list[DetectorRow]
    aborted: bool = False  # its process was killed while it ran
    planned: bool = True  # it wrote its plan (an aborted execution may not have)

    @property
    def aborted_before_plan(self) -> bool:
        return self.aborted and not self.planned


def failed_quanta(execution: str, repo: Path | None = None, sfn=None) -> FailedQuanta:
    """The failed quanta of an execution (local record under ``repo``, or an AWS ARN)."""
    from isrflow.local.records import load_record
    from isrflow.model.errors import ExecutionNotFoundError

    if repo is not None:
        try:
            record = load_record(repo, execution)
        except ExecutionNotFoundError:
            if not is_aws_arn(execution):
                raise
        else:
            rows, _, _ = detector_rows(repo, record.execution_arn, plan_result(record.history))
            if record.error == ABORTED_ERROR:
                return _aborted(repo, record, rows)
            return FailedQuanta(
                "local",
                record.execution_arn,
                record.name,
                record.state_machine_arn,
                record.input if isinstance(record.input, dict) else {},
                [r for r in rows if r.status == "failed"],
            )
    if not is_aws_arn(execution):
        raise IsrflowError(
            f"{execution!r}: give --repo DIR for a local execution, or the execution ARN of an AWS one"
        )
    if sfn is None:
        import boto3

        sfn = boto3.client("stepfunctions", region_name=execution.split(":")[3])
    desc = sfn.describe_execution(executionArn=execution)
    rows, _, _ = detector_rows(repo, execution, plan_result(execution_history(sfn, execution)))
    return FailedQuanta(
        "aws",
        execution,
        desc["name"],
        desc["stateMachineArn"],
        json.loads(desc.get("input") or "{}"),
        [r for r in rows if r.status == "failed"],
    )


def _planned(repo: Path, execution_arn: str) -> list[Quantum] | None:
    """The quanta an execution's plan wrote to its manifest (None: it never planned)."""
    from isrflow.io.datastore import normalize_root
    from isrflow.process_visit import layout
    from isrflow.registry.repo import read_repo_config

    root = normalize_root(read_repo_config(repo).datastore_root(repo))
    uri = layout.manifest_uri(root, layout.execution_key(execution_arn))
    try:
        clusters = json.loads(storage_for(uri).read_bytes(uri))
    except ObjectNotFoundError:
        return None
    return [Quantum.model_validate(q) for c in clusters for q in c["quanta"]]


def _registered_uris(repo: Path, planned: list[Quantum]) -> set[str]:
    """The URIs registered in the output runs of ``planned`` (runs that do not exist yet hold none)."""
    from isrflow.registry import open_repo

    registry = open_repo(repo)
    try:
        runs = [r for r in sorted({q.output.run for q in planned}) if registry.collection_type(r) is not None]
        return {ref.uri for ref in registry.query_datasets(None, runs)} if runs else set()
    finally:
        registry.close()


def _aborted(repo: Path, record, rows: list[DetectorRow]) -> FailedQuanta:
    """A killed execution's unfinished quanta: planned, and its own output not registered (its
    per-quantum processing records are written by Summarize, which it never reached)."""
    planned = _planned(repo, record.execution_arn)
    spec = record.input if isinstance(record.input, dict) else {}
    registered = _registered_uris(repo, planned) if planned else set()
    failed = [
        DetectorRow(
            instrument=q.instrument,
            exposure=q.exposure,
            detector=q.detector,
            status="failed",
            error=f"{ABORTED_ERROR}: not completed before the process ended",
        )
        for q in planned or []
        if q.output.uri not in registered
    ]
    return FailedQuanta(
        "local",
        record.execution_arn,
        record.name,
        record.state_machine_arn,
        spec,
        failed,
        aborted=True,
        planned=planned is not None,
    )


def remove_unregistered_outputs(repo: Path, execution_arn: str) -> list[str]:
    """Delete what a killed execution wrote but never registered: the output files named in its
    manifest that no registry row points at, and the temporary files of interrupted writes beside
    them and in its own results, manifest, map-result and record directories. Returns the removed
    URIs (file datastores; on S3 a PUT is atomic and unregistered objects are left to lifecycle rules)."""
    from isrflow.io.datastore import normalize_root, uri_to_path
    from isrflow.local.records import EXECUTIONS_DIR, split_execution_arn
    from isrflow.process_visit import layout
    from isrflow.registry.repo import read_repo_config

    root = normalize_root(read_repo_config(repo).datastore_root(repo))
    if not root.startswith("file://"):
        return []
    base = uri_to_path(root)
    machine, name = split_execution_arn(execution_arn)
    key = layout.execution_key(execution_arn)
    planned = _planned(repo, execution_arn) or []
    registered = _registered_uris(repo, planned) if planned else set()
    doomed: list[Path] = []
    for q in planned:
        path = uri_to_path(q.output.uri)
        if path.parent.is_dir():
            doomed += path.parent.glob(f".{path.name}.*.tmp")
        if q.output.uri not in registered and path.exists():
            doomed.append(path)
    for directory in (
        base / "results" / key,
        base / "manifests" / key,
        base / "map-results" / machine / name,
    ):
        if directory.is_dir():
            doomed += directory.rglob(".*.tmp")
    records = Path(repo) / EXECUTIONS_DIR / machine
    if records.is_dir():
        doomed += records.glob(f".{name}.json.*.tmp")
    removed = []
    for path in doomed:
        path.unlink(missing_ok=True)
        removed.append(path.as_uri())
    return removed


def rerun_input(
    original: dict[str, Any], failed: list[DetectorRow], *, aborted_before_plan: bool = False
) -> ProcessVisitInput:
    """The original input restricted to the failed quanta, mode ``replace`` (see the module docstring);
    ``aborted_before_plan``: the original input unchanged (a killed execution that never planned)."""
    if aborted_before_plan:
        return ProcessVisitInput.model_validate(original)
    if not failed:
        raise IsrflowError("the execution has no failed quanta to rerun")
    spec = {k: v for k, v in original.items() if k not in ("where", "quanta", "mode")}
    keys = sorted({(r.instrument, r.exposure, r.detector) for r in failed})
    return ProcessVisitInput(
        **spec, quanta=[QuantumKey(instrument=i, exposure=e, detector=d) for i, e, d in keys], mode="replace"
    )


def rerun_name(original_name: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return f"{original_name[:50]}-rerun-{stamp}"


__all__ = ["FailedQuanta", "failed_quanta", "remove_unregistered_outputs", "rerun_input", "rerun_name"]
