"""Local ECS: ``arn:aws:states:::ecs:runTask.sync`` as a subprocess.

A Fargate task of the template (``AWS::ECS::TaskDefinition``) runs its container's
``EntryPoint`` + ``Command`` as a child process of this machine: the image's Python
(``/var/lang/bin/python3`` and the like) is this interpreter, and paths under the Lambda base
image's task root (``/var/task/``) are the directory of the image's Dockerfile (the task
definition's ``Metadata.Dockerfile``). The environment is the container's, then the local
services' (datastore, queue, registry), then the ``ContainerOverrides`` ones. The process's
exit code is the container's essential container's.

As the ``.sync`` integration does on AWS:

- exit code 0: the Task's result is the described task (DescribeTasks, PascalCase keys):
  ``Containers[0].ExitCode``, ``LastStatus``, ``StopCode``, ``StoppedReason``, ...;
- a non-zero exit code FAILS the Task with ``States.TaskFailed``, whose ``Cause`` is that
  described task as JSON text (so a Choice on ``$.Containers[0].ExitCode`` after the state only
  ever sees 0: read the code from the Cause with ``States.StringToJson``);
- the state's ``TimeoutSeconds`` elapsing stops the task (``StopCode`` UserInitiated) and fails
  the Task with ``States.Timeout``.

As on AWS, a RunTask whose ``Overrides`` exceed 8192 characters is refused
(``ECS.InvalidParameterException``), as are launch types other than FARGATE. Output goes to
``<repo>/logs/tasks/<task id>.log``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from isrflow.local.asl import TaskContext, TaskFailure
from isrflow.local.processes import die_with_parent
from isrflow.local.sam_template import LocalApp, LocalTaskDefinition

#: ECS's limit on the size of a RunTask's overrides (characters of their JSON).
OVERRIDES_LIMIT = 8192
TASK_ROOT = "/var/task/"
_REGION, _ACCOUNT = "local", "000000000000"


def _invalid(message: str) -> TaskFailure:
    return TaskFailure("ECS.InvalidParameterException", json.dumps({"errorMessage": message}))


def wait_for_exit(proc: subprocess.Popen, timeout_s: float | None) -> int:
    """The process's exit code; ``subprocess.TimeoutExpired`` after ``timeout_s`` seconds."""
    return proc.wait(timeout=timeout_s)


def task_failed(task: dict) -> TaskFailure:
    """``States.TaskFailed`` with the described task as its JSON Cause (a non-zero exit)."""
    return TaskFailure("States.TaskFailed", json.dumps(task, separators=(",", ":")))


