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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from ..errors import IsrflowError
from ..messages import ProcessVisitInput, QuantumKey
from .status import DetectorRow, _history, detector_rows, is_aws_arn, plan_result


@dataclass
class FailedQuanta:
    source: str  # local | aws
    execution_arn: str
    name: str
    state_machine_arn: str
    input: dict[str, Any]
    failed: list[DetectorRow]


def failed_quanta(execution: str, repo: Path | None = None, sfn=None) -> FailedQuanta:
    """The failed quanta of an execution (local record under ``repo``, or an AWS ARN)."""
    from ..errors import ExecutionNotFoundError
    from ..local.records import load_record

    if repo is not None:
        try:
            record = load_record(repo, execution)
        except ExecutionNotFoundError:
            if not is_aws_arn(execution):
                raise
        else:
            rows, _, _ = detector_rows(repo, record.execution_arn, plan_result(record.history))
            return FailedQuanta("local", record.execution_arn, record.name, record.state_machine_arn,
                                record.input if isinstance(record.input, dict) else {},
                                [r for r in rows if r.status == "failed"])
    if not is_aws_arn(execution):
        raise IsrflowError(f"{execution!r}: give --repo DIR for a local execution, or the execution ARN of an AWS one")
    if sfn is None:
        import boto3

        sfn = boto3.client("stepfunctions", region_name=execution.split(":")[3])
    desc = sfn.describe_execution(executionArn=execution)
    rows, _, _ = detector_rows(repo, execution, plan_result(_history(sfn, execution)))
    return FailedQuanta("aws", execution, desc["name"], desc["stateMachineArn"], json.loads(desc.get("input") or "{}"),
                        [r for r in rows if r.status == "failed"])


def rerun_input(original: dict[str, Any], failed: list[DetectorRow]) -> ProcessVisitInput:
    """The original input restricted to the failed quanta, mode ``replace`` (see the module docstring)."""
    if not failed:
        raise IsrflowError("the execution has no failed quanta to rerun")
    spec = {k: v for k, v in original.items() if k not in ("where", "quanta", "mode")}
    keys = sorted({(r.instrument, r.exposure, r.detector) for r in failed})
    return ProcessVisitInput(**spec, quanta=[QuantumKey(instrument=i, exposure=e, detector=d) for i, e, d in keys],
                             mode="replace")


def rerun_name(original_name: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return f"{original_name[:50]}-rerun-{stamp}"


__all__ = ["FailedQuanta", "failed_quanta", "rerun_input", "rerun_name"]
