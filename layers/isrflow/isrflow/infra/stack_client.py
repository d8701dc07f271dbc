"""Starting and following executions of the deployed stack (``--aws``), with boto3.

The state machine ARN comes from the stack's outputs (``<LogicalId>Arn``); the execution is
followed with DescribeExecution until it stops.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

from isrflow.model.errors import IsrflowError


class StackError(IsrflowError):
    """The stack or one of its outputs cannot be found."""


def stack_output(stack: str, key: str, client=None) -> str:
    import boto3

    cfn = client or boto3.client("cloudformation")
    try:
        outputs = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    except Exception as exc:
        raise StackError(f"stack {stack!r}: {exc}") from None
    for out in outputs:
        if out["OutputKey"] == key:
            return out["OutputValue"]
    raise StackError(f"stack {stack!r} has no output {key!r}")


def run_on_aws(
    stack: str,
    state_machine: str,
    payload: dict,
    *,
    name: str | None = None,
    sfn=None,
    cfn=None,
    poll_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Start ``state_machine`` (its logical id) of ``stack`` with ``payload`` and wait for the end."""
    import boto3

    sfn = sfn or boto3.client("stepfunctions")
    arn = stack_output(stack, f"{state_machine}Arn", cfn)
    started = sfn.start_execution(
        stateMachineArn=arn, name=name or uuid.uuid4().hex, input=json.dumps(payload)
    )
    while True:
        desc = sfn.describe_execution(executionArn=started["executionArn"])
        if desc["status"] != "RUNNING":
            return {
                "execution": started["executionArn"],
                "status": desc["status"],
                "output": json.loads(desc["output"]) if desc.get("output") else None,
                "error": desc.get("error"),
                "cause": desc.get("cause"),
            }
        sleep(poll_s)


def start_and_follow(
    state_machine_arn: str,
    payload: dict,
    name: str,
    *,
    sfn=None,
    poll_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Start an execution of a state machine (by ARN) and wait for its end; same answer as :func:`run_on_aws`."""
    import boto3

    sfn = sfn or boto3.client("stepfunctions", region_name=state_machine_arn.split(":")[3])
    started = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))
    while True:
        desc = sfn.describe_execution(executionArn=started["executionArn"])
        if desc["status"] != "RUNNING":
            return {
                "execution": started["executionArn"],
                "status": desc["status"],
                "output": json.loads(desc["output"]) if desc.get("output") else None,
                "error": desc.get("error"),
                "cause": desc.get("cause"),
            }
        if progress is not None:
            progress(f"{name}: {desc['status']}")
        sleep(poll_s)
