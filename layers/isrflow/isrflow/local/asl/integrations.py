"""Task integrations: how a Task state's ``Resource`` is carried out locally.

The interpreter calls ``integrations.invoke(resource, parameters, context)`` for every Task
attempt, from whichever thread runs that state (Map iterations run on worker threads), and
expects the task's result back, or an exception:

- :class:`~isrflow.local.asl.errors.TaskFailure` ``(error, cause)``: the task failed with
  that ASL error name (what Retry/Catch match on) and cause;
- an exception with string ``error`` (and ``cause``) attributes: used as the error and cause;
- any other exception: the error name is the exception's class name, the cause its text;
- :class:`~isrflow.local.asl.errors.IntegrationNotConfigured`: ``States.Runtime`` (a
  configuration mistake: neither retried nor caught).

``parameters`` is a private copy (JSON round-tripped) and ``context`` a small frozen
:class:`TaskContext` of plain values, so both can be sent to another process: an
integration may dispatch handlers to a process pool and block the calling thread until the
result is back. The interpreter holds no lock while ``invoke`` runs.

:class:`LocalIntegrations` provides Lambda — ``arn:aws:states:::lambda:invoke`` (result
shaped like AWS: ``{"Payload", "StatusCode": 200, ...}``) and plain function ARNs
(result = the handler's return value) — by calling Python handlers ``handler(event,
context)``, and extension points for other services (``ecs:runTask.sync``,
``states:startExecution.sync:2``, ``sqs:sendMessage``, ...) registered with
:meth:`LocalIntegrations.register_service`.
"""

from __future__ import annotations

import json
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from isrflow.local.asl.errors import IntegrationNotConfigured, TaskFailure

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
ECS_RUN_TASK_SYNC = "arn:aws:states:::ecs:runTask.sync"
STATES_START_EXECUTION_SYNC2 = "arn:aws:states:::states:startExecution.sync:2"
SQS_SEND_MESSAGE = "arn:aws:states:::sqs:sendMessage"

_EXTENSION_HINTS = {
    ECS_RUN_TASK_SYNC: "register an implementation with LocalIntegrations.register_service(ECS_RUN_TASK_SYNC, "
    "fn(parameters, context) -> described task) (e.g. a subprocess 'Fargate' task)",
    STATES_START_EXECUTION_SYNC2: "register an implementation with LocalIntegrations.register_service("
    "STATES_START_EXECUTION_SYNC2, fn(parameters, context) -> "
    "DescribeExecution-shaped result) (e.g. one running the child machine "
    "with the same Interpreter)",
}


@dataclass(frozen=True)
class TaskContext:
    """What an integration knows about the Task attempt it runs (picklable plain values)."""

    execution_arn: str
    execution_name: str
    state_machine_arn: str
    state_name: str
    retry_count: int = 0
    timeout_seconds: float | None = None  # the Task's TimeoutSeconds, if any
    heartbeat_seconds: float | None = None
    region: str = "us-east-1"
    account: str = "123456789012"


class Integrations(Protocol):
    def invoke(self, resource: str, parameters: Any, context: TaskContext) -> Any: ...


def split_resource(resource: str) -> tuple[str, str]:
    """``arn:aws:states:::lambda:invoke`` -> ("lambda", "invoke") (history resourceType/resource)."""
    prefix = "arn:aws:states:::"
    if resource.startswith(prefix):
        service, _, rest = resource[len(prefix) :].partition(":")
        return service, rest
    return "unknown", resource


def is_lambda_arn(resource: str) -> bool:
    parts = resource.split(":")
    return resource.startswith("arn:") and len(parts) >= 7 and parts[2] == "lambda" and parts[5] == "function"


def function_name_of(ref: str) -> str:
    """The function name in a name, a partial ARN (``123:function:name``) or a full ARN,
    with any version/alias qualifier removed."""
    parts = ref.split(":")
    if ref.startswith("arn:"):
        if len(parts) >= 7 and parts[5] == "function":
            return parts[6]
        raise ValueError(f"not a Lambda function ARN: {ref!r}")
    if len(parts) >= 3 and parts[1] == "function":
        return parts[2]
    return parts[0]


class LambdaContext:
    """The ``context`` argument of a Lambda handler (the attributes the Python runtime gives)."""

    def __init__(
        self,
        function_name: str,
        request_id: str,
        *,
        timeout_seconds: float = 900,
        memory_mb: int = 128,
        region: str = "us-east-1",
        account: str = "123456789012",
        version: str = "$LATEST",
    ):
        self.function_name = function_name
        self.function_version = version
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
        self.memory_limit_in_mb = str(memory_mb)
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/{request_id}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __getstate__(self):  # monotonic clocks differ between processes: ship the remaining time
        state = dict(self.__dict__)
        state["_remaining"] = self._deadline - time.monotonic()
        del state["_deadline"]
        return state

    def __setstate__(self, state):
        remaining = state.pop("_remaining")
        self.__dict__.update(state)
        self._deadline = time.monotonic() + remaining


