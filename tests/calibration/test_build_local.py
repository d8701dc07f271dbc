"""BuildCalibration on the local runtime: the Fargate path (subprocess tasks), a task exiting
non-zero, the described-task shape, the 8 KiB override limit, the CLI with --certify, rejected
certifications, existing outputs."""

from __future__ import annotations

import json

import pytest
from calib_helpers import CALIB, DETECTORS, build_payload
from click.testing import CliRunner

from isrflow.build_calibration.summary import record_combine_failure
from isrflow.cli import cli
from isrflow.io.storage import storage_for
from isrflow.local.asl import TaskContext, TaskFailure
from isrflow.local.sam_template import load_app
from isrflow.local.tasks import LocalTasks
from isrflow.model.messages import CombineFailureEvent, MasterResult


def test_fargate_task_exiting_non_zero_fails_its_detector_with_the_reason(built_night):
    payload = build_payload(
        "dark",
        "Generic/calib/dark-tiny-budget",
        route="fargate",
        combine_memory_mb=0.01,
        max_failure_fraction=1.0,
    )
    execution = built_night.run(payload, name="dark-tiny-budget")
    assert execution.status == "SUCCEEDED", execution.cause
    summary = execution.output
    assert (summary["masters"], summary["failed"], summary["routes"]) == (4, 4, {"lambda": 0, "fargate": 4})
    for failure in summary["failures"]:
        assert failure["exit_code"] == 1 and failure["route"] == "fargate"
        assert failure["error"].startswith("CombineBudgetError: ") and "exit code 1" in failure["error"]
    # as on AWS the .sync state failed (States.TaskFailed); the Catch read the exit code from the Cause
    fargate_children = 0
    for child in execution.children():
        entered = [
            e["stateEnteredEventDetails"]["name"] for e in child.history if "stateEnteredEventDetails" in e
        ]
        if "CombineOnFargate" in entered:
            fargate_children += 1
            assert entered[-5:] == [
                "FargateTaskFailed",
                "ReadStoppedTask",
                "HasExitCode",
                "ReadExitCode",
                "RecordCombineFailure",
            ]
    assert fargate_children == 4
    # the Distributed Maps' ResultWriter exported the children's results into the repository's datastore
    (manifest,) = built_night.root.glob("map-results/*/dark-tiny-budget/CombineMasters/*/manifest.json")
    (succeeded,) = json.loads(manifest.read_text())["ResultFiles"]["SUCCEEDED"]
    assert len(json.loads((built_night.root / succeeded["Key"]).read_text())) == 4
    assert not built_night.registry.query_datasets("dark", ["Generic/calib/dark-tiny-budget"])


def test_too_many_failed_masters_fail_the_execution_and_certify_nothing(built_night):
    payload = build_payload(
        "dark",
        "Generic/calib/dark-strict",
        combine_memory_mb=0.01,
        certify={"collection": "Generic/calib/never"},
    )
    built_night.registry.register_collection("Generic/calib/never", "CALIBRATION")
    execution = built_night.run(payload, name="dark-strict")
    assert execution.status == "FAILED" and execution.error == "TooManyFailuresError"
    assert "4 of 4 dark masters failed" in json.loads(execution.cause)["errorMessage"]
    assert built_night.registry.query_datasets("dark", ["Generic/calib/never"]) == []


def test_overlapping_certification_fails_the_execution(built_night):
    execution = built_night.run(
        build_payload("bias", "Generic/calib/bias-again", certify={"collection": CALIB}), name="bias-overlap"
    )
    assert execution.status == "FAILED" and execution.error == "RejectedMessageError"
    assert "overlap" in json.loads(execution.cause)["errorMessage"].lower()


def test_existing_masters_need_mode_replace(built_night):
    again = built_night.run(
        build_payload(
            "defects", "Generic/calib/defects", input_collections=["Generic/calib/dark", "Generic/calib/flat"]
        ),
        name="defects-again",
    )
    assert again.status == "FAILED" and again.error == "OutputExistsError"
    replaced = built_night.run(
        build_payload(
            "defects",
            "Generic/calib/defects",
            mode="replace",
            input_collections=["Generic/calib/dark", "Generic/calib/flat"],
        ),
        name="defects-replace",
    )
    assert replaced.status == "SUCCEEDED" and replaced.output["succeeded"] == 4
    assert len(built_night.registry.query_datasets("defects", ["Generic/calib/defects"])) == 4


