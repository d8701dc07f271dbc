"""Static checks of the stack's observability (issue 13): log retention, alarms, the dashboard.

Each check is a function that returns its problems (an empty list when the template is right), so
that ``test_checks_can_fail`` can show every one of them failing on a broken copy of the template.
Nothing here deploys or calls AWS. ``ISRFLOW_STATIC_ROOT`` points them at another copy of the
repository's files, as in ``test_template.py``.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from isrflow.local.sam_template import load_template

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("ISRFLOW_STATIC_ROOT", REPO)).resolve()
TEMPLATE = ROOT / "template.yaml"

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
PLACEHOLDER = re.compile(r"\$\{([^}!]*)\}")
#: What a dashboard metric's dimension must name, per namespace: (dimension, resource types, the
#: ``!Sub`` placeholder form: "" for ``${X}`` (Ref), else ``${X.<attribute>}``).
DASHBOARD_DIMENSIONS = {
    "AWS/Lambda": ("FunctionName", FUNCTION_TYPES, ""),
    "AWS/SQS": ("QueueName", ("AWS::SQS::Queue",), "QueueName"),
    "AWS/States": ("StateMachineArn", STATE_MACHINE_TYPES, ""),
}
#: The application's own metrics (Powertools EMF): namespace and the one dimension, ``service``.
APP_NAMESPACE = "isrflow"


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(TEMPLATE)


def _of_type(template: dict, types: tuple[str, ...] | str) -> dict[str, dict]:
    types = (types,) if isinstance(types, str) else types
    return {k: r for k, r in template["Resources"].items() if r.get("Type") in types}


def _walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, i))


def dead_letter_queues(template: dict) -> set[str]:
    """Queues some resource sends its failures to: a queue's RedrivePolicy target, a function's
    DeadLetterQueue / DeadLetterConfig, an event target's dead-letter config."""
    queues = _of_type(template, "AWS::SQS::Queue")
    found = set()
    for path, node in _walk(template["Resources"]):
        if not (isinstance(node, dict) and "Fn::GetAtt" in node):
            continue
        target = node["Fn::GetAtt"]
        target = target.split(".")[0] if isinstance(target, str) else target[0]
        if target in queues and any("deadletter" in str(key).lower() for key in path):
            found.add(target)
    return found


def _metric_alarms(template: dict) -> list[dict]:
    return [r["Properties"] for r in _of_type(template, "AWS::CloudWatch::Alarm").values()]


def _alarmed(template: dict, namespace: str, metric: str, dimension: str) -> list[Any]:
    """The dimension values of the alarms on namespace/metric."""
    return [
        d["Value"]
        for a in _metric_alarms(template)
        if a.get("Namespace") == namespace and a.get("MetricName") == metric
        for d in a.get("Dimensions", [])
        if d.get("Name") == dimension
    ]


# --- the checks ------------------------------------------------------------------------------
def log_group_problems(template: dict) -> list[str]:
    """Every function, state machine and the Fargate task logs to a group of this stack whose
    retention (days) is the LogRetentionDays parameter."""
    problems = []
    groups = _of_type(template, "AWS::Logs::LogGroup")
    for name, group in groups.items():
        if group["Properties"].get("RetentionInDays") != {"Ref": "LogRetentionDays"}:
            problems.append(f"log group {name} does not keep events for LogRetentionDays")
    names = [g["Properties"].get("LogGroupName") for g in groups.values()]
    for fn in _of_type(template, FUNCTION_TYPES):
        if {"Fn::Sub": f"/aws/lambda/${{{fn}}}"} not in names:
            problems.append(f"function {fn} has no log group /aws/lambda/<its name>")
    for sm, res in _of_type(template, STATE_MACHINE_TYPES).items():
        props = res["Properties"]
        if props.get("Tracing", props.get("TracingConfiguration", {})).get("Enabled") is not True:
            problems.append(f"state machine {sm} has no X-Ray tracing")
        logging = props.get("Logging") or props.get("LoggingConfiguration") or {}
        destinations = logging.get("Destinations", [])
        arns = [d.get("CloudWatchLogsLogGroup", {}).get("LogGroupArn") for d in destinations]
        if not any(a == {"Fn::GetAtt": [g, "Arn"]} for a in arns for g in groups):
            problems.append(f"state machine {sm} does not log to a log group of this stack")
    for task, res in _of_type(template, "AWS::ECS::TaskDefinition").items():
        for container in res["Properties"].get("ContainerDefinitions", []):
            group = container.get("LogConfiguration", {}).get("Options", {}).get("awslogs-group")
            if not (isinstance(group, dict) and group.get("Ref") in groups):
                name = container.get("Name")
                problems.append(f"task {task} container {name} logs to no group of this stack")
    return problems


