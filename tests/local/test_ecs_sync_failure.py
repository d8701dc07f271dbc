"""``ecs:runTask.sync`` failure semantics, locally as on AWS, through BuildCalibration's states.

On AWS a ``.sync`` task whose essential container exits non-zero FAILS the state with
``States.TaskFailed``; the error's Cause is the described task as JSON (``Containers[].ExitCode``,
``StopCode``, ``StoppedReason``). A state's ``TimeoutSeconds`` stops the task and fails the state
with ``States.Timeout``. So the combine Map child of ``statemachines/build_calibration.asl.json``
must read the exit code from the Cause in its Catch path: a Choice after the Task only ever sees
exit code 0.

Here the real CombineMasters Map state (its ItemProcessor, Catch path, ResultWriter) runs on the
local interpreter with the local subprocess "Fargate" (:class:`isrflow.local.tasks.LocalTasks`)
and the real summarize handler recording failed masters in a temporary datastore.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest

from isrflow.local.asl import (
    ECS_RUN_TASK_SYNC,
    FakeClock,
    Interpreter,
    LocalIntegrations,
    StateMachine,
    TaskFailure,
)
from isrflow.local.asl.integrations import TaskContext
from isrflow.local.sam_template import load_app
from isrflow.local.tasks import LocalTasks
from isrflow.model.messages import MasterResult

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "statemachines" / "build_calibration.asl.json"
BUCKET = "isrflow-data-123456789012"

# The combine container stand-in: exits with its master's detector number (0 = success).
TASK_TEMPLATE = """
Resources:
  CombineTask:
    Type: AWS::ECS::TaskDefinition
    Properties:
      Family: combine
      Cpu: "1024"
      Memory: "2048"
      ContainerDefinitions:
        - Name: combine
          EntryPoint: ["/var/lang/bin/python3", "-c"]
          Command: ["import json, os, sys; sys.exit(json.load(open(os.environ['ISRFLOW_COMBINE_REQUEST']))['detector'])"]
"""


def _summarize_handler():
    spec = importlib.util.spec_from_file_location(
        "summarize_app", ROOT / "functions" / "summarize" / "app.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.record_combine_failure_handler


def _combine_masters_machine() -> StateMachine:
    """BuildCalibration's CombineMasters state, alone (End instead of Next)."""
    text = ASL.read_text()
    subs = {
        n: f"arn:aws:lambda:us-east-1:123456789012:function:{n.removesuffix('Arn')}"
        for n in set(re.findall(r"\$\{([A-Za-z0-9]+)\}", text))
    }
    subs.update(
        DataBucketName=BUCKET,
        CombineClusterArn="arn:aws:ecs:local:000000000000:cluster/combine",
        CombineTaskDefinitionArn="CombineTask",
        CombineSubnetIds="subnet-1",
        CombineSecurityGroupIds="sg-1",
        CombineAssignPublicIp="DISABLED",
    )
    state = json.loads(text)["States"]["CombineMasters"]
    state.pop("Next")
    state["End"] = True
    return StateMachine.from_json(
        {"StartAt": "CombineMasters", "States": {"CombineMasters": state}},
        "BuildCalibration",
        substitutions=subs,
    )


def _master(tmp_path: Path, detector: int) -> dict:
    key = f"Generic-{detector}"
    request_uri, result_uri = (
        str(tmp_path / "requests" / f"{key}.json"),
        str(tmp_path / "results" / f"{key}.json"),
    )
    Path(request_uri).parent.mkdir(parents=True, exist_ok=True)
    Path(request_uri).write_text(
        json.dumps(
            {
                "execution_id": "e",
                "key": key,
                "calib_type": "dark",
                "instrument": "Generic",
                "detector": detector,
                "detector_name": f"CCD{detector}",
                "inputs": [{"uri": "x", "dataset_id": "00000000-0000-0000-0000-000000000001"}],
                "mask_planes": [],
                "output_run": "a/b",
                "data_id": {},
                "dataset_id": "00000000-0000-0000-0000-000000000002",
                "output_uri": "y",
                "result_uri": result_uri,
                "route": "fargate",
            }
        )
    )
    return {
        "key": key,
        "instrument": "Generic",
        "detector": detector,
        "route": "fargate",
        "request_uri": request_uri,
        "result_uri": result_uri,
    }


def _run(tmp_path: Path, detectors: list[int], **task_options):
    (tmp_path / "template.yaml").write_text(TASK_TEMPLATE)
    tasks = LocalTasks(load_app(tmp_path / "template.yaml"), {}, tmp_path / "logs", **task_options)
    integrations = LocalIntegrations({"RecordCombineFailureFunction": _summarize_handler()})
    integrations.register_service(ECS_RUN_TASK_SYNC, tasks.run_task_sync)
    objects = {"masters.json": json.dumps([_master(tmp_path, d) for d in detectors]).encode()}
    interp = Interpreter(
        integrations,
        clock=FakeClock(),
        item_reader=lambda b, k: objects[k],
        result_writer=lambda b, k, body: objects.__setitem__(k, body),
    )
    ex = interp.start_execution(
        _combine_masters_machine(),
        {
            "prepared": {"result": {"manifest_key": "masters.json"}},
            "plan": {"result": {"max_concurrency": 2}},
        },
        name="dark",
    )
    return ex, objects


