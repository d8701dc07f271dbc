"""template.yaml deploys into a new AWS account: Lambda memory within the new-account quota,
the ECS service-linked role before the first cluster, the registry schema made by the stack,
and Rules that reject an incomplete network before anything is created.

The Rules are evaluated here by a small evaluator of the rule functions the template uses
(CloudFormation evaluates them before creating anything; cfn-lint only checks their syntax).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from isrflow.build_calibration import prepare
from isrflow.calibration import routing
from isrflow.local.sam_template import load_app, load_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
#: Lambda memory a new account allows until a quota increase (MB).
NEW_ACCOUNT_MAX_MEMORY_MB = 3008
#: A deployable minimum: an existing registry and the Fargate combine network.
MINIMAL = {
    "RegistrySecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:isrflow-registry-AbCdEf",
    "CombineSubnetIds": "subnet-pub-a,subnet-pub-b",
    "CombineSecurityGroupIds": "sg-0123",
}
PRIVATE_NETWORK = {
    "VpcId": "vpc-0123456789abcdef0",
    "PrivateSubnetIds": "subnet-a,subnet-b",
    "PrivateRouteTableIds": "rtb-a,rtb-b",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


# --- Rules --------------------------------------------------------------------------------------


def _parameter_values(template: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, spec in template["Parameters"].items():
        raw = str(given.get(name, spec.get("Default", "")))
        values[name] = raw.split(",") if spec.get("Type") == "CommaDelimitedList" else raw
    unknown = set(given) - set(values)
    assert not unknown, f"unknown parameters {unknown}"
    return values


def _rule_value(node: Any, params: dict[str, Any]) -> Any:
    """Evaluate a rule expression (the rule-specific intrinsic functions CloudFormation documents)."""
    if not isinstance(node, dict):
        return node
    ((name, arg),) = node.items()
    if name == "Ref":
        return params[arg]
    args = [_rule_value(a, params) for a in arg] if isinstance(arg, list) else [_rule_value(arg, params)]
    if name == "Fn::Equals":
        return str(args[0]) == str(args[1])
    if name == "Fn::Not":
        return not args[0]
    if name == "Fn::And":
        return all(args)
    if name == "Fn::Or":
        return any(args)
    if name == "Fn::Contains":
        return args[1] in args[0]
    if name == "Fn::EachMemberEquals":
        return all(v == args[1] for v in args[0])
    if name == "Fn::EachMemberIn":
        return all(v in args[1] for v in args[0])
    raise AssertionError(f"rule function {name} is not evaluated by this test")


def failed_rules(template: dict[str, Any], given: dict[str, str]) -> dict[str, list[str]]:
    """Rule name -> AssertDescriptions of the assertions that fail for these parameters."""
    params = _parameter_values(template, given)
    failed: dict[str, list[str]] = {}
    for name, rule in template["Rules"].items():
        if "RuleCondition" in rule and not _rule_value(rule["RuleCondition"], params):
            continue
        for assertion in rule["Assertions"]:
            if not _rule_value(assertion["Assert"], params):
                failed.setdefault(name, []).append(assertion["AssertDescription"])
    return failed


def test_complete_configurations_pass_every_rule(template):
    assert failed_rules(template, MINIMAL) == {}
    assert failed_rules(template, {**MINIMAL, **PRIVATE_NETWORK}) == {}
    created = {k: v for k, v in MINIMAL.items() if k != "RegistrySecretArn"}
    assert failed_rules(template, {**created, **PRIVATE_NETWORK, "CreateRegistry": "true"}) == {}
    own_endpoints = {**MINIMAL, **PRIVATE_NETWORK, "PrivateRouteTableIds": "", "CreateVpcEndpoints": "false"}
    assert failed_rules(template, own_endpoints) == {}


def test_a_vpc_needs_private_subnets(template):
    failed = failed_rules(template, {**MINIMAL, "VpcId": "vpc-1", "PrivateRouteTableIds": "rtb-a"})
    assert set(failed) == {"VpcNeedsPrivateSubnets"}
    assert "PrivateSubnetIds" in failed["VpcNeedsPrivateSubnets"][0]


def test_created_endpoints_need_the_private_route_tables(template):
    failed = failed_rules(template, {**MINIMAL, **PRIVATE_NETWORK, "PrivateRouteTableIds": ""})
    assert set(failed) == {"VpcEndpointsNeedRouteTables"}
    assert "S3 gateway endpoint" in failed["VpcEndpointsNeedRouteTables"][0]


def test_fargate_combines_need_subnets_and_security_groups(template):
    failed = failed_rules(template, {"RegistrySecretArn": MINIMAL["RegistrySecretArn"]})
    assert set(failed) == {"CombineTasksNeedNetwork"}
    assert [d.split(" ")[0] for d in failed["CombineTasksNeedNetwork"]] == [
        "CombineSubnetIds",
        "CombineSecurityGroupIds",
    ]
    assert failed_rules(template, {**MINIMAL, "CombineSubnetIds": "subnet-a,"}) == {
        "CombineTasksNeedNetwork": [failed["CombineTasksNeedNetwork"][0]]
    }


def test_registry_rules_still_hold(template):
    no_registry = {k: v for k, v in MINIMAL.items() if k != "RegistrySecretArn"}
    assert set(failed_rules(template, no_registry)) == {"RegistryIsConfigured"}
    created_without_network = {**no_registry, "CreateRegistry": "true"}
    assert set(failed_rules(template, created_without_network)) == {"CreatedRegistryNeedsNetwork"}


# --- Lambda memory within the new-account quota ---------------------------------------------------


def test_every_function_fits_a_new_accounts_memory_quota(template):
    app = load_app(TEMPLATE)
    limit = NEW_ACCOUNT_MAX_MEMORY_MB
    too_big = {lid: f.memory_mb for lid, f in app.functions.items() if f.memory_mb > limit}
    assert not too_big, f"above the {NEW_ACCOUNT_MAX_MEMORY_MB} MB a new account allows: {too_big}"
    for name in ("IsrMemorySize", "CombineMemorySize"):
        spec = template["Parameters"][name]
        assert spec["MaxValue"] == 10240, f"{name}: keep 10240 reachable after a quota increase"
        assert "3008" in spec["Description"] and "quota" in spec["Description"]


def test_combine_routing_at_the_default_combine_memory():
    app = load_app(TEMPLATE)
    env = app.functions["PrepareCombineFunction"].environment
    memory_mb, timeout_s = int(env[routing.ENV_LAMBDA_MEMORY]), int(env[routing.ENV_LAMBDA_TIMEOUT])
    assert memory_mb == app.functions["CombineFunction"].memory_mb == NEW_ACCOUNT_MAX_MEMORY_MB
    assert memory_mb == prepare.DEFAULT_LAMBDA_MEMORY_MB  # PrepareCombine's fallback matches the template
    hsc_frame = 2048 * 4176 * 12  # bytes of one ISR'd HSC detector (image, mask, variance)
    for n_inputs in (16, 100, 360):  # HSC masters up to ~370 inputs stay on the Lambda at 3008 MB
        typical = routing.choose_route(
            n_inputs=n_inputs,
            input_bytes=n_inputs * hsc_frame,
            columns=2048,
            lambda_memory_mb=memory_mb,
            lambda_timeout_s=timeout_s,
        )
        assert typical.route == "lambda", typical.reason
    deep = routing.choose_route(
        n_inputs=3000, input_bytes=1, columns=4096, lambda_memory_mb=memory_mb, lambda_timeout_s=timeout_s
    )
    assert deep.route == "fargate" and "MB" in deep.reason
    # a 3008 MB Lambda still leaves a strip budget far above the 128 MiB strips the combine aims for
    assert routing.strip_budget_bytes(memory_mb) > 10 * routing.STRIP_TARGET_BYTES


# --- ECS service-linked role ---------------------------------------------------------------------


def test_ecs_service_linked_role_is_created_first_when_asked(template):
    role = template["Resources"]["EcsServiceLinkedRole"]
    assert role["Type"] == "AWS::IAM::ServiceLinkedRole"
    assert role["Properties"]["AWSServiceName"] == "ecs.amazonaws.com"
    assert role["DeletionPolicy"] == "Retain"  # other clusters in the account use it
    assert template["Parameters"]["CreateEcsServiceLinkedRole"]["Default"] == "false"
    condition = role["Condition"]
    # The cluster waits for the role exactly when it is created (a DependsOn cannot be conditional).
    assert template["Resources"]["CombineCluster"]["Metadata"]["WaitsFor"] == {
        "Fn::If": [condition, {"Ref": "EcsServiceLinkedRole"}, ""]
    }
    assert load_app(TEMPLATE, {"CreateEcsServiceLinkedRole": "true"}).conditions[condition]
    assert not load_app(TEMPLATE).conditions[condition]


# --- the registry schema, made by the stack -------------------------------------------------------


def test_registry_schema_custom_resource(template):
    schema = template["Resources"]["RegistrySchema"]
    props = schema["Properties"]
    assert schema["Type"] == "AWS::CloudFormation::CustomResource"
    assert props["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    assert props["RegistryLayerVersion"] == {"Ref": "RegistryLayer"}  # new code re-runs the migration
    function = template["Resources"]["MigrateFunction"]["Properties"]
    assert function["Timeout"] < props["ServiceTimeout"] <= 3600
    waits = schema["Metadata"]["WaitsFor"]["Fn::If"]
    assert waits[0] == "CreateEndpointsCond" and {"Ref": "SecretsManagerVpcEndpoint"} in waits[1]
    for given in ({}, {**PRIVATE_NETWORK, "CreateRegistry": "true"}):
        app = load_app(TEMPLATE, given)
        migrate, plan = app.functions["MigrateFunction"], app.functions["PlanFunction"]
        assert migrate.in_vpc == plan.in_vpc == bool(given)
        assert migrate.environment["ISRFLOW_REGISTRY_URL"] == plan.environment["ISRFLOW_REGISTRY_URL"]
        # the same database; Plan as the read-only role the migration creates from its secret
        reader = plan.environment["ISRFLOW_REGISTRY_SECRET_ARN"]
        assert migrate.environment["ISRFLOW_REGISTRY_READER_SECRET_ARN"] == reader
        assert bool(given) == (reader != "")
        assert migrate.handler_file == REPO / "functions" / "migrate" / "app.py"
        assert "MigrateFunctionArn" in app.outputs and "RegistrySchemaRevision" in app.outputs
    created = load_app(TEMPLATE, {**PRIVATE_NETWORK, "CreateRegistry": "true"})
    assert json.loads(created.outputs["RegistryPortForwardingParameters"]) == {
        "host": ["localhost"],
        "portNumber": ["5432"],
        "localPortNumber": ["15432"],
    }
    assert "RegistryClientSecurityGroupId" in created.outputs