def lambda_error(exc: BaseException, request_id: str = "") -> TaskFailure:
    """The TaskFailure AWS reports for an unhandled handler exception: error = the exception
    class name; cause = the runtime's JSON ``{"errorMessage", "errorType", "requestId",
    "stackTrace"}``."""
    name = type(exc).__name__
    cause = {
        "errorMessage": str(exc),
        "errorType": name,
        "requestId": request_id,
        "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)),
    }
    return TaskFailure(name, json.dumps(cause))


@dataclass
class LambdaFunction:
    handler: Callable[[Any, Any], Any]
    timeout_seconds: float = 900
    memory_mb: int = 128


class LocalIntegrations:
    """Lambda functions as Python callables, plus registered service implementations.

    ``functions`` maps a function name (or ARN) to ``handler(event, context)`` or a
    :class:`LambdaFunction`. To run handlers elsewhere (e.g. a process pool), subclass and
    override :meth:`call_handler`; it runs on the interpreter's worker thread and may block.
    """

    def __init__(
        self,
        functions: Mapping[str, Callable | LambdaFunction] | None = None,
        *,
        region: str = "us-east-1",
        account: str = "123456789012",
    ):
        self.region = region
        self.account = account
        self.functions: dict[str, LambdaFunction] = {}
        self.services: dict[str, Callable[[Any, TaskContext], Any]] = {}
        for name, fn in (functions or {}).items():
            self.register_function(name, fn)

    # -- registration
    def register_function(
        self,
        name: str,
        handler: Callable | LambdaFunction,
        *,
        timeout_seconds: float | None = None,
        memory_mb: int | None = None,
    ) -> None:
        fn = handler if isinstance(handler, LambdaFunction) else LambdaFunction(handler)
        if timeout_seconds is not None:
            fn.timeout_seconds = timeout_seconds
        if memory_mb is not None:
            fn.memory_mb = memory_mb
        self.functions[function_name_of(name)] = fn

    def register_service(self, resource: str, implementation: Callable[[Any, TaskContext], Any]) -> None:
        """Serve Task ``resource`` (exact string) with ``implementation(parameters, context)``."""
        self.services[resource] = implementation

    def function_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{name}"

    # -- the Integrations interface
    def invoke(self, resource: str, parameters: Any, context: TaskContext) -> Any:
        if resource == LAMBDA_INVOKE:
            if not isinstance(parameters, dict) or "FunctionName" not in parameters:
                raise TaskFailure(
                    "States.Runtime", "lambda:invoke needs Parameters with FunctionName and Payload"
                )
            itype = parameters.get("InvocationType", "RequestResponse")
            if itype != "RequestResponse":
                raise IntegrationNotConfigured(
                    resource, f"InvocationType {itype!r} is not supported locally (RequestResponse only)"
                )
            name = self._lookup(parameters["FunctionName"])
            request_id = str(uuid.uuid4())
            payload = self.call_handler(name, parameters.get("Payload", {}), context, request_id)
            return {
                "ExecutedVersion": "$LATEST",
                "Payload": payload,
                "SdkHttpMetadata": {
                    "HttpHeaders": {
                        "Content-Type": "application/json",
                        "X-Amz-Executed-Version": "$LATEST",
                        "x-amzn-RequestId": request_id,
                    },
                    "HttpStatusCode": 200,
                },
                "SdkResponseMetadata": {"RequestId": request_id},
                "StatusCode": 200,
            }
        if is_lambda_arn(resource):
            return self.call_handler(self._lookup(resource), parameters, context, str(uuid.uuid4()))
        impl = self.services.get(resource)
        if impl is None:
            raise IntegrationNotConfigured(
                resource,
                _EXTENSION_HINTS.get(
                    resource, "register one with LocalIntegrations.register_service(resource, fn)"
                ),
            )
        return impl(parameters, context)

    def _lookup(self, ref: Any) -> str:
        try:
            name = function_name_of(str(ref))
        except ValueError as exc:
            raise TaskFailure("Lambda.InvalidParameterValueException", str(exc)) from None
        if name not in self.functions:
            raise TaskFailure(
                "Lambda.ResourceNotFoundException",
                f"Function not found: {self.function_arn(name)} (Service: AWSLambda; "
                f"Status Code: 404; Error Code: ResourceNotFoundException)",
            )
        return name

    def make_context(self, name: str, task: TaskContext, request_id: str) -> LambdaContext:
        fn = self.functions[name]
        return LambdaContext(
            name,
            request_id,
            timeout_seconds=fn.timeout_seconds,
            memory_mb=fn.memory_mb,
            region=self.region,
            account=self.account,
        )

    def call_handler(self, name: str, event: Any, task: TaskContext, request_id: str) -> Any:
        """Run function ``name`` on ``event`` and return its (JSON-serialisable) result, or
        raise the TaskFailure the Lambda runtime would report. Override to dispatch elsewhere."""
        fn = self.functions[name]
        try:
            result = fn.handler(event, self.make_context(name, task, request_id))
        except Exception as exc:
            raise lambda_error(exc, request_id) from None
        try:
            json.dumps(result)
        except (TypeError, ValueError) as exc:
            raise TaskFailure(
                "Runtime.MarshalError",
                json.dumps(
                    {
                        "errorMessage": f"Unable to marshal response: {exc}",
                        "errorType": "Runtime.MarshalError",
                        "requestId": request_id,
                        "stackTrace": [],
                    }
                ),
            ) from None
        return result
