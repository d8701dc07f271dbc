"""isrflow's own Amazon States Language interpreter, for the subset the project's state
machines use, written from the ASL specification (https://states-language.net/spec.html)
and, where AWS's behaviour differs from the text, following AWS.

Usage::

    from isrflow.local.asl import Interpreter, LocalIntegrations, StateMachine

    machine = StateMachine.from_file("statemachines/process_visit.asl.json", "ProcessVisit",
                                     substitutions={...})
    interp = Interpreter(LocalIntegrations({"plan": plan_handler, ...}), item_reader=read_s3_object)
    execution = interp.start_execution(machine, {"visit": 42}, name="visit-42")
    execution.status, execution.output, execution.history

The subset: JSONPath states Task, Pass, Choice, Wait, Succeed, Fail, Parallel, Map (inline,
and DISTRIBUTED with STANDARD children, an s3:getObject JSON ItemReader and an s3:putObject
ResultWriter, served by ``Interpreter(result_writer=...)``); InputPath, Parameters,
ResultSelector, ResultPath, OutputPath; Retry (incl. MaxDelaySeconds and JitterStrategy) and
Catch; the intrinsic functions; the 256 KiB payload limit (``States.DataLimitExceeded``, also
for a Distributed Map's aggregated child results when it has no ResultWriter). Rejected at
load with :class:`UnsupportedFeatureError`: ItemBatcher, ToleratedFailure*, EXPRESS children,
other ItemReader kinds, a ResultWriter with only WriterConfig, JSONata, variables (Assign).
"""

from isrflow.local.asl.clock import Clock, FakeClock, RealClock
from isrflow.local.asl.definition import StateMachine
from isrflow.local.asl.errors import (
    AslError,
    DefinitionError,
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    IntegrationNotConfigured,
    TaskFailure,
    UnsupportedFeatureError,
)
from isrflow.local.asl.execution import ABORTED, FAILED, RUNNING, SUCCEEDED, TIMED_OUT, Execution, MapRun
from isrflow.local.asl.history import count_state_transitions
from isrflow.local.asl.integrations import (
    ECS_RUN_TASK_SYNC,
    LAMBDA_INVOKE,
    SQS_SEND_MESSAGE,
    STATES_START_EXECUTION_SYNC2,
    Integrations,
    LambdaContext,
    LambdaFunction,
    LocalIntegrations,
    TaskContext,
    lambda_error,
)
from isrflow.local.asl.interpreter import Interpreter
from isrflow.local.asl.result_writer import read_manifest_results
from isrflow.local.asl.run_context import PAYLOAD_LIMIT

__all__ = [
    "ABORTED",
    "ECS_RUN_TASK_SYNC",
    "FAILED",
    "LAMBDA_INVOKE",
    "PAYLOAD_LIMIT",
    "RUNNING",
    "SQS_SEND_MESSAGE",
    "STATES_START_EXECUTION_SYNC2",
    "SUCCEEDED",
    "TIMED_OUT",
    "AslError",
    "Clock",
    "DefinitionError",
    "Execution",
    "ExecutionAlreadyExists",
    "ExecutionDoesNotExist",
    "FakeClock",
    "IntegrationNotConfigured",
    "Integrations",
    "Interpreter",
    "LambdaContext",
    "LambdaFunction",
    "LocalIntegrations",
    "MapRun",
    "RealClock",
    "StateMachine",
    "TaskContext",
    "TaskFailure",
    "UnsupportedFeatureError",
    "count_state_transitions",
    "lambda_error",
    "read_manifest_results",
]
