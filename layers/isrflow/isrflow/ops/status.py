"""The status of one ProcessVisit execution: per-detector rows, totals and estimated AWS cost.

Two sources, one result (:class:`ExecutionStatus`):

- **local** (the execution ran on the embedded runtime): its record under
  ``<repo>/executions/`` (:mod:`isrflow.local.records`) gives the history, the transitions of
  the whole execution tree and every Lambda invocation with its measured duration;
- **AWS** (an execution ARN with a real region): its histories, through boto3
  (:mod:`isrflow.ops.aws_status`).

Per-detector rows come from the registry's processing records when a repository is given and
holds them, else from the result files (one per cluster) under the execution's ``results/`` prefix
(named in the Plan state's output). Usage and cost: :mod:`.usage`, :mod:`.cost`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from isrflow.io.storage import ObjectNotFoundError, storage_for
from isrflow.local.usage import (
    LambdaUse,
    Usage,
    fargate_use,
    state_output,
    template_task_sizes,
    visit_requests,
    writer_use,
)
from isrflow.model.errors import ExecutionNotFoundError, IsrflowError
from isrflow.ops.cost import CostEstimate, estimate
from isrflow.ops.prices import PriceTable, load_prices
from isrflow.ops.reads import ReadsSummary, summarize_reads
from isrflow.process_visit.results import results_so_far

PROJECT_ROOT = Path(__file__).resolve().parents[4]
Progress = Callable[[str], None]


class DetectorRow(BaseModel):
    instrument: str
    exposure: int
    detector: int
    status: str
    duration_s: float | None = None
    peak_memory_mb: float | None = None
    retries: int = 0
    error: str | None = None


class MasterRow(BaseModel):
    """One master of a BuildCalibration execution (its ``results/K/masters/<master>.json``):
    combine seconds and peak memory (MiB) of the function or task that built it."""

    calib_type: str
    instrument: str
    detector: int
    physical_filter: str | None = None
    status: str
    route: str | None = None
    n_inputs: int | None = None
    duration_s: float | None = None
    peak_memory_mb: float | None = None
    error: str | None = None
    output_uri: str | None = None


class Totals(BaseModel):
    detectors: int
    succeeded: int
    failed: int
    skipped_existing: int = 0
    isr_seconds: float
    max_peak_memory_mb: float | None = None


class ExecutionStatus(BaseModel):
    source: Literal["local", "aws"]
    execution_arn: str
    name: str
    state_machine_arn: str
    status: str
    start_date: datetime | None = None
    stop_date: datetime | None = None
    error: str | None = None
    cause: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    output_run: str | None = None
    rows: list[DetectorRow]
    rows_from: Literal["registry", "results", "none"]
    totals: Totals
    usage: Usage
    cost: CostEstimate
    reads: ReadsSummary | None = None  # calibration cache hits and datastore bytes per detector
    masters: list[MasterRow] = Field(default_factory=list)  # BuildCalibration executions only

    @property
    def failed_rows(self) -> list[DetectorRow]:
        return [r for r in self.rows if r.status == "failed"]


def is_aws_arn(execution: str) -> bool:
    parts = execution.split(":")
    return execution.startswith("arn:") and len(parts) > 3 and parts[3] not in ("", "local")


# --------------------------------------------------------------------------- rows


def _rows_from_registry(repo: Path | None, execution_arn: str) -> list[DetectorRow]:
    if repo is None:
        return []
    from isrflow.registry import open_repo

    registry = open_repo(repo)
    try:
        records = registry.processing_records(execution_arn)
    finally:
        registry.close()
    return [
        DetectorRow(**{k: r.get(k) for k in DetectorRow.model_fields if k in r})
        for r in records
        if r.get("step", "isr") == "isr"
    ]


def _results(plan: dict | None) -> list[dict]:
    """The quantum results recorded so far under the plan's results prefix, as JSON objects."""
    if not plan or not plan.get("results_prefix"):
        return []
    return [r.model_dump(mode="json") for r in results_so_far(plan["results_prefix"])]


def _manifest(plan: dict | None) -> list[dict]:
    if not plan or not plan.get("clusters") or not plan.get("manifest_uri"):
        return []
    try:
        return json.loads(storage_for(plan["manifest_uri"]).read_bytes(plan["manifest_uri"]))
    except ObjectNotFoundError:
        return []


def plan_result(history: list[dict]) -> dict | None:
    """The Plan state's result (PlanResult as JSON) from an execution's history."""
    return ((state_output(history, "Plan") or {}).get("plan") or {}).get("result")