def alarm_problems(template: dict) -> list[str]:
    """Each dead-letter queue, the registry queue's age, each function's errors and throttles and
    each state machine's failed / timed-out / aborted executions have an alarm on the topic."""
    problems = []
    topics = _of_type(template, "AWS::SNS::Topic")
    for props in _metric_alarms(template):
        actions = props.get("AlarmActions", [])
        if not actions or any(a.get("Ref") not in topics for a in actions):
            problems.append(f"alarm {props.get('AlarmName')} does not notify the alarm topic")
    expected = [
        (q, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", {"Fn::GetAtt": [q, "QueueName"]})
        for q in sorted(dead_letter_queues(template))
    ]
    expected.append(
        (
            "RegistryQueue",
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            "QueueName",
            {"Fn::GetAtt": ["RegistryQueue", "QueueName"]},
        )
    )
    for fn in _of_type(template, FUNCTION_TYPES):
        for metric in ("Errors", "Throttles"):
            expected.append((fn, "AWS/Lambda", metric, "FunctionName", {"Ref": fn}))
    for sm in _of_type(template, STATE_MACHINE_TYPES):
        for metric in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"):
            expected.append((sm, "AWS/States", metric, "StateMachineArn", {"Ref": sm}))
    for name, namespace, metric, dimension, value in expected:
        if value not in _alarmed(template, namespace, metric, dimension):
            problems.append(f"{name} has no {metric} alarm")
    return problems


def dashboard_problems(template: dict) -> list[str]:
    """The dashboard body is JSON once its ``${...}`` are filled, names only this stack's
    resources, and shows every function, dead-letter queue and state machine."""
    resources = template["Resources"]
    dashboards = _of_type(template, "AWS::CloudWatch::Dashboard")
    if len(dashboards) != 1:
        return [f"expected one dashboard, found {sorted(dashboards)}"]
    body = next(iter(dashboards.values()))["Properties"]["DashboardBody"]
    if not (isinstance(body, dict) and isinstance(body.get("Fn::Sub"), str)):
        return ["DashboardBody is not a !Sub of a JSON text"]
    text = body["Fn::Sub"]
    problems = []
    for ref in PLACEHOLDER.findall(text):
        logical = ref.split(".")[0]
        if not (ref.startswith("AWS::") or logical in resources or logical in template.get("Parameters", {})):
            problems.append(f"dashboard names ${{{ref}}}, which is not in the template")
    try:  # fill each placeholder with a string of its own name: every one sits inside quotes
        widgets = json.loads(PLACEHOLDER.sub(lambda m: f"<{m.group(1)}>", text))["widgets"]
    except (ValueError, KeyError, TypeError) as exc:
        return [*problems, f"dashboard body is not JSON with widgets: {exc}"]
    services = {
        str(r["Properties"].get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME"))
        for r in _of_type(template, FUNCTION_TYPES).values()
    }
    shown: set[str] = set()
    for widget in widgets:
        for metric in widget.get("properties", {}).get("metrics", []):
            names = [m for m in metric if isinstance(m, str)]
            namespace, dims = names[0], dict(zip(names[2::2], names[3::2], strict=False))
            if namespace == APP_NAMESPACE:
                if set(dims) != {"service"} or dims["service"] not in services:
                    problems.append(f"dashboard metric {names} is no function's service")
                continue
            if namespace not in DASHBOARD_DIMENSIONS:
                problems.append(f"dashboard metric {names}: namespace {namespace} is not checked")
                continue
            dimension, types, attribute = DASHBOARD_DIMENSIONS[namespace]
            value = re.fullmatch(r"<([A-Za-z0-9]+)(?:\.([A-Za-z]+))?>", dims.get(dimension, ""))
            if not (
                value
                and resources.get(value.group(1), {}).get("Type") in types
                and (value.group(2) or "") == attribute
            ):
                problems.append(f"dashboard metric {names}: {dimension} is not a {types[0]} of the template")
                continue
            shown.add(value.group(1))
        for alarm in widget.get("properties", {}).get("alarms", []):
            match = re.fullmatch(r"<([A-Za-z0-9]+)\.Arn>", alarm)
            if not match or resources.get(match.group(1), {}).get("Type") != "AWS::CloudWatch::Alarm":
                problems.append(f"dashboard alarm {alarm} is not an alarm of the template")
    wanted = {
        *_of_type(template, FUNCTION_TYPES),
        *_of_type(template, STATE_MACHINE_TYPES),
        *dead_letter_queues(template),
        "RegistryQueue",
    }
    problems += [f"the dashboard does not show {name}" for name in sorted(wanted - shown)]
    return problems


# --- the tests -------------------------------------------------------------------------------
def test_every_function_state_machine_and_task_has_a_log_group_with_retention(template):
    assert log_group_problems(template) == []
    assert template["Parameters"]["LogRetentionDays"]["Default"] == 30


def test_the_dead_letter_queues_are_found(template):
    assert dead_letter_queues(template) == {"RegistryDeadLetterQueue", "IngestDeadLetterQueue"}


def test_every_dead_letter_queue_function_and_state_machine_has_its_alarms(template):
    assert alarm_problems(template) == []
    age = [a for a in _metric_alarms(template) if a["MetricName"] == "ApproximateAgeOfOldestMessage"]
    assert [a["Threshold"] for a in age] == [{"Ref": "RegistryQueueMaxAgeSeconds"}]
    assert template["Parameters"]["RegistryQueueMaxAgeSeconds"]["Default"] == 900


def test_the_dashboard_is_json_about_this_stacks_resources_only(template):
    assert dashboard_problems(template) == []


def test_the_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use(template):
    (topic,) = _of_type(template, "AWS::SNS::Topic").values()
    key_id = topic["Properties"]["KmsMasterKeyId"]["Ref"]
    key = template["Resources"][key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    cloudwatch = [
        s
        for s in key["KeyPolicy"]["Statement"]
        if s["Principal"].get("Service") == "cloudwatch.amazonaws.com"
    ]
    assert cloudwatch and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(cloudwatch[0]["Action"])
    (subscription,) = _of_type(template, "AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasAlarmEmailCond"
    no_email = {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    assert template["Conditions"]["HasAlarmEmailCond"] == no_email
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""


def test_the_migration_waits_for_its_log_group(template):
    # the custom resource invokes the function during the deployment: were the group not there
    # yet, Lambda would create it and the stack's own group would then fail as "already exists".
    assert template["Resources"]["RegistrySchema"]["DependsOn"] == "MigrateFunctionLogGroup"


def test_checks_can_fail(template):
    broken = copy.deepcopy(template)
    resources = broken["Resources"]
    del resources["IsrFunctionLogGroup"]
    resources["ProcessVisitLogGroup"]["Properties"]["RetentionInDays"] = 30
    del resources["BuildCalibrationStateMachine"]["Properties"]["Tracing"]
    assert sorted(log_group_problems(broken)) == [
        "function IsrFunction has no log group /aws/lambda/<its name>",
        "log group ProcessVisitLogGroup does not keep events for LogRetentionDays",
        "state machine BuildCalibrationStateMachine has no X-Ray tracing",
    ]

    del resources["IngestDeadLetterQueueAlarm"]
    del resources["CombineThrottlesAlarm"]
    resources["PlanErrorsAlarm"]["Properties"]["AlarmActions"] = []
    problems = alarm_problems(broken)
    assert "IngestDeadLetterQueue has no ApproximateNumberOfMessagesVisible alarm" in problems
    assert "CombineFunction has no Throttles alarm" in problems
    assert any("PlanErrors" in p and "topic" in p for p in problems)

    body = resources["OperationsDashboard"]["Properties"]["DashboardBody"]
    text = body["Fn::Sub"]
    body["Fn::Sub"] = (
        text.replace("${IsrFunction}", "${NoSuchFunction}")
        .replace("${IngestDeadLetterQueue.QueueName}", "${DataBucket.QueueName}")
        .replace('"isrflow-record-failure"', '"isrflow-nobody"')
    )
    problems = dashboard_problems(broken)
    assert "dashboard names ${NoSuchFunction}, which is not in the template" in problems
    assert any("DataBucket" in p and "QueueName is not" in p for p in problems)
    assert any("isrflow-nobody" in p for p in problems)
    assert "the dashboard does not show IngestDeadLetterQueue" in problems
    body["Fn::Sub"] = text.replace('{"widgets": [', '{"widgets": [,', 1)
    assert any("not JSON" in p for p in dashboard_problems(broken))