def _child(ex, detector: int):
    return next(c for c in ex.children() if c.input["item"]["detector"] == detector)


def _entered(child) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in child.history if "stateEnteredEventDetails" in e]


def _result(tmp_path: Path, detector: int) -> MasterResult | None:
    path = tmp_path / "results" / f"Generic-{detector}.json"
    return MasterResult.model_validate_json(path.read_text()) if path.exists() else None


def test_a_task_exiting_3_fails_the_state_and_the_master_is_recorded_with_exit_code_3(tmp_path):
    ex, objects = _run(tmp_path, [0, 3])
    assert ex.status == "SUCCEEDED", ex.cause  # the failure is the master's, recorded; the map goes on
    failed = _child(ex, 3)
    # the .sync state FAILED with States.TaskFailed and the described task as its Cause
    (event,) = [e for e in failed.history if e["type"] == "TaskFailed"]
    details = event["taskFailedEventDetails"]
    assert (details["resourceType"], details["resource"], details["error"]) == (
        "ecs",
        "runTask.sync",
        "States.TaskFailed",
    )
    task = json.loads(details["cause"])
    assert task["Containers"][0]["ExitCode"] == 3 and task["Containers"][0]["Name"] == "combine"
    assert (task["StopCode"], task["LastStatus"]) == ("EssentialContainerExited", "STOPPED")
    assert _entered(failed) == [
        "Route",
        "CombineOnFargate",
        "FargateTaskFailed",
        "ReadStoppedTask",
        "HasExitCode",
        "ReadExitCode",
        "RecordCombineFailure",
    ]
    recorded = _result(tmp_path, 3)
    assert (recorded.status, recorded.exit_code, recorded.route, recorded.calib_type) == (
        "failed",
        3,
        "fargate",
        "dark",
    )
    assert recorded.error == "FargateTaskFailed: exit code 3; Essential container in task exited"
    # exit code 0: the task's result, straight to Combined; nothing recorded as failed
    ok = _child(ex, 0)
    assert _entered(ok) == ["Route", "CombineOnFargate", "Combined"] and _result(tmp_path, 0) is None
    # both children's results were exported by the ResultWriter
    manifest = json.loads(next(v for k, v in objects.items() if k.endswith("/manifest.json")))
    (succeeded,) = manifest["ResultFiles"]["SUCCEEDED"]
    assert len(json.loads(objects[succeeded["Key"]])) == 2


def _times_out(proc: subprocess.Popen, timeout_s: float | None) -> int:
    """Stands in for a task still running when the state's TimeoutSeconds elapses."""
    assert timeout_s == 21600  # the CombineOnFargate state's TimeoutSeconds reaches the task
    raise subprocess.TimeoutExpired(proc.args, timeout_s)


def test_a_task_that_times_out_fails_the_state_with_states_timeout_and_is_stopped(tmp_path):
    ex, _ = _run(tmp_path, [0], wait=_times_out)
    assert ex.status == "SUCCEEDED", ex.cause
    child = _child(ex, 0)
    (event,) = [e for e in child.history if e["type"] == "TaskTimedOut"]
    assert event["taskTimedOutEventDetails"]["error"] == "States.Timeout"
    assert _entered(child) == ["Route", "CombineOnFargate", "FargateTaskFailed", "RecordCombineFailure"]
    recorded = _result(tmp_path, 0)
    assert recorded.status == "failed" and recorded.exit_code is None
    assert recorded.error.startswith(
        "States.Timeout: The task ran longer than the state's TimeoutSeconds (21600 s)"
    )


def test_local_fargate_raises_what_the_sync_integration_raises(tmp_path):
    (tmp_path / "template.yaml").write_text(TASK_TEMPLATE)
    tasks = LocalTasks(load_app(tmp_path / "template.yaml"), {}, tmp_path / "logs")
    context = TaskContext(
        execution_arn="arn:x", execution_name="x", state_machine_arn="arn:y", state_name="S"
    )
    master = _master(tmp_path, 3)
    params = {
        "TaskDefinition": "CombineTask",
        "LaunchType": "FARGATE",
        "Overrides": {
            "ContainerOverrides": [
                {
                    "Name": "combine",
                    "Environment": [{"Name": "ISRFLOW_COMBINE_REQUEST", "Value": master["request_uri"]}],
                }
            ]
        },
    }
    with pytest.raises(TaskFailure) as exc:
        tasks.run_task_sync(params, context)
    assert exc.value.error == "States.TaskFailed"
    task = json.loads(exc.value.cause)
    assert (
        task["Containers"][0]["ExitCode"] == 3
        and task["StoppedReason"] == "Essential container in task exited"
    )
    assert task["Overrides"] == params["Overrides"] and task["TaskArn"].startswith("arn:aws:ecs:")