class LocalTasks:
    """Runs the template's Fargate tasks as subprocesses (``run_task_sync`` is the integration)."""

    def __init__(
        self,
        app: LocalApp,
        environment: dict[str, str],
        log_dir: Path,
        python: str = sys.executable,
        wait: Callable[[subprocess.Popen, float | None], int] = wait_for_exit,
    ):
        self.app, self.environment, self.log_dir, self.python = app, environment, Path(log_dir), python
        self.wait = wait  # tests inject one that times out at once instead of waiting in real time

    def task_definition(self, ref: str) -> LocalTaskDefinition:
        for td in self.app.task_definitions.values():
            family = td.family or td.logical_id
            if ref in (td.logical_id, td.arn, family) or ref.split("/")[-1].split(":")[0] == family:
                return td
        raise _invalid(f"TaskDefinition not found: {ref}")

    def _argv(self, td: LocalTaskDefinition, words: list[str]) -> list[str]:
        base = td.dockerfile.parent if td.dockerfile is not None else None
        argv = []
        for i, word in enumerate(words):
            if i == 0 and Path(word).name.startswith("python"):
                argv.append(self.python)
            elif word.startswith(TASK_ROOT) and word[len(TASK_ROOT) :] in td.task_root_files:
                argv.append(str(td.task_root_files[word[len(TASK_ROOT) :]]))
            elif word.startswith(TASK_ROOT) and base is not None:
                argv.append(str(base / word[len(TASK_ROOT) :]))
            else:
                argv.append(word)
        return argv

    def run_task_sync(self, parameters: Any, context: TaskContext) -> dict:
        if not isinstance(parameters, dict) or "TaskDefinition" not in parameters:
            raise _invalid("RunTask needs a TaskDefinition")
        launch = parameters.get("LaunchType", "FARGATE")
        if launch != "FARGATE":
            raise _invalid(f"LaunchType {launch!r}: the local runtime runs FARGATE tasks only")
        overrides = parameters.get("Overrides") or {}
        if len(json.dumps(overrides, separators=(",", ":"))) > OVERRIDES_LIMIT:
            raise _invalid(f"Container Overrides length must be at most {OVERRIDES_LIMIT}")
        td = self.task_definition(str(parameters["TaskDefinition"]))
        if not td.containers:
            raise _invalid(f"task definition {td.logical_id} has no container")
        container = td.containers[0]
        override: dict[str, Any] = next(
            (o for o in overrides.get("ContainerOverrides") or [] if o.get("Name") == container.name), {}
        )
        env = dict(os.environ) | container.environment | self.environment
        env.update({str(e["Name"]): str(e["Value"]) for e in override.get("Environment") or []})
        words = container.entry_point + (override.get("Command") or container.command)
        if not words:
            raise _invalid(
                f"task definition {td.logical_id}: container {container.name} has no EntryPoint or Command"
            )
        cluster = str(parameters.get("Cluster") or "default").split("/")[-1]
        task_id = uuid.uuid4().hex
        task_arn = f"arn:aws:ecs:{_REGION}:{_ACCOUNT}:task/{cluster}/{task_id}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{task_id}.log"
        created = int(time.time() * 1000)
        timeout = context.timeout_seconds
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                self._argv(td, words),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=partial(die_with_parent, os.getpid()),
            )
            timed_out = False
            try:
                code = self.wait(proc, timeout)
                stop_code, reason = "EssentialContainerExited", "Essential container in task exited"
            except subprocess.TimeoutExpired:  # the state's TimeoutSeconds: AWS stops the task
                proc.kill()
                code = proc.wait()
                timed_out = True
                stop_code, reason = "UserInitiated", "Task stopped by Step Functions (state timed out)"
        stopped = int(time.time() * 1000)
        task = {
            "Attachments": [],
            "AvailabilityZone": _REGION,
            "ClusterArn": f"arn:aws:ecs:{_REGION}:{_ACCOUNT}:cluster/{cluster}",
            "Containers": [
                {
                    "ContainerArn": f"arn:aws:ecs:{_REGION}:{_ACCOUNT}:container/{cluster}/{task_id}/{container.name}",
                    "ExitCode": code,
                    "LastStatus": "STOPPED",
                    "Name": container.name,
                    "TaskArn": task_arn,
                    "NetworkBindings": [],
                    "NetworkInterfaces": [],
                }
            ],
            "Cpu": td.cpu,
            "Memory": td.memory,
            "CreatedAt": created,
            "StartedAt": created,
            "StoppedAt": stopped,
            "DesiredStatus": "STOPPED",
            "LastStatus": "STOPPED",
            "LaunchType": "FARGATE",
            "Group": f"family:{td.family or td.logical_id}",
            "Overrides": overrides,
            "PlatformVersion": "1.4.0",
            "StopCode": stop_code,
            "StoppedReason": reason,
            "TaskArn": task_arn,
            "TaskDefinitionArn": td.arn,
            "Version": 3,
        }
        if timed_out:
            raise TaskFailure(
                "States.Timeout",
                f"The task ran longer than the state's TimeoutSeconds ({timeout} s) "
                f"and was stopped: {task_arn}",
            )
        if code != 0:
            raise task_failed(task)
        return task