def _results_location(repo: Path | None, execution_arn: str) -> dict | None:
    """Where a local execution that has not recorded its Plan output (still running, or killed)
    keeps its result files: the layout's results prefix in the repository's datastore."""
    if repo is None:
        return None
    from isrflow.io.datastore import normalize_root
    from isrflow.process_visit import layout
    from isrflow.registry.repo import read_repo_config

    root = normalize_root(read_repo_config(repo).datastore_root(repo))
    return {"results_prefix": layout.results_prefix(root, layout.execution_key(execution_arn))}


def detector_rows(
    repo: Path | None, execution_arn: str, plan: dict | None
) -> tuple[list[DetectorRow], str, list[dict] | None]:
    """(rows, where they came from, the result files if they were read): the registry's processing
    records when ``repo`` holds them, else the result files of the execution."""
    rows = _rows_from_registry(repo, execution_arn)
    rows_from = "registry" if rows else "none"
    results: list[dict] | None = None
    if not rows:
        results = _results(plan)
        rows = [DetectorRow(**{k: r.get(k) for k in DetectorRow.model_fields if k in r}) for r in results]
        rows_from = "results" if rows else "none"
    rows.sort(key=lambda r: (r.instrument, r.exposure, r.detector))
    return rows, rows_from, results


def _find_key(value: Any, key: str) -> Any:
    """The first value of ``key`` in nested dicts and lists (None if absent)."""
    if isinstance(value, dict):
        if isinstance(value.get(key), str):
            return value[key]
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = _find_key(item, key)
            if found is not None:
                return found
    return None


def master_results_prefix(history: list[dict], repo: Path | None, execution_arn: str) -> str | None:
    """Where a BuildCalibration execution writes its masters' results: named in a state's output
    (the calibration plan's ``master_results_prefix``), else the layout's place in ``repo``."""
    for e in history:
        if e.get("type", "").endswith("StateExited"):
            output = e.get("stateExitedEventDetails", {}).get("output")
            if isinstance(output, str) and "master_results_prefix" in output:
                try:
                    found = _find_key(json.loads(output), "master_results_prefix")
                except ValueError:
                    found = None
                if found:
                    return found
    location = _results_location(repo, execution_arn)
    return location["results_prefix"] + "masters/" if location else None


def master_rows(prefix: str | None) -> list[MasterRow]:
    """The masters' results under ``prefix``, sorted by type, instrument, detector and filter."""
    if not prefix:
        return []
    store = storage_for(prefix)
    rows = []
    try:
        uris = [u for u in store.list(prefix) if u.endswith(".json")]
    except ObjectNotFoundError:
        return []
    for uri in uris:
        try:
            result = json.loads(store.read_bytes(uri))
        except (ObjectNotFoundError, ValueError):
            continue
        rows.append(MasterRow(**{k: result.get(k) for k in MasterRow.model_fields if k in result}))
    rows.sort(key=lambda r: (r.calib_type, r.instrument, r.detector, r.physical_filter or ""))
    return rows


def _totals(rows: list[DetectorRow], skipped: int) -> Totals:
    memory = [r.peak_memory_mb for r in rows if r.peak_memory_mb is not None]
    return Totals(
        detectors=len(rows),
        succeeded=sum(r.status == "succeeded" for r in rows),
        failed=sum(r.status == "failed" for r in rows),
        skipped_existing=skipped,
        isr_seconds=round(sum(r.duration_s or 0.0 for r in rows), 3),
        max_peak_memory_mb=max(memory) if memory else None,
    )


# --------------------------------------------------------------------------- assembling


def _writer(app) -> tuple[int, str, int]:
    """(memory MB, architecture, batch size) of the template's registry writer."""
    mapping = next((m for m in app.event_source_mappings if m.enabled), None)
    if mapping is None:
        return 1024, "arm64", 10
    fn = app.functions[mapping.function]
    return fn.memory_mb, (fn.architectures or ["x86_64"])[0], mapping.batch_size


