"""The status of one ProcessVisit execution on AWS (:func:`aws_status`), from its histories.

GetExecutionHistory of the execution and of every child of its Distributed Map runs
(ListMapRuns, ListExecutions), through boto3; each Lambda task's duration from its history, each
function's memory from GetFunctionConfiguration (else the template's MemorySize). The rows, totals
and cost are assembled as for a local execution (:func:`isrflow.ops.status.assemble_status`).
"""

from __future__ import annotations

import json
from pathlib import Path

from isrflow.local.usage import LambdaUse, states_entered, task_intervals, transitions
from isrflow.model.errors import ExecutionNotFoundError
from isrflow.ops.prices import PriceTable
from isrflow.ops.status import PROJECT_ROOT, ExecutionStatus, Progress, assemble_status


def execution_history(sfn, arn: str) -> list[dict]:
    """Every event of an execution's history (GetExecutionHistory, with its data)."""
    events: list[dict] = []
    for page in sfn.get_paginator("get_execution_history").paginate(
        executionArn=arn, includeExecutionData=True
    ):
        events.extend(page["events"])
    return events


def _children(sfn, arn: str) -> list[str]:
    runs = [
        r["mapRunArn"]
        for page in sfn.get_paginator("list_map_runs").paginate(executionArn=arn)
        for r in page.get("mapRuns", [])
    ]
    return [
        e["executionArn"]
        for run in runs
        for page in sfn.get_paginator("list_executions").paginate(mapRunArn=run)
        for e in page.get("executions", [])
    ]


class _FunctionMemory:
    """Function reference -> (memory MB, architecture): GetFunctionConfiguration, else the template."""

    def __init__(self, lambda_client, app):
        self.client, self.app, self.cache = lambda_client, app, {}

    def __call__(self, ref: str) -> tuple[int, str, bool]:
        if ref not in self.cache:
            self.cache[ref] = self._lookup(ref)
        return self.cache[ref]

    def _lookup(self, ref: str) -> tuple[int, str, bool]:
        if self.client is not None:
            try:
                conf = self.client.get_function_configuration(FunctionName=ref)
                return int(conf["MemorySize"]), (conf.get("Architectures") or ["x86_64"])[0], True
            except Exception:
                pass
        for fn in self.app.functions.values():
            if fn.logical_id in ref:
                return fn.memory_mb, (fn.architectures or ["x86_64"])[0], False
        return 128, "x86_64", False


def aws_status(
    execution_arn: str,
    prices: PriceTable,
    *,
    repo: Path | None = None,
    sfn=None,
    lambda_client=None,
    progress: Progress | None = None,
) -> ExecutionStatus:
    from isrflow.local.sam_template import load_app

    if sfn is None or lambda_client is None:
        import boto3

        region = execution_arn.split(":")[3]
        sfn = sfn or boto3.client("stepfunctions", region_name=region)
        lambda_client = lambda_client or boto3.client("lambda", region_name=region)
    try:
        desc = sfn.describe_execution(executionArn=execution_arn)
    except Exception as exc:
        raise ExecutionNotFoundError(f"{execution_arn}: {exc}") from None
    history = execution_history(sfn, execution_arn)
    children = _children(sfn, execution_arn)
    histories = [history]
    for i, child in enumerate(children, 1):
        histories.append(execution_history(sfn, child))
        if progress is not None:
            progress(f"child execution histories: {i}/{len(children)}")
    memory = _FunctionMemory(lambda_client, load_app(PROJECT_ROOT / "template.yaml"))
    lambdas, ecs, notes = [], [], []
    for h, arn in zip(histories, [execution_arn, *children], strict=False):
        for t in task_intervals(h, arn):
            if t.resource_type == "lambda":
                ref = str((t.parameters or {}).get("FunctionName", t.resource))
                mb, arch, exact = memory(ref)
                if not exact:
                    note = f"memory of {ref} taken from template.yaml"
                    if note not in notes:
                        notes.append(note)
                lambdas.append(
                    LambdaUse(
                        function=ref.rsplit(":", 1)[-1],
                        memory_mb=mb,
                        architecture=arch,
                        duration_s=t.duration_s,
                        ok=t.ok,
                    )
                )
            elif t.resource_type == "ecs":
                ecs.append(t)
    notes.append(
        "Lambda durations from TaskStarted -> end in the histories (a little above the billed duration)"
    )

    def text(value):
        try:
            return json.loads(value) if value else None
        except ValueError:
            return None

    return assemble_status(
        "aws",
        arn=execution_arn,
        name=desc["name"],
        sm_arn=desc["stateMachineArn"],
        status=desc["status"],
        start=desc.get("startDate"),
        stop=desc.get("stopDate"),
        error=desc.get("error"),
        cause=desc.get("cause"),
        input_=text(desc.get("input")),
        output=text(desc.get("output")),
        history=history,
        lambdas=lambdas,
        ecs_tasks=ecs,
        transitions_count=transitions(histories),
        states=states_entered(histories),
        repo=repo,
        prices=prices,
        notes=notes,
    )
