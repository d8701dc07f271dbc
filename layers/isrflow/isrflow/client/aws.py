"""The AWS backend of :class:`isrflow.Client`: the deployed stack's state machines (boto3).

State machine ARNs come from the stack's outputs (:func:`isrflow.infra.stack_client.stack_output`);
executions are followed with DescribeExecution; their per-detector rows and cost come from
:func:`isrflow.ops.aws_status.aws_status`. Registry reads (datasets, collections, ingest) need a
repository directory configured on the AWS registry (``repo=``), as the CLI's ``--repo`` does.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from isrflow.client.local import LocalBackend
from isrflow.model.errors import ConfigError


class AwsRun:
    """One execution of the deployed stack, followed with DescribeExecution."""

    def __init__(
        self, sfn, execution_arn: str, *, poll_s: float = 5.0, sleep: Callable[[float], None] = time.sleep
    ):
        self.sfn, self.arn, self.poll_s, self.sleep = sfn, execution_arn, poll_s, sleep
        self._desc: dict[str, Any] | None = None

    def describe(self) -> dict:
        if self._desc is None or self._desc.get("status") == "RUNNING":
            self._desc = self.sfn.describe_execution(executionArn=self.arn)
        return self._desc

    @property
    def done(self) -> bool:
        return self.describe()["status"] != "RUNNING"

    def wait(self, timeout: float | None = None, on_poll: Callable[[int], None] | None = None) -> None:
        start = time.monotonic()
        while not self.done:
            if timeout is not None and time.monotonic() - start >= timeout:
                return
            self.sleep(self.poll_s)

    def result(self) -> dict:
        """``{"execution", "status", "output", "error", "cause"}`` as the CLI prints it."""
        desc = self.describe()
        return {
            "execution": self.arn,
            "status": desc["status"],
            "output": json.loads(desc["output"]) if desc.get("output") else None,
            "error": desc.get("error"),
            "cause": desc.get("cause"),
        }


class AwsBackend:
    """The state machines of a deployed CloudFormation stack."""

    kind = "aws"

    def __init__(
        self,
        stack: str = "isrflow",
        *,
        repo: str | Path | None = None,
        region: str | None = None,
        sfn=None,
        cfn=None,
        poll_s: float = 5.0,
    ):
        self.stack, self.region, self.poll_s = stack, region, poll_s
        self.repo = Path(repo) if repo is not None else None
        self._sfn, self._cfn = sfn, cfn

    def _clients(self):
        if self._sfn is None or self._cfn is None:
            import boto3

            self._sfn = self._sfn or boto3.client("stepfunctions", region_name=self.region)
            self._cfn = self._cfn or boto3.client("cloudformation", region_name=self.region)
        return self._sfn, self._cfn

    def sfn_for(self, arn: str):
        """The Step Functions client for an execution ARN: the injected one, else one in the ARN's region."""
        if self._sfn is not None:
            return self._sfn
        import boto3

        return boto3.client(
            "stepfunctions", region_name=arn.split(":")[3] if arn.count(":") > 3 else self.region
        )

    def _local(self) -> LocalBackend:
        if self.repo is None:
            raise ConfigError(
                "registry reads need a repository on the AWS registry: Client.aws(stack=..., repo=DIR)"
            )
        return LocalBackend(self.repo)

    # ---------------------------------------------------------------- data (through the registry)

    def ingest(self, files: Sequence[str | Path], **kwargs):
        return self._local().ingest(files, **kwargs)

    def datasets(self, dataset_type, collections, where) -> list:
        return self._local().datasets(dataset_type, collections, where)

    def collections(self) -> list:
        return self._local().collections()

    def with_registry(self, fn):
        if self.repo is None:
            return None
        return self._local().with_registry(fn)

    # ---------------------------------------------------------------- executions

    def state_machine_arn(self, state_machine: str) -> str:
        """A state machine's ARN: an ARN as is, else the stack's ``<LogicalId>Arn`` output."""
        from isrflow.infra.stack_client import stack_output

        if state_machine.startswith("arn:"):
            return state_machine
        _, cfn = self._clients()
        return stack_output(self.stack, f"{state_machine}Arn", cfn)

    def start(self, state_machine: str, payload: dict, *, name: str | None = None, containers=None) -> AwsRun:
        sfn, _ = self._clients()
        started = sfn.start_execution(
            stateMachineArn=self.state_machine_arn(state_machine),
            name=name or uuid.uuid4().hex,
            input=json.dumps(payload),
        )
        return AwsRun(sfn, started["executionArn"], poll_s=self.poll_s)

    def drain_registry_queue(self) -> dict[str, int]:
        return {}  # the deployed writer drains its queue by itself

    def status(self, execution: str, prices_path=None, progress=None):
        from isrflow.ops.status import execution_status

        return execution_status(
            execution, repo=self.repo, prices_path=prices_path, sfn=self._sfn, progress=progress
        )

    def describe(self, execution: str) -> dict:
        return self.sfn_for(execution).describe_execution(executionArn=execution)


__all__ = ["AwsBackend", "AwsRun"]
