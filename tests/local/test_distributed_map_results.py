"""Distributed Map results and the 256 KiB payload limit, as AWS applies them.

Without a ResultWriter, Step Functions collects every child execution's output into one array,
the Map state's result, and measures it (UTF-8 bytes of JSON) against the 262,144-byte limit
*before* ResultPath/OutputPath: ``ResultPath: null`` does not exempt it. Past the limit the
state fails with ``States.DataLimitExceeded``, which no Retry retries and no Catch (not even
``States.ALL``) catches. With a ResultWriter the results go to S3 (a manifest plus result files
grouped by status) and the state's result is a small pointer to the manifest.

The project's two state machines run here with stub Lambda handlers and enough items that
their previous definitions (no ResultWriter) fail: fast, in-process, with a FakeClock.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from isrflow.local.asl import PAYLOAD_LIMIT, FakeClock, Interpreter, LocalIntegrations, StateMachine
from isrflow.local.asl.result_writer import ChildRecord, export_files, read_manifest_results
from isrflow.model.messages import ClusterSummary

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "isrflow-data-123456789012"
INVOKE = "arn:aws:states:::lambda:invoke"
DISTRIBUTED = {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
READER = {
    "Resource": "arn:aws:states:::s3:getObject",
    "ReaderConfig": {"InputType": "JSON"},
    "Parameters": {"Bucket": BUCKET, "Key": "items.json"},
}
WRITER = {
    "Resource": "arn:aws:states:::s3:putObject",
    "Parameters": {"Bucket": BUCKET, "Prefix.$": "States.Format('map-results/{}', $$.Execution.Name)"},
}


class FakeS3:
    """One bucket in memory: the ItemReader reads from it, the ResultWriter writes to it."""

    def __init__(self, objects: dict[str, bytes] | None = None):
        self.objects = dict(objects or {})

    def read(self, bucket: str, key: str) -> bytes:
        if bucket != BUCKET or key not in self.objects:
            raise FileNotFoundError(f"s3://{bucket}/{key}")
        return self.objects[key]

    def write(self, bucket: str, key: str, body: bytes) -> None:
        if bucket != BUCKET:
            raise FileNotFoundError(f"s3://{bucket} (NoSuchBucket)")
        self.objects[key] = body


def _machine(map_fields: dict, processor: dict, after: dict | None = None) -> StateMachine:
    st = {
        "Type": "Map",
        "ItemReader": READER,
        "ResultPath": None,
        "ItemProcessor": {
            "ProcessorConfig": DISTRIBUTED,
            "StartAt": next(iter(processor)),
            "States": processor,
        },
        **map_fields,
    }
    states = {"Fanout": st, **(after or {})}
    if "Next" not in st:
        st["End"] = True
    return StateMachine.from_json({"StartAt": "Fanout", "States": states}, "Limits")


def _items_of_total(total: int, n: int) -> list[str]:
    """``n`` strings whose JSON array (compact) is exactly ``total`` bytes."""
    overhead = 2 + (n - 1) + 2 * n  # brackets, commas, quotes
    body = total - overhead
    sizes = [body // n + (1 if i < body % n else 0) for i in range(n)]
    items = ["x" * s for s in sizes]
    assert len(json.dumps(items, separators=(",", ":")).encode()) == total
    return items


def _run(machine: StateMachine, items: list, s3: FakeS3 | None = None, functions=None, name="run-1", **kw):
    s3 = s3 or FakeS3()
    s3.objects["items.json"] = json.dumps(items).encode()
    interp = Interpreter(
        LocalIntegrations(functions or {}),
        clock=FakeClock(),
        item_reader=s3.read,
        result_writer=s3.write,
        **kw,
    )
    return interp.start_execution(machine, {"keep": 1}, name=name), s3


# --------------------------------------------------------------------------- the limit

PASS_CHILD = {"Echo": {"Type": "Pass", "End": True}}  # a child's output = its item


def test_aggregated_child_outputs_are_measured_although_result_path_is_null():
    machine = _machine({}, PASS_CHILD)
    ok, _ = _run(machine, _items_of_total(PAYLOAD_LIMIT, 2000))
    assert ok.status == "SUCCEEDED" and ok.output == {"keep": 1}  # exactly at the limit: allowed
    over, _ = _run(machine, _items_of_total(PAYLOAD_LIMIT + 1, 2000))
    assert (over.status, over.error) == ("FAILED", "States.DataLimitExceeded")
    assert "262145 bytes > 262144" in over.cause and "ResultWriter" in over.cause
    # every child succeeded: the map run did, the state failed on its aggregated result
    assert over.map_runs[0].status == "SUCCEEDED" and over.map_runs[0].counts()["succeeded"] == 2000
    assert [e["type"] for e in over.history][-3:] == ["MapRunSucceeded", "MapStateFailed", "ExecutionFailed"]


def test_children_of_about_100_bytes_break_the_limit_past_2600_and_no_catch_or_retry_helps():
    calls = []

    def worker(event, context):
        calls.append(event)
        return {"cluster": event, "status": "ok", "pad": "p" * 60}  # ~100 bytes per child output

    processor = {
        "Work": {
            "Type": "Task",
            "Resource": INVOKE,
            "End": True,
            "Parameters": {"FunctionName": "worker", "Payload.$": "$"},
            "ResultSelector": {"r.$": "$.Payload"},
        }
    }
    recovery = {
        "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 3}],
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Recovered"}],
        "Next": "Done",
    }
    after = {"Recovered": {"Type": "Pass", "End": True}, "Done": {"Type": "Succeed"}}
    machine = _machine(recovery, processor, after)
    small, _ = _run(machine, list(range(2000)), functions={"worker": worker})
    assert small.status == "SUCCEEDED" and "error" not in small.output
    size = len(json.dumps([c.output for c in small.children()], separators=(",", ":")).encode())
    assert 100 <= size / 2000 <= 110
    calls.clear()
    big, _ = _run(machine, list(range(2700)), functions={"worker": worker}, name="run-2")
    assert (big.status, big.error) == ("FAILED", "States.DataLimitExceeded")
    assert len(calls) == 2700 and len(big.map_runs) == 1  # not retried
    assert not any(e["type"] == "PassStateEntered" for e in big.history)  # not caught


def test_a_state_output_over_the_limit_fails_even_when_the_next_state_would_shrink_it():
    big = {"blob": "b" * 200_000}
    machine = StateMachine.from_json(
        {
            "StartAt": "T",
            "States": {
                "T": {
                    "Type": "Task",
                    "Resource": INVOKE,
                    "Parameters": {"FunctionName": "f"},
                    "ResultSelector": {"p.$": "$.Payload"},
                    "ResultPath": "$.result",
                    "Next": "Shrink",
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                },
                "Shrink": {"Type": "Pass", "OutputPath": "$.result.p.n", "End": True},
                "Caught": {"Type": "Succeed"},
            },
        },
        "Outputs",
    )
    interp = Interpreter(
        LocalIntegrations({"f": lambda e, c: {"n": 1, "pad": "q" * 100_000}}), clock=FakeClock()
    )
    ex = interp.start_execution(machine, big)
    # the task's result (100 KB) and input (200 KB) are each under the limit; its output is not
    assert (ex.status, ex.error) == ("FAILED", "States.DataLimitExceeded")
    assert "the output of state 'T'" in ex.cause


def test_execution_input_over_the_limit_is_refused():
    machine = StateMachine.from_json({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}, "In")
    interp = Interpreter(LocalIntegrations(), clock=FakeClock())
    with pytest.raises(ValueError, match=r"States\.DataLimitExceeded"):
        interp.start_execution(machine, {"x": "y" * PAYLOAD_LIMIT})


# --------------------------------------------------------------------------- the ResultWriter


def test_result_writer_exports_every_child_and_returns_a_pointer_to_the_manifest():
    items = _items_of_total(3 * PAYLOAD_LIMIT, 3000)
    machine = _machine({"ResultWriter": WRITER, "ResultPath": "$.results"}, PASS_CHILD)
    ex, s3 = _run(machine, items, name="visit-7")
    assert ex.status == "SUCCEEDED", ex.cause
    (run,) = ex.map_runs
    run_id = run.map_run_arn.rsplit(":", 1)[-1]
    key = f"map-results/visit-7/{run_id}/manifest.json"
    assert ex.output == {
        "keep": 1,
        "results": {"MapRunArn": run.map_run_arn, "ResultWriterDetails": {"Bucket": BUCKET, "Key": key}},
    }
    manifest = json.loads(s3.objects[key])
    succeeded_key = f"map-results/visit-7/{run_id}/SUCCEEDED_0.json"
    assert manifest == {
        "DestinationBucket": BUCKET,
        "MapRunArn": run.map_run_arn,
        "ResultFiles": {
            "FAILED": [],
            "PENDING": [],
            "SUCCEEDED": [{"Key": succeeded_key, "Size": len(s3.objects[succeeded_key])}],
        },
    }
    records = json.loads(s3.objects[succeeded_key])
    assert sorted(json.loads(r["Output"]) for r in records) == sorted(items)
    first = records[0]
    assert first["Status"] == "SUCCEEDED" and first["ExecutionArn"].startswith("arn:aws:states:")
    assert json.loads(first["Input"]) == json.loads(first["Output"]) and first["StopDate"].endswith("Z")
    assert run.describe()["itemCounts"]["resultsWritten"] == 3000


def test_result_writer_groups_failed_and_pending_children_and_the_map_still_fails():
    def work(event, context):
        if event == 2:
            raise RuntimeError("bad item")
        return {"item": event}

    processor = {
        "Work": {
            "Type": "Task",
            "Resource": "arn:aws:lambda:us-east-1:123456789012:function:work",
            "End": True,
        }
    }
    machine = _machine({"ResultWriter": WRITER, "MaxConcurrency": 1}, processor)
    ex, s3 = _run(machine, [0, 1, 2, 3, 4], functions={"work": work}, max_workers=1)
    assert (ex.status, ex.error) == ("FAILED", "States.ExceedToleratedFailureThreshold")
    manifest_key = next(k for k in s3.objects if k.endswith("manifest.json"))
    groups = read_manifest_results(s3.read, BUCKET, manifest_key)
    assert [json.loads(r["Output"]) for r in groups["SUCCEEDED"]] == [{"item": 0}, {"item": 1}]
    (failed,) = groups["FAILED"]
    assert (
        failed["Status"] == "FAILED"
        and failed["Error"] == "RuntimeError"
        and json.loads(failed["Input"]) == 2
    )
    assert groups["PENDING"] == [
        {"Input": "3", "InputDetails": {"Included": True}, "Status": "PENDING"},
        {"Input": "4", "InputDetails": {"Included": True}, "Status": "PENDING"},
    ]


def test_result_writer_without_a_configured_writer_or_bucket_is_result_writer_failed():
    machine = _machine({"ResultWriter": WRITER}, PASS_CHILD)
    s3 = FakeS3({"items.json": b"[1, 2]"})
    ex = Interpreter(LocalIntegrations(), clock=FakeClock(), item_reader=s3.read).start_execution(machine, {})
    assert (ex.status, ex.error) == ("FAILED", "States.ResultWriterFailed")
    assert "result_writer" in ex.cause
    other = copy.deepcopy(WRITER)
    other["Parameters"]["Bucket"] = "someone-elses-bucket"
    ex, _ = _run(
        _machine(
            {
                "ResultWriter": other,
                "Catch": [
                    {"ErrorEquals": ["States.ResultWriterFailed"], "ResultPath": "$.e", "Next": "Caught"}
                ],
                "Next": "Done",
            },
            PASS_CHILD,
            {"Caught": {"Type": "Succeed"}, "Done": {"Type": "Succeed"}},
        ),
        [1, 2],
    )
    assert ex.status == "SUCCEEDED" and ex.output["e"]["Error"] == "States.ResultWriterFailed"  # catchable


def test_writer_config_transformations_and_jsonl():
    children = [
        ChildRecord("SUCCEEDED", {"i": 0}, "arn:x:0", "0", "arn:sm", [1, 2], start_ts=0.0, stop_ts=1.0),
        ChildRecord("SUCCEEDED", {"i": 1}, "arn:x:1", "1", "arn:sm", {"a": 1}, start_ts=0.0, stop_ts=1.0),
        ChildRecord(
            "TIMED_OUT", {"i": 2}, "arn:x:2", "2", "arn:sm", None, "States.Timeout", "slow", 0.0, 9.0
        ),
    ]

    def export(**kw):
        out = export_files(
            children, bucket=BUCKET, prefix="p", map_run_arn="arn:aws:states:r:1:mapRun:sm/M:run-9", **kw
        )
        return dict(out.objects)

    compact = export(transformation="COMPACT")
    assert json.loads(compact["p/run-9/SUCCEEDED_0.json"]) == [[1, 2], {"a": 1}]
    flat = export(transformation="FLATTEN")
    assert json.loads(flat["p/run-9/SUCCEEDED_0.json"]) == [1, 2, {"a": 1}]
    (failed,) = json.loads(flat["p/run-9/FAILED_0.json"])  # failed children: always the full record
    assert (failed["Status"], failed["Error"], failed["Cause"]) == ("TIMED_OUT", "States.Timeout", "slow")
    lines = (
        export(transformation="COMPACT", output_type="JSONL")["p/run-9/SUCCEEDED_0.json"]
        .decode()
        .splitlines()
    )
    assert [json.loads(line) for line in lines] == [[1, 2], {"a": 1}]


def test_writer_config_is_validated_at_load():
    from isrflow.local.asl import DefinitionError

    bad = copy.deepcopy(WRITER)
    bad["WriterConfig"] = {"Transformation": "SQUASH", "OutputType": "CSV"}
    with pytest.raises(DefinitionError, match="Transformation") as exc:
        _machine({"ResultWriter": bad}, PASS_CHILD)
    assert "OutputType" in str(exc.value)
    inline = {
        "Type": "Map",
        "End": True,
        "ResultWriter": WRITER,
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
    }
    with pytest.raises(DefinitionError, match="only allowed in a DISTRIBUTED Map"):
        StateMachine.from_json({"StartAt": "M", "States": {"M": inline}}, "Inline")


# --------------------------------------------------------------------------- the project's state machines


def _substitutions(path: Path) -> dict[str, str]:
    import re

    names = set(re.findall(r"\$\{([A-Za-z0-9]+)\}", path.read_text()))
    subs = {n: f"arn:aws:lambda:us-east-1:123456789012:function:{n.removesuffix('Arn')}" for n in names}
    subs.update(
        DataBucketName=BUCKET,
        CombineSubnetIds="subnet-1",
        CombineSecurityGroupIds="sg-1",
        CombineAssignPublicIp="DISABLED",
    )
    return subs


def _load(name: str, *, without_result_writers: bool = False) -> StateMachine:
    path = ROOT / "statemachines" / f"{name}.asl.json"
    definition = json.loads(path.read_text())
    n_writers = 0
    for state in definition["States"].values():
        if state["Type"] == "Map" and "ResultWriter" in state:
            n_writers += 1
            if without_result_writers:  # the definition as it was before ResultWriters were added
                del state["ResultWriter"]
    assert n_writers >= 1
    machine_name = {"process_visit": "ProcessVisit", "build_calibration": "BuildCalibration"}[name]
    return StateMachine.from_json(definition, machine_name, substitutions=_substitutions(path))


def _visit_functions(n_clusters: int) -> dict:
    def plan(event, context):
        execution = event["execution_id"]
        return {
            "execution_id": execution,
            "clusters": n_clusters,
            "quanta": n_clusters,
            "manifest_key": "items.json",
            "manifest_uri": f"s3://{BUCKET}/items.json",
            "results_prefix": f"s3://{BUCKET}/results/x/",
            "output_run": "HSC/runs/big",
            "isr_config": {},
            "previews": False,
            "max_concurrency": 0,
        }

    def isr(event, context):  # the real answer's shape: a child's output is about 80 bytes
        c = event["cluster"]
        return ClusterSummary(cluster_id=c["cluster_id"], succeeded=len(c["quanta"]), failed=0).model_dump(
            mode="json"
        )

    def summarize(event, context):
        return {"summarized": True, "quanta": event["plan"]["quanta"]}

    return {"PlanFunction": plan, "IsrFunction": isr, "SummarizeFunction": summarize}


def test_process_visit_with_more_clusters_than_the_old_definition_could_aggregate():
    n = 3400  # LSSTCam clusters of one quantum: the old definition broke at about 3,300
    clusters = [{"cluster_id": f"LSSTCam-{i % 189}-{2026112000000 + i}", "quanta": [i]} for i in range(n)]
    functions = _visit_functions(n)
    old, _ = _run(
        _load("process_visit", without_result_writers=True), clusters, functions=functions, name="big-old"
    )
    assert (old.status, old.error) == ("FAILED", "States.DataLimitExceeded")  # what AWS would do
    ex, s3 = _run(_load("process_visit"), clusters, functions=functions, name="big-new")
    assert ex.status == "SUCCEEDED", ex.cause
    assert ex.output == {"summarized": True, "quanta": n}
    per_child = len(json.dumps([c.output for c in ex.children()], separators=(",", ":"))) / n
    assert 75 <= per_child <= 85
    (manifest_key,) = [k for k in s3.objects if k.endswith("/manifest.json")]
    assert manifest_key.startswith("map-results/ProcessVisit/big-new/ProcessClusters/")
    groups = read_manifest_results(s3.read, BUCKET, manifest_key)
    assert len(groups["SUCCEEDED"]) == n and not groups["FAILED"]
    assert {json.loads(r["Output"])["summary"]["cluster_id"] for r in groups["SUCCEEDED"]} == {
        c["cluster_id"] for c in clusters
    }


def _calib_functions(n_clusters: int, n_masters: int) -> dict:
    def calib_plan(event, context):
        if event.get("action", "plan") == "plan":
            return {
                "execution_id": event["execution_id"],
                "clusters": n_clusters,
                "manifest_key": "items.json",
                "isr_results_prefix": f"s3://{BUCKET}/results/x/inputs/",
                "output_run": "Generic/calib/bias",
                "isr_config": {},
                "max_concurrency": 0,
                "calib_type": "bias",
                "certify_requested": False,
                "masters": n_masters,
                "keep_intermediates": False,
            }
        if event["action"] == "delete_intermediates":
            return {"deleted": 3 * n_clusters, "kept_failed": 0}
        assert event["action"] == "prepare_combine"
        return {"masters": n_masters, "manifest_key": "masters.json"}

    def isr(event, context):
        return {"cluster_id": event["cluster"]["cluster_id"], "inputs": 3, "succeeded": 3, "failed": 0}

    def combine(event, context):
        key = event["request_uri"].rsplit("/", 1)[-1].removesuffix(".json")
        return {"key": key, "status": "succeeded", "route": "lambda", "duration_s": 1.0}

    def summarize(event, context):
        return {"summarized": True, "masters": n_masters}

    def action(name: str):  # one function per action: the same answers as the action's branch above
        return lambda event, context: calib_plan({**event, "action": name}, context)

    return {
        "CalibPlanFunction": calib_plan,
        "PrepareCombineFunction": action("prepare_combine"),
        "DeleteIntermediatesFunction": action("delete_intermediates"),
        "IsrFunction": isr,
        "CombineFunction": combine,
        "SummarizeFunction": summarize,
        "SummarizeCalibFunction": summarize,
    }


def _masters(n: int) -> list[dict]:
    prefix = f"s3://{BUCKET}/manifests/isrflow-BuildCalibration-big"
    return [
        {
            "key": f"LSSTCam-{d}-r{i}",
            "instrument": "LSSTCam",
            "detector": d,
            "physical_filter": f"r{i}",
            "route": "lambda",
            "request_uri": f"{prefix}/combine/LSSTCam-{d}-r{i}.json",
            "result_uri": f"{prefix.replace('manifests', 'results')}/masters/LSSTCam-{d}-r{i}.json",
        }
        for i in range(n // 189 + 1)
        for d in range(189)
    ][:n]


def test_build_calibration_with_more_masters_than_the_old_definition_could_aggregate():
    n_clusters, n_masters = 600, 700
    clusters = [{"cluster_id": f"LSSTCam-{i}", "inputs": [i]} for i in range(n_clusters)]
    masters = _masters(n_masters)
    functions = _calib_functions(n_clusters, n_masters)

    def run(machine, name):
        s3 = FakeS3({"masters.json": json.dumps(masters).encode()})
        return _run(machine, clusters, s3, functions=functions, name=name)

    old, _ = run(_load("build_calibration", without_result_writers=True), "bias-old")
    assert (old.status, old.error) == ("FAILED", "States.DataLimitExceeded")
    assert [r.state_name for r in old.map_runs] == [
        "IsrInputs",
        "CombineMasters",
    ]  # the masters' map broke it
    ex, s3 = run(_load("build_calibration"), "bias-new")
    assert ex.status == "SUCCEEDED", ex.cause
    manifests = sorted(k for k in s3.objects if k.endswith("/manifest.json"))
    assert [k.split("/")[3] for k in manifests] == ["CombineMasters", "IsrInputs"]
    assert all(k.startswith("map-results/BuildCalibration/bias-new/") for k in manifests)
    combined = read_manifest_results(s3.read, BUCKET, manifests[0])["SUCCEEDED"]
    assert len(combined) == n_masters
    assert {json.loads(r["Output"])["item"]["key"] for r in combined} == {m["key"] for m in masters}
    isr = read_manifest_results(s3.read, BUCKET, manifests[1])["SUCCEEDED"]
    assert len(isr) == n_clusters
