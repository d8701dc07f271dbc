"""The security settings of template.yaml that are not IAM: encryption at rest (bucket, queues,
dead-letter queues, database), bucket versioning and public access, TLS to the registry, private
Fargate tasks. IAM is tests/static/test_iam_policies.py; checkov is tests/static/test_checkov.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isrflow.local.sam_template import load_app, load_template

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("ISRFLOW_STATIC_ROOT", REPO)).resolve()
TEMPLATE = ROOT / "template.yaml"
PRIVATE_NETWORK = {
    "VpcId": "vpc-0123456789abcdef0",
    "PrivateSubnetIds": "subnet-a,subnet-b",
    "PrivateRouteTableIds": "rtb-a,rtb-b",
}


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(TEMPLATE)


def _of_type(template: dict, rtype: str) -> dict[str, dict]:
    return {lid: r.get("Properties") or {} for lid, r in template["Resources"].items() if r["Type"] == rtype}


def test_the_data_bucket_is_encrypted_versioned_private_and_tls_only(template):
    (props,) = _of_type(template, "AWS::S3::Bucket").values()
    rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rules and rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    # versions of overwritten and deleted objects do not pile up
    lifecycle = props["LifecycleConfiguration"]["Rules"]
    assert any("NoncurrentVersionExpiration" in r and r["Status"] == "Enabled" for r in lifecycle)
    assert all(props["PublicAccessBlockConfiguration"].values())
    (policy,) = _of_type(template, "AWS::S3::BucketPolicy").values()
    (deny,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_every_queue_and_dead_letter_queue_is_encrypted_at_rest(template):
    queues = _of_type(template, "AWS::SQS::Queue")
    assert {"RegistryQueue", "RegistryDeadLetterQueue", "IngestDeadLetterQueue"} <= set(queues)
    clear = [
        lid
        for lid, p in queues.items()
        if p.get("SqsManagedSseEnabled") is not True and not p.get("KmsMasterKeyId")
    ]
    assert not clear, f"queues without encryption at rest: {clear}"


def test_the_created_registry_is_encrypted_private_and_refuses_clear_text(template):
    (db,) = _of_type(template, "AWS::RDS::DBInstance").values()
    assert db["StorageEncrypted"] is True and db["PubliclyAccessible"] is False
    assert db["ManageMasterUserPassword"] is True
    (group_id,) = _of_type(template, "AWS::RDS::DBParameterGroup")
    assert db["DBParameterGroupName"] == {"Ref": group_id}
    assert _of_type(template, "AWS::RDS::DBParameterGroup")[group_id]["Parameters"] == {"rds.force_ssl": "1"}
    app = load_app(TEMPLATE, {**PRIVATE_NETWORK, "CreateRegistry": "true"})
    urls = {lid: f.environment.get("ISRFLOW_REGISTRY_URL") for lid, f in app.functions.items()}
    urls = {lid: url for lid, url in urls.items() if url}
    assert urls and all(url.endswith("?sslmode=require") for url in urls.values()), urls


def test_the_role_secrets_rotate_and_ask_for_tls(template):
    secrets = _of_type(template, "AWS::SecretsManager::Secret")
    assert set(secrets) == {"RegistryWriterSecret", "RegistryReaderSecret"}
    schedules = _of_type(template, "AWS::SecretsManager::RotationSchedule")
    assert {p["SecretId"]["Ref"] for p in schedules.values()} == set(secrets)
    for props in schedules.values():
        assert props["RotationLambdaARN"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    for props in secrets.values():
        assert '"sslmode": "require"' in props["GenerateSecretString"]["SecretStringTemplate"]


def test_fargate_tasks_are_private_by_default(template):
    assert template["Parameters"]["CombineAssignPublicIp"]["Default"] == "DISABLED"
    app = load_app(
        TEMPLATE,
        {"RegistrySecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:r", **PRIVATE_NETWORK},
    )
    subs = app.state_machines["BuildCalibrationStateMachine"].substitutions
    assert subs["CombineAssignPublicIp"] == "DISABLED"
    assert subs["CombineSubnetIds"] == "subnet-a,subnet-b"  # the private subnets
    assert subs["CombineSecurityGroupIds"] == "CombineTaskSecurityGroup"  # the stack's own group
    # with the endpoints the tasks need: image pulls, logs, messages, and S3 through the gateway
    endpoints = {
        p["ServiceName"]["Fn::Sub"].rsplit(".", 1)[-1] if isinstance(p["ServiceName"], dict) else ""
        for p in _of_type(template, "AWS::EC2::VPCEndpoint").values()
    }
    assert {"api", "dkr", "logs", "sqs", "s3", "secretsmanager"} <= endpoints
    group = _of_type(template, "AWS::EC2::SecurityGroup")["CombineTaskSecurityGroup"]
    assert "SecurityGroupIngress" not in group
    assert [(e["FromPort"], e["ToPort"]) for e in group["SecurityGroupEgress"]] == [(443, 443)]
