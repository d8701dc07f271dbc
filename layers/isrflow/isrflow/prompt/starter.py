"""Start ProcessVisit for an upload, at most once per uploaded object version.

The execution name is a hash of ``bucket/key#ETag`` (``prompt-`` + 64 hex digits, 71
characters, under the 80-character limit), so every delivery of the same event, and every
re-delivery after a failure, asks for the same execution. Step Functions (Standard) keeps
names unique per state machine for 90 days; a second StartExecution with that name either
fails with ``ExecutionAlreadyExists`` (input differs, or the first has ended) or succeeds
returning the running execution (same input, still running). The starter first asks
DescribeExecution, and treats both outcomes of a racing second start as "already started".

The client is boto3's ``stepfunctions``: AWS in the cloud; locally the ``isrflow local serve``
endpoint, chosen the standard way (``AWS_ENDPOINT_URL_STEPFUNCTIONS``).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Protocol

from isrflow.model.messages import PromptExecution

NAME_PREFIX = "prompt-"


def execution_name(bucket: str, key: str, etag: str | None) -> str:
    """The execution name of one uploaded object version (71 characters)."""
    digest = hashlib.sha256(f"{bucket}/{key}#{(etag or '').strip(chr(34))}".encode()).hexdigest()
    return NAME_PREFIX + digest


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN an execution of ``state_machine_arn`` named ``name`` gets."""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + name


class ExecutionStarter(Protocol):
    def start(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> PromptExecution: ...


_CLIENTS: dict[tuple[str, str], Any] = {}


def stepfunctions_client() -> Any:
    """A boto3 Step Functions client for the current environment (cached per endpoint and region)."""
    from isrflow.infra.aws_clients import aws_client, endpoint_override

    key = (
        endpoint_override() or os.environ.get("AWS_ENDPOINT_URL_STEPFUNCTIONS", ""),
        os.environ.get("AWS_DEFAULT_REGION", ""),
    )
    client = _CLIENTS.get(key)
    if client is None:
        client = aws_client("stepfunctions", endpoint_url=key[0] or None)
        _CLIENTS[key] = client
    return client


class StepFunctionsStarter:
    """StartExecution through boto3, idempotent by execution name."""

    def __init__(self, client: Any = None):
        self._client = client

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else stepfunctions_client()

    def start(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> PromptExecution:
        client = self.client
        arn = execution_arn(state_machine_arn, name)
        found = PromptExecution(
            state_machine_arn=state_machine_arn, name=name, execution_arn=arn, outcome="already_started"
        )
        try:
            client.describe_execution(executionArn=arn)
            return found
        except client.exceptions.ExecutionDoesNotExist:
            pass
        try:
            reply = client.start_execution(
                stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload, sort_keys=True)
            )
        except client.exceptions.ExecutionAlreadyExists:
            return found
        return PromptExecution(
            state_machine_arn=state_machine_arn,
            name=name,
            execution_arn=reply["executionArn"],
            outcome="started",
        )


__all__ = [
    "ExecutionStarter",
    "StepFunctionsStarter",
    "execution_arn",
    "execution_name",
    "stepfunctions_client",
]
