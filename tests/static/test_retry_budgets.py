"""The state machines' retry budgets against the template's queue and concurrency settings.

- Redelivery: an out-of-order registry message is applied at most
  ``redelivery_span_s(give-up count, batching window)`` seconds late (isrflow.registry.redelivery);
  Plan's QuantaNotFoundError retrier and Summarize's wait must outlast that, and the writer's
  visibilities must stay far below the queue's visibility timeout.
- Throttling: every lambda:invoke Task retries Lambda.TooManyRequestsException in a retrier of
  its own, with full jitter, capped waits and tens of minutes of budget; the AWS-recommended
  service-error retrier is kept; an ISR map item never records a throttle as a failure.
- Reserved concurrency: set for the writer (>= its event source's MaximumConcurrency), Plan,
  Summarize and the calibration plan; the ISR function's comes from IsrMaxConcurrency (0 = none).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isrflow.local.sam_template import load_app
from isrflow.registry.redelivery import (
    SUMMARIZE_WAIT_S,
    redelivery_span_s,
    retrier_budget_s,
    retry_visibility_s,
)

ROOT = Path(__file__).resolve().parents[2]
ASL_FILES = sorted((ROOT / "statemachines").glob("*.asl.json"))
THROTTLE = "Lambda.TooManyRequestsException"
AWS_RECOMMENDED = {
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
}


@pytest.fixture(scope="module")
def app():
    return load_app(ROOT / "template.yaml")


def _states(states: dict, prefix: str = ""):
    for name, state in states.items():
        yield f"{prefix}{name}", state, states
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from _states(state[key]["States"], f"{prefix}{name}/")
        for i, branch in enumerate(state.get("Branches", [])):
            yield from _states(branch["States"], f"{prefix}{name}[{i}]/")


def _lambda_tasks(path: Path):
    definition = json.loads(path.read_text(encoding="utf-8"))
    for name, state, siblings in _states(definition["States"]):
        if state.get("Type") == "Task" and state.get("Resource") == "arn:aws:states:::lambda:invoke":
            yield name, state, siblings


def _budget(r: dict) -> float:
    return retrier_budget_s(
        r.get("IntervalSeconds", 1),
        r.get("MaxAttempts", 3),
        r.get("BackoffRate", 2.0),
        r.get("MaxDelaySeconds"),
    )


def _redelivery_span(app) -> float:
    (mapping,) = [m for m in app.event_source_mappings if m.enabled]
    writer = app.functions[mapping.function]
    queue = app.queues[mapping.queue]
    give_up = int(writer.environment.get("ISRFLOW_REGISTRY_GIVE_UP_AFTER", "0") or 0)
    give_up = give_up or queue.max_receive_count
    assert give_up is not None and (queue.max_receive_count is None or give_up <= queue.max_receive_count)
    return redelivery_span_s(give_up, mapping.batching_window_s)


def test_writer_visibilities_are_seconds_not_the_queue_timeout(app) -> None:
    (mapping,) = [m for m in app.event_source_mappings if m.enabled]
    queue = app.queues[mapping.queue]
    assert queue.visibility_timeout_s == 900 and queue.max_receive_count == 5
    deliveries = range(1, queue.max_receive_count + 1)
    assert all(retry_visibility_s(n) <= 60 < queue.visibility_timeout_s for n in deliveries)
    assert _redelivery_span(app) == 88


def test_plan_and_summarize_outlast_the_redelivery_span(app) -> None:
    path = ROOT / "statemachines" / "process_visit.asl.json"
    span = _redelivery_span(app)
    tasks = {name: state for name, state, _ in _lambda_tasks(path)}
    (plan_retrier,) = [r for r in tasks["Plan"]["Retry"] if r["ErrorEquals"] == ["QuantaNotFoundError"]]
    assert plan_retrier.get("JitterStrategy", "NONE") == "NONE"  # a full budget, not a random half of it
    assert _budget(plan_retrier) >= span  # 150 s >= 88 s (the old retrier: 63 s vs 3 x 900 s)
    assert 3 * span <= SUMMARIZE_WAIT_S
    summarize = app.functions["SummarizeFunction"]
    assert summarize.timeout_s > SUMMARIZE_WAIT_S
    (wait_retrier,) = [r for r in tasks["Summarize"]["Retry"] if r["ErrorEquals"] == ["WaitTimeoutError"]]
    assert wait_retrier["MaxAttempts"] >= 1


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda p: p.name)
def test_every_lambda_task_retries_throttles_separately_with_full_jitter(path: Path) -> None:
    tasks = list(_lambda_tasks(path))
    assert tasks
    for name, state, _ in tasks:
        retry = state.get("Retry", [])
        throttle = [r for r in retry if THROTTLE in r["ErrorEquals"]]
        assert len(throttle) == 1 and throttle[0]["ErrorEquals"] == [THROTTLE], name
        t = throttle[0]
        assert t.get("JitterStrategy") == "FULL" and t.get("MaxDelaySeconds"), name
        # with full jitter each wait is uniform in [0, delay]: the mean total is half the bound
        assert _budget(t) / 2 >= 20 * 60, f"{name}: throttle budget {_budget(t) / 2:.0f} s on average"
        (service,) = [r for r in retry if "Lambda.ServiceException" in r["ErrorEquals"]]
        assert set(service["ErrorEquals"]) == AWS_RECOMMENDED, name
        shape = (service["IntervalSeconds"], service["MaxAttempts"], service["BackoffRate"])
        assert shape == (2, 6, 2.0), name


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda p: p.name)
def test_a_throttled_worker_is_never_recorded_as_failed(path: Path) -> None:
    """A Task whose Catch sends every error to a failure-recording Task catches throttles first
    and sends them to a Fail state."""
    checked = 0
    for name, state, siblings in _lambda_tasks(path):
        catch = state.get("Catch", [])
        records = [
            c
            for c in catch
            if c["ErrorEquals"] == ["States.ALL"]
            and siblings.get(c["Next"], {}).get("Parameters", {}).get("FunctionName")
            == "${RecordFailureFunctionArn}"
        ]
        if not records:
            continue
        checked += 1
        first = next(c for c in catch if THROTTLE in c["ErrorEquals"] or "States.ALL" in c["ErrorEquals"])
        assert THROTTLE in first["ErrorEquals"], name
        target = siblings[first["Next"]]
        assert target["Type"] == "Fail" and target["Error"] == "WorkerThrottledError", name
    assert checked >= 1


def test_reserved_concurrency(app) -> None:
    reserved = {lid: f.reserved_concurrency for lid, f in app.functions.items()}
    registry = (
        "PlanFunction",
        "SummarizeFunction",
        "RegistryWriterFunction",
        "CalibPlanFunction",
        "SummarizeCalibFunction",
    )
    for lid in registry:
        assert reserved[lid] is not None and 1 <= reserved[lid] <= 50, lid
    # the 37 the ReserveConcurrency parameter and docs/deploy.md add to the account's limit
    assert sum(reserved[lid] for lid in registry) == 37
    (mapping,) = [m for m in app.event_source_mappings if m.enabled]
    assert reserved[mapping.function] >= (mapping.max_concurrency or 0)
    assert reserved["IsrFunction"] == int(app.parameters["IsrMaxConcurrency"]) > 0

    def isr(value: str) -> int | None:
        functions = load_app(ROOT / "template.yaml", {"IsrMaxConcurrency": value}).functions
        return functions["IsrFunction"].reserved_concurrency

    assert isr("0") is None and isr("64") == 64
