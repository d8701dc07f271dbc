"""What one execution used, in the units AWS bills: the quantities :mod:`isrflow.ops.cost` prices.

Counted:

- **state transitions**: every state entered plus every retry, in the execution's history and
  in the histories of all its Distributed Map children
  (:func:`isrflow.local.asl.count_state_transitions`);
- **Lambda**: one request per invocation; GB-s = configured memory (GB) x duration rounded up
  to the millisecond. Locally the duration is measured in the worker process; on AWS it is the
  TaskStarted -> TaskSucceeded/Failed interval of each Lambda task in the histories;
- **Fargate**: each ``ecs:runTask.sync`` task's vCPU and memory (task overrides, else the
  template's task definition) x its duration, at least the per-task minimum.

Estimated from counted artifacts (the manifest, the quantum results, the states entered),
because neither AWS nor the local runtime meters them per execution — the access pattern of
the ProcessVisit code (see :func:`visit_requests`):

- **S3 requests** (PUT/COPY/POST/LIST vs GET): manifest written and read, raws and each
  cluster's calibrations read once, outputs and one results file per cluster written, previews, results listed
  and read by Summarize;
- **SQS requests**: one SendMessageBatch per worker quantum and per 10 summary records, plus a
  ReceiveMessage and a DeleteMessageBatch per 10 messages drained by the writer's event source
  mapping (its empty polls run whatever the executions do and are not attributed);
- **registry writer Lambda**: ``messages x WRITER_SECONDS_PER_MESSAGE`` of its configured memory,
  one request per ``WRITER_BATCH`` messages (the batches are shared between executions).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from isrflow.local.asl.history import count_state_transitions

#: Registry writer throughput assumed when attributing its cost (the bench target: >= 5,000 msg/s).
WRITER_SECONDS_PER_MESSAGE = 0.0002
#: SQS messages per ReceiveMessage / SendMessageBatch / DeleteMessageBatch request.
SQS_BATCH = 10
#: Keys per S3 ListObjectsV2 page.
S3_LIST_PAGE = 1000


class LambdaUse(BaseModel):
    function: str
    memory_mb: int = Field(gt=0)
    architecture: str = "arm64"
    duration_s: float = Field(ge=0)
    ok: bool = True

    @property
    def gb_seconds(self) -> float:
        return self.memory_mb / 1024.0 * math.ceil(round(self.duration_s * 1000.0, 6)) / 1000.0


class FargateUse(BaseModel):
    task: str
    vcpu: float = Field(ge=0)
    memory_gb: float = Field(ge=0)
    architecture: str = "x86_64"
    duration_s: float = Field(ge=0)


class TaskInterval(BaseModel):
    """One Task attempt in a history: resource, parameters, seconds between TaskStarted and its end."""

    execution_arn: str
    resource_type: str
    resource: str
    parameters: Any = None
    duration_s: float = Field(ge=0)
    ok: bool = True


class Usage(BaseModel):
    lambda_invocations: list[LambdaUse] = Field(default_factory=list)
    fargate_tasks: list[FargateUse] = Field(default_factory=list)
    state_transitions: int = 0
    sqs_requests: int = 0
    s3_put_requests: int = 0
    s3_get_requests: int = 0
    detectors: int = 0
    registry_messages: int = 0
    notes: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- histories


def _ts(value: Any) -> float:
    if hasattr(value, "timestamp"):
        return value.timestamp()
    from datetime import datetime

    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _details(event: dict) -> dict:
    return next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})


def task_intervals(events: Iterable[dict], execution_arn: str = "") -> list[TaskInterval]:
    """Every Task attempt of one history (TaskScheduled/LambdaFunctionScheduled -> Started -> end)."""
    events = list(events)
    by_id = {e["id"]: e for e in events}
    out: list[TaskInterval] = []
    ends = {
        "TaskSucceeded": True,
        "TaskFailed": False,
        "TaskTimedOut": False,
        "LambdaFunctionSucceeded": True,
        "LambdaFunctionFailed": False,
        "LambdaFunctionTimedOut": False,
    }
    for e in events:
        if e["type"] not in ends:
            continue
        started = by_id.get(e.get("previousEventId"))
        if started is None or started["type"] not in ("TaskStarted", "LambdaFunctionStarted"):
            continue
        scheduled = by_id.get(started.get("previousEventId"), {})
        d = _details(scheduled)
        if scheduled.get("type") == "LambdaFunctionScheduled":
            rtype, resource, params = "lambda", d.get("resource", ""), {"FunctionName": d.get("resource", "")}
        else:
            rtype, resource = d.get("resourceType", ""), d.get("resource", "")
            try:
                params = json.loads(d.get("parameters") or "null")
            except ValueError:
                params = None
        out.append(
            TaskInterval(
                execution_arn=execution_arn,
                resource_type=rtype,
                resource=resource,
                parameters=params,
                duration_s=max(0.0, _ts(e["timestamp"]) - _ts(started["timestamp"])),
                ok=ends[e["type"]],
            )
        )
    return out


def states_entered(histories: Iterable[Iterable[dict]]) -> Counter:
    """State name -> times entered, over several histories."""
    counts: Counter = Counter()
    for events in histories:
        for e in events:
            if e.get("type", "").endswith("StateEntered"):
                counts[_details(e).get("name", "")] += 1
    return counts


def transitions(histories: Iterable[Iterable[dict]]) -> int:
    return sum(count_state_transitions(h) for h in histories)


def state_output(history: Iterable[dict], state: str) -> Any:
    """The (last) output of ``state`` in a history, parsed; None if it never exited."""
    found = None
    for e in history:
        if e.get("type", "").endswith("StateExited"):
            d = _details(e)
            if d.get("name") == state and d.get("output") is not None:
                found = d["output"]
    if found is None:
        return None
    return json.loads(found) if isinstance(found, str) else found


# --------------------------------------------------------------------------- Fargate


def fargate_use(task: TaskInterval, sizes: dict[str, tuple[float, float, str]]) -> FargateUse | None:
    """vCPU/memory of an ``ecs`` task: its Overrides (Cpu units, Memory MiB), else the size of the
    template task definition whose logical id appears in its TaskDefinition; None if unknown."""
    params = task.parameters if isinstance(task.parameters, dict) else {}
    overrides = params.get("Overrides") or {}
    definition = str(params.get("TaskDefinition", ""))
    size = next((v for k, v in sizes.items() if k and k in definition), None)
    cpu = overrides.get("Cpu")
    memory = overrides.get("Memory")
    if cpu is None or memory is None:
        if size is None:
            return None
        vcpu, gb, arch = size
    else:
        vcpu, gb, arch = float(cpu) / 1024.0, float(memory) / 1024.0, size[2] if size else "x86_64"
    return FargateUse(
        task=definition or task.resource,
        vcpu=vcpu,
        memory_gb=gb,
        architecture=arch,
        duration_s=task.duration_s,
    )


def template_task_sizes(template_path) -> dict[str, tuple[float, float, str]]:
    """Logical id -> (vCPU, GB, architecture) of every ECS task definition in a template."""
    from isrflow.local.sam_template import load_template

    template = load_template(template_path)
    params = {k: (v or {}).get("Default") for k, v in (template.get("Parameters") or {}).items()}

    def value(node: Any) -> Any:
        if isinstance(node, dict) and "Ref" in node:
            return params.get(node["Ref"])
        return node

    sizes = {}
    for lid, res in (template.get("Resources") or {}).items():
        if res.get("Type") != "AWS::ECS::TaskDefinition":
            continue
        props = res.get("Properties") or {}
        try:
            cpu, memory = float(value(props.get("Cpu"))), float(value(props.get("Memory")))
        except (TypeError, ValueError):
            continue
        arch = str(value((props.get("RuntimePlatform") or {}).get("CpuArchitecture")) or "X86_64").lower()
        sizes[lid] = (cpu / 1024.0, memory / 1024.0, "arm64" if arch == "arm64" else "x86_64")
    return sizes


# --------------------------------------------------------------------------- ProcessVisit requests


def visit_requests(
    plan: dict | None, clusters: list[dict] | None, results: list[dict], states: Counter, messages: int
) -> tuple[int, int, int]:
    """(S3 PUT/COPY/POST/LIST, S3 GET, SQS requests) of one ProcessVisit execution, from
    its plan result, manifest clusters, quantum results and states entered (the model in the
    module docstring)."""
    puts = gets = 0
    clusters = clusters or []
    quanta = [q for c in clusters for q in c.get("quanta", [])]
    by_key = {(r["instrument"], r["exposure"], r["detector"]): r for r in results}
    succeeded = [
        q
        for q in quanta
        if by_key.get((q["instrument"], q["exposure"], q["detector"]), {}).get("status") == "succeeded"
    ]
    previews = bool(plan and plan.get("previews"))
    crashed = states.get("RecordFailure", 0)  # clusters whose worker failed: it wrote no results file
    plan_file = int(bool(plan and plan.get("failed_at_plan")))  # plan-time failures: one results file
    if plan is not None:
        puts += 1 + plan_file  # the manifest
    if clusters:
        gets += 1  # the Map's ItemReader
        for c in clusters:
            gets += len(
                {
                    str((v or {}).get("id"))
                    for q in c.get("quanta", [])
                    for v in (q.get("calibs") or {}).values()
                    if v
                }
            )
        gets += len(quanta)  # raws
        puts += len(clusters) - crashed + len(succeeded)  # a results file per cluster, outputs
        if previews:
            puts += 2 * len(succeeded)  # detector PNG + thumbnail
    gets += crashed  # RecordFailure looks for its cluster's results file (the worker wrote none) ...
    puts += crashed  # ... and writes it with the cluster's quanta failed
    if states.get("Mosaics", 0):
        exposures = {(q["instrument"], q["exposure"]) for q in quanta}
        gets += 1 + (len(succeeded) if previews else 0)  # manifest + thumbnails
        puts += 2 * len(exposures)  # LIST of each exposure directory + the mosaic
    if states.get("Summarize", 0):
        files = len(clusters) + plan_file
        puts += max(1, math.ceil(files / S3_LIST_PAGE))  # LIST results/
        gets += files + (1 if clusters else 0)  # the results files, the manifest
    records = len(results)
    sqs = (
        len(succeeded) + math.ceil(records / SQS_BATCH) + 1 + 2 * math.ceil(messages / SQS_BATCH)
        if messages
        else 0
    )
    return puts, gets, sqs


def writer_use(messages: int, memory_mb: int, architecture: str, batch: int) -> list[LambdaUse]:
    """The registry writer's share for ``messages`` messages, as invocations of ``batch`` messages."""
    if messages <= 0:
        return []
    n = math.ceil(messages / max(1, batch))
    per = messages * WRITER_SECONDS_PER_MESSAGE / n
    return [
        LambdaUse(
            function="RegistryWriterFunction (estimated share)",
            memory_mb=memory_mb,
            architecture=architecture,
            duration_s=per,
        )
        for _ in range(n)
    ]


__all__ = [
    "WRITER_SECONDS_PER_MESSAGE",
    "FargateUse",
    "LambdaUse",
    "TaskInterval",
    "Usage",
    "fargate_use",
    "state_output",
    "states_entered",
    "task_intervals",
    "template_task_sizes",
    "transitions",
    "visit_requests",
    "writer_use",
]
