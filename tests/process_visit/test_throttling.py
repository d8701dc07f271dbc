"""Lambda throttling on the local runtime: reserved concurrency from the template is enforced,
throttles can be injected, ProcessVisit retries them with full jitter (seeded, on a fake clock:
no real waiting), and a throttle is never recorded as a failed detector.

Also: the runtime's registry queue and event source take the template's settings as they are
(visibility timeout, max receive count, batch size, batching window; no local shortcut)."""

from __future__ import annotations

import json

import pytest
from visit_helpers import make_repo, visit_input

from functions.plan.app import lambda_handler as plan_handler
from functions.summarize.app import record_failure_handler
from isrflow.io.storage import storage_for
from isrflow.local.asl import FakeClock, TaskFailure
from isrflow.local.asl.integrations import LAMBDA_INVOKE, TaskContext
from isrflow.local.runtime import LocalRuntime
from isrflow.local.throttle import THROTTLE_ERROR, ConcurrencyGate, LambdaThrottled
from isrflow.process_visit.summary import WorkerThrottledError

MACHINE = "ProcessVisitStateMachine"
ISR = "IsrFunction"


def _input(**extra):
    return visit_input(**{"output_run": "Generic/runs/throttled", **extra})


@pytest.fixture
def one_cluster_repo(tmp_path):
    """Two exposures of one detector: one cluster of two quanta at cluster_size 2."""
    return make_repo(tmp_path, detectors=(0,), science=2)


def test_gate_enforces_reserved_concurrency_and_injected_throttles():
    gate = ConcurrencyGate({"A": 1, "B": None, "Off": 0})
    with gate.slot("A"):
        with pytest.raises(LambdaThrottled) as info, gate.slot("A"):
            pass
        with gate.slot("B"), gate.slot("B"):  # unreserved: never throttled here
            pass
    assert info.value.error == THROTTLE_ERROR
    assert "Status Code: 429" in json.loads(info.value.cause)["errorMessage"]
    with gate.slot("A"):  # the slot was given back
        assert gate.in_flight("A") == 1
    with (
        pytest.raises(LambdaThrottled),
        gate.slot("Off"),
    ):  # reserved concurrency 0: the function is off, as on AWS
        pass
    gate.inject("B", 2)
    for _ in range(2):
        with pytest.raises(LambdaThrottled, match="injected"), gate.slot("B"):
            pass
    with gate.slot("B"):
        pass
    assert gate.throttled == {"A": 1, "Off": 1, "B": 2}


def test_runtime_takes_queue_mapping_and_concurrency_from_the_template(one_cluster_repo):
    with LocalRuntime(one_cluster_repo.root, processes=0, parameters={"IsrMaxConcurrency": "1"}) as runtime:
        assert (runtime.queue.visibility_timeout, runtime.queue.max_receive_count) == (900, 5)
        poller = runtime.poller
        assert (poller.batch_size, poller.window_s, poller.retry_delay_s) == (5000, 5.0, None)
        assert runtime.throttles.reserved == {
            "PlanFunction": 10,
            ISR: 1,
            "SummarizeFunction": 15,
            "RegistryWriterFunction": 2,
            "CalibPlanFunction": 5,
            "SummarizeCalibFunction": 5,
        }
        # a second concurrent invoke of the ISR function is refused as the Lambda service refuses it
        context = TaskContext("arn:exec", "exec", "arn:sm", "IsrCluster")
        arn = runtime.app.functions[ISR].arn
        with runtime.throttles.slot(ISR), pytest.raises(TaskFailure) as info:
            runtime.interpreter.integrations.invoke(
                LAMBDA_INVOKE, {"FunctionName": arn, "Payload": {}}, context
            )
    assert info.value.error == THROTTLE_ERROR


def test_injected_throttles_are_retried_with_jitter_and_no_detector_fails(one_cluster_repo):
    repo = one_cluster_repo
    clock = FakeClock()
    with LocalRuntime(repo.root, processes=2, clock=clock, seed=11) as runtime:
        runtime.throttles.inject(ISR, 10)  # more than the 6 retries the ISR Task had for throttles
        execution = runtime.run(MACHINE, _input())
        throttled = runtime.throttles.throttled.get(ISR)
    assert execution.status == "SUCCEEDED", execution.cause
    output = execution.output
    assert (output["quanta"], output["succeeded"], output["failed"]) == (2, 2, 0)
    records = repo.registry.processing_records(execution.execution_arn)
    assert [r["status"] for r in records] == ["succeeded", "succeeded"]
    assert throttled == 10
    # ten back-offs, each uniform in [0, min(2 * 2^k, 120)] s: jittered, not the bare 2, 4, 8, ...
    bounds = [min(2 * 2**k, 120) for k in range(10)]
    assert len(clock.sleeps) == 10 and all(0 <= s <= b for s, b in zip(clock.sleeps, bounds, strict=True))
    assert clock.sleeps != bounds


def test_throttles_past_the_budget_fail_the_item_without_failed_detector_rows(one_cluster_repo):
    repo = one_cluster_repo
    with LocalRuntime(repo.root, processes=2, clock=FakeClock(), seed=3) as runtime:
        runtime.throttles.inject(ISR, 31)  # the first attempt and all 30 retries
        execution = runtime.run(MACHINE, _input())
        (child,) = execution.children()
    assert execution.status == "FAILED"
    assert child.status == "FAILED" and child.error == "WorkerThrottledError"
    assert "not recorded as failed" in child.cause
    scheduled = [json.dumps(e, default=str) for e in child.history if e["type"] == "TaskScheduled"]
    assert len(scheduled) == 31 and not [
        e for e in scheduled if "RecordFailureFunction" in e
    ]  # no RecordFailure
    assert repo.registry.processing_records(execution.execution_arn) == []


def test_record_failure_refuses_to_record_a_throttle(local_repo):
    plan = plan_handler({"input": _input(output_run="Generic/runs/t"), "execution_id": "exec-throttle"})
    cluster = json.loads(storage_for(plan["manifest_uri"]).read_bytes(plan["manifest_uri"]))[0]
    event = {
        "cluster": cluster,
        "results_prefix": plan["results_prefix"],
        "error": {"Error": THROTTLE_ERROR, "Cause": json.dumps({"errorMessage": "Rate Exceeded."})},
    }
    with pytest.raises(WorkerThrottledError, match="not recorded as failed"):
        record_failure_handler(event)
    store = storage_for(plan["results_prefix"])
    assert [u for u in store.list(plan["results_prefix"]) if u.endswith(".json")] == []