def assemble_status(
    source,
    *,
    arn,
    name,
    sm_arn,
    status,
    start,
    stop,
    error,
    cause,
    input_,
    output,
    history,
    lambdas: list[LambdaUse],
    ecs_tasks,
    transitions_count: int,
    states: Counter,
    repo: Path | None,
    prices: PriceTable,
    notes: list[str],
) -> ExecutionStatus:
    from isrflow.local.sam_template import load_app

    plan = plan_result(history) or _results_location(repo, arn)
    rows, rows_from, results = detector_rows(repo, arn, plan)
    if isinstance(output, dict) and "registry_messages" in output:
        messages = int(output["registry_messages"])
    else:
        results = results if results is not None else _results(plan)
        messages = sum(int(r.get("messages_sent", 0)) for r in results) + len(rows) + (1 if rows else 0)
        notes.append("registry messages counted from the result files (the execution has no summary)")
    results = results if results is not None else _results(plan)
    app = load_app(PROJECT_ROOT / "template.yaml")
    w_mem, w_arch, w_batch = _writer(app)
    sizes = template_task_sizes(PROJECT_ROOT / "template.yaml")
    fargate = []
    for t in ecs_tasks:
        use = fargate_use(t, sizes)
        if use is None:
            notes.append(f"Fargate task {t.resource} of unknown size: not priced")
        else:
            fargate.append(use)
    puts, gets, sqs = visit_requests(plan, _manifest(plan), [r.model_dump() for r in rows], states, messages)
    usage = Usage(
        lambda_invocations=lambdas + writer_use(messages, w_mem, w_arch, w_batch),
        fargate_tasks=fargate,
        state_transitions=transitions_count,
        sqs_requests=sqs,
        s3_put_requests=puts,
        s3_get_requests=gets,
        detectors=len(rows),
        registry_messages=messages,
        notes=notes,
    )
    spec = input_ if isinstance(input_, dict) else {}
    masters = master_rows(master_results_prefix(history, repo, arn)) if "BuildCalibration" in sm_arn else []
    return ExecutionStatus(
        source=source,
        execution_arn=arn,
        name=name,
        state_machine_arn=sm_arn,
        status=status,
        start_date=start,
        stop_date=stop,
        error=error,
        cause=cause,
        input=spec,
        output_run=spec.get("output_run"),
        rows=rows,
        rows_from=rows_from,
        totals=_totals(
            rows, int((output or {}).get("skipped_existing", 0)) if isinstance(output, dict) else 0
        ),
        usage=usage,
        cost=estimate(usage, prices),
        reads=summarize_reads(results),
        masters=masters,
    )


def local_status(repo: Path, execution: str, prices: PriceTable) -> ExecutionStatus:
    from isrflow.local.records import load_record

    record = load_record(repo, execution)
    lambdas = [
        LambdaUse(
            function=i.function,
            memory_mb=i.memory_mb,
            architecture=i.architecture,
            duration_s=i.duration_s,
            ok=i.ok,
        )
        for i in record.invocations
    ]
    ecs = [t for t in record.tasks if t.resource_type == "ecs"]
    return assemble_status(
        "local",
        arn=record.execution_arn,
        name=record.name,
        sm_arn=record.state_machine_arn,
        status=record.status,
        start=record.start_date,
        stop=record.stop_date,
        error=record.error,
        cause=record.cause,
        input_=record.input,
        output=record.output,
        history=record.history,
        lambdas=lambdas,
        ecs_tasks=ecs,
        transitions_count=record.state_transitions,
        states=Counter(record.states_entered),
        repo=repo,
        prices=prices,
        notes=[],
    )


def execution_status(
    execution: str,
    *,
    repo: Path | None = None,
    prices_path: str | Path | None = None,
    sfn=None,
    lambda_client=None,
    progress: Progress | None = None,
) -> ExecutionStatus:
    """The status of an execution by name or ARN: local if ``repo`` holds its record, else AWS for
    an ARN with a real region."""
    from isrflow.local.records import load_record

    prices = load_prices(prices_path)
    if repo is not None:
        try:
            load_record(repo, execution)
            return local_status(Path(repo), execution, prices)
        except ExecutionNotFoundError:
            if not is_aws_arn(execution):
                raise
    if is_aws_arn(execution):
        from isrflow.ops.aws_status import aws_status

        return aws_status(
            execution, prices, repo=repo, sfn=sfn, lambda_client=lambda_client, progress=progress
        )
    raise IsrflowError(
        f"{execution!r}: give --repo DIR for a local execution, or the execution ARN of an AWS one"
    )


__all__ = [
    "DetectorRow",
    "ExecutionStatus",
    "MasterRow",
    "Totals",
    "detector_rows",
    "execution_status",
    "is_aws_arn",
    "local_status",
    "master_results_prefix",
    "master_rows",
    "plan_result",
]