def test_cli_build_with_certify_returns_once_visible(built_night):
    result = CliRunner().invoke(
        cli,
        [
            "calib",
            "build",
            "bias",
            "--repo",
            str(built_night.root),
            "--where",
            "detector IN (0..1)",
            "--output-run",
            "Generic/calib/cli-bias",
            "--certify",
            "--collection",
            "Generic/calib/cli",
            "--begin",
            "2026-11-19",
            "--end",
            "2026-11-21",
            "--workers",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["status"] == "SUCCEEDED" and report["output"]["certified"] == 2
    certified = built_night.registry.query_datasets("bias", ["Generic/calib/cli"])
    assert sorted(r.data_id["detector"] for r in certified) == [0, 1]
    assert {r.validity.begin.isoformat() for r in certified} == {"2026-11-19T00:00:00+00:00"}
    bad = CliRunner().invoke(
        cli,
        [
            "calib",
            "build",
            "dark",
            "--repo",
            str(built_night.root),
            "--output-run",
            "x/y",
            "--begin",
            "2026-01-01",
        ],
    )
    assert bad.exit_code != 0 and "--certify" in bad.output


# --- the local ECS service -----------------------------------------------------------------------

TASK_TEMPLATE = """
Resources:
  Cluster:
    Type: AWS::ECS::Cluster
  Task:
    Type: AWS::ECS::TaskDefinition
    Properties:
      Family: demo-task
      Cpu: "1024"
      Memory: "2048"
      ContainerDefinitions:
        - Name: main
          EntryPoint: ["/var/lang/bin/python3", "-c"]
          Command: ["import os, sys; print(os.environ['GREETING']); sys.exit(int(os.environ['CODE']))"]
          Environment:
            - Name: GREETING
              Value: hello
            - Name: CODE
              Value: "0"
"""


@pytest.fixture
def tasks(tmp_path):
    (tmp_path / "template.yaml").write_text(TASK_TEMPLATE)
    return LocalTasks(load_app(tmp_path / "template.yaml"), {"EXTRA": "1"}, tmp_path / "logs")


def _context(timeout=None):
    return TaskContext(
        execution_arn="arn:x",
        execution_name="x",
        state_machine_arn="arn:y",
        state_name="S",
        timeout_seconds=timeout,
    )


def test_run_task_sync_fails_with_the_described_task_when_the_container_exits_non_zero(tasks, tmp_path):
    params = {
        "Cluster": "arn:aws:ecs:local:000000000000:cluster/Cluster",
        "TaskDefinition": "Task",
        "LaunchType": "FARGATE",
        "Overrides": {
            "ContainerOverrides": [{"Name": "main", "Environment": [{"Name": "CODE", "Value": "3"}]}]
        },
    }
    with pytest.raises(TaskFailure) as exc:  # as .sync does on AWS: States.TaskFailed, Cause = the task
        tasks.run_task_sync(params, _context())
    assert exc.value.error == "States.TaskFailed"
    task = json.loads(exc.value.cause)
    assert task["Containers"][0]["ExitCode"] == 3 and task["Containers"][0]["Name"] == "main"
    assert (task["LastStatus"], task["StopCode"], task["LaunchType"]) == (
        "STOPPED",
        "EssentialContainerExited",
        "FARGATE",
    )
    assert task["TaskArn"].startswith("arn:aws:ecs:local:000000000000:task/Cluster/")
    assert task["Overrides"] == params["Overrides"] and (task["Cpu"], task["Memory"]) == ("1024", "2048")
    log = next((tmp_path / "logs").glob("*.log")).read_text()
    assert "hello" in log
    ok = tasks.run_task_sync(
        {"TaskDefinition": "arn:aws:ecs:local:000000000000:task-definition/demo-task:7"}, _context()
    )
    assert ok["Containers"][0]["ExitCode"] == 0


def test_run_task_sync_refuses_what_ecs_refuses(tasks):
    big = {"ContainerOverrides": [{"Name": "main", "Environment": [{"Name": "X", "Value": "v" * 8200}]}]}
    with pytest.raises(TaskFailure) as exc:
        tasks.run_task_sync({"TaskDefinition": "Task", "Overrides": big}, _context())
    assert exc.value.error == "ECS.InvalidParameterException" and "8192" in exc.value.cause
    with pytest.raises(TaskFailure, match="not found"):
        tasks.run_task_sync({"TaskDefinition": "nope"}, _context())
    with pytest.raises(TaskFailure, match="FARGATE"):
        tasks.run_task_sync({"TaskDefinition": "Task", "LaunchType": "EC2"}, _context())


def test_a_task_that_died_without_a_result_is_recorded_with_its_exit_code(tmp_path):
    result_uri = str(tmp_path / "results" / "Generic-0.json")
    event = CombineFailureEvent.model_validate(
        {
            "state": {
                "item": {
                    "key": "Generic-0",
                    "instrument": "Generic",
                    "detector": 0,
                    "route": "fargate",
                    "request_uri": str(tmp_path / "request.json"),
                    "result_uri": result_uri,
                },
                "task": {
                    "Containers": [{"ExitCode": 137, "Reason": "OutOfMemoryError: Container killed"}],
                    "StoppedReason": "Essential container in task exited",
                },
            },
        }
    )
    (tmp_path / "request.json").write_text(
        json.dumps(
            {
                "execution_id": "e",
                "key": "Generic-0",
                "calib_type": "dark",
                "instrument": "Generic",
                "detector": 0,
                "detector_name": "CCD0",
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
    answer = record_combine_failure(event)
    result = MasterResult.model_validate_json(storage_for(result_uri).read_bytes(result_uri))
    assert result.status == "failed" and result.exit_code == 137 and result.calib_type == "dark"
    assert (
        result.error
        == (
            "FargateTaskFailed: exit code 137; OutOfMemoryError: Container killed; "
            "Essential container in task exited"
        )
        == answer["error"]
    )


def test_fixture_detectors(built_night):
    assert sorted({r.detectors[0] for r in built_night.manifest.raws}) == DETECTORS
