"""Least privilege in template.yaml: every function's (and the Fargate combine task's) IAM policy grants
only the actions its code calls, S3 write access is limited by prefix, and no policy grants an S3
action on ``Resource: "*"``.

The table below says, per function, which actions its code uses (read from the handler and the
library code it calls: isrflow.io.storage, isrflow.infra.queues, isrflow.infra.secret_cache, ...). Policies are
expanded from explicit statements and from the few SAM policy templates the template uses
(:data:`SAM_TEMPLATES`, transcribed from samtranslator's policy_templates.json and checked against
it when the tools venv is there); a template not in that table fails the test.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from isrflow.local.sam_template import load_template

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("ISRFLOW_STATIC_ROOT", REPO)).resolve()
TEMPLATE = ROOT / "template.yaml"

#: What the Lambda service itself needs for a function in a VPC (its network interfaces).
VPC = {
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DetachNetworkInterface",
}
SECRET = {"secretsmanager:GetSecretValue"}
SEND = {"sqs:SendMessage"}  # SendMessageBatch is authorised as sqs:SendMessage
#: S3 GET/HEAD of a missing key answers 403 instead of 404 without s3:ListBucket: the code relies on 404.
NOT_FOUND = {"s3:ListBucket"}

#: Function (or role) -> the actions its code uses. Keep it in step with the code, not the template.
USED: dict[str, set[str]] = {
    # manifests/ and results/ written (plan_visit); the registry read as the reader role
    "PlanFunction": {"s3:PutObject"} | SECRET | VPC,
    # raws/calibrations read, outputs written with their lifecycle tag (process_cluster); registry messages
    "IsrFunction": {"s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"} | NOT_FOUND | SEND,
    # manifest and thumbnails read, the exposure directory listed, the mosaic written tagged (make_mosaics)
    "MosaicFunction": {"s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"} | NOT_FOUND,
    # the cluster's results read (a success is kept), the failed ones written (record_failure)
    "RecordFailureFunction": {"s3:GetObject", "s3:PutObject"} | NOT_FOUND,
    # manifest and results read and listed; processing records sent; the registry read (summarize)
    "SummarizeFunction": {"s3:GetObject"} | NOT_FOUND | SEND | SECRET | VPC,
    # the event source mapping receives/deletes; the handler changes visibilities
    "RegistryWriterFunction": {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
    }
    | SECRET
    | VPC,
    # ranged GETs/HEAD of raw/, quarantine records, registry messages, prompt ProcessVisit
    "IngestFunction": {"s3:GetObject", "s3:PutObject", "states:StartExecution", "states:DescribeExecution"}
    | NOT_FOUND
    | SEND,
    # manifests and the results of inputs planned as failed written; the registry read (plan_build)
    "CalibPlanFunction": {"s3:PutObject"} | SECRET | VPC,
    # groups and ISR results read, the flat scales written (normalize_flats)
    "NormalizeFlatsFunction": {"s3:GetObject", "s3:PutObject"} | NOT_FOUND,
    # groups, ISR results and scales read; requests, their manifest, short masters' results written
    "PrepareCombineFunction": {"s3:GetObject", "s3:PutObject"} | NOT_FOUND,
    # request and existing result read, the master's failed result written (record_combine_failure)
    "RecordCombineFailureFunction": {"s3:GetObject", "s3:PutObject"} | NOT_FOUND,
    # groups and masters' results read, intermediates deleted (delete_intermediates)
    "DeleteIntermediatesFunction": {"s3:GetObject", "s3:DeleteObject"} | NOT_FOUND,
    # groups and masters' results read, the certification marker written, CertifyMessages sent (certify)
    "CertifyCalibFunction": {"s3:GetObject", "s3:PutObject"} | NOT_FOUND | SEND,
    # groups and results read and listed; processing records sent; the registry read (summarize)
    "SummarizeCalibFunction": {"s3:GetObject"} | NOT_FOUND | SEND | SECRET | VPC,
    # request and inputs read (ranged), the master uploaded in parts (upload_file aborts on failure)
    "CombineFunction": {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"} | NOT_FOUND | SEND,
    "CombineTaskRole": {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"} | NOT_FOUND | SEND,
    # schema migration as the master user; the role secrets read, and rotated (isrflow.registry.rotation)
    "MigrateFunction": SECRET
    | VPC
    | {
        "secretsmanager:DescribeSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
        "secretsmanager:GetRandomPassword",
    },
}

#: Prefixes (object keys, ``*`` = any run) each function may write; never raw/ (uploads).
WRITES: dict[str, set[str]] = {
    "PlanFunction": {"manifests/*", "results/*"},
    "IsrFunction": {"*/postISRCCD/*", "*/cpBiasProc/*", "*/cpDarkProc/*", "*/cpFlatProc/*", "results/*"},
    "MosaicFunction": {"*/postISRCCD/*"},
    "RecordFailureFunction": {"results/*"},
    "SummarizeFunction": set(),
    "IngestFunction": {"quarantine/*"},
    "CalibPlanFunction": {"manifests/*", "results/*"},
    "NormalizeFlatsFunction": {"manifests/*"},
    "PrepareCombineFunction": {"manifests/*", "results/*"},
    "RecordCombineFailureFunction": {"results/*"},
    "DeleteIntermediatesFunction": set(),
    "CertifyCalibFunction": {"results/*"},
    "SummarizeCalibFunction": set(),
    "CombineFunction": {"*/bias/*", "*/dark/*", "*/flat/*", "*/defects/*", "results/*"},
    "CombineTaskRole": {"*/bias/*", "*/dark/*", "*/flat/*", "*/defects/*", "results/*"},
}

#: SAM policy templates the template may use -> their actions.
SAM_TEMPLATES: dict[str, set[str]] = {
    "VPCAccessPolicy": VPC,
    "AWSSecretsManagerGetSecretValuePolicy": SECRET,
    "LambdaInvokePolicy": {"lambda:InvokeFunction"},
}
S3_WRITE_ACTIONS = {
    "s3:PutObject",
    "s3:PutObjectTagging",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:PutObjectAcl",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
}


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(TEMPLATE)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def expand(policies: Any, where: str) -> list[dict]:
    """The statements of a Policies list (SAM) or PolicyDocument; both branches of an Fn::If."""
    out: list[dict] = []
    for i, policy in enumerate(_as_list(policies)):
        here = f"{where}[{i}]"
        if isinstance(policy, str):
            raise AssertionError(f"{here}: managed policy {policy!r}: write its statements instead")
        if not isinstance(policy, dict) or policy == {"Ref": "AWS::NoValue"}:
            continue
        if "Fn::If" in policy:
            _, yes, no = policy["Fn::If"]
            out += expand([yes, no], here)
        elif "Statement" in policy:
            out += [{**s, "_where": here} for s in _as_list(policy["Statement"])]
        elif "PolicyDocument" in policy:
            out += expand(policy["PolicyDocument"], here)
        else:
            ((name, _),) = policy.items()
            assert name in SAM_TEMPLATES, f"{here}: SAM policy template {name} is not in SAM_TEMPLATES"
            out.append(
                {"Effect": "Allow", "Action": sorted(SAM_TEMPLATES[name]), "Resource": name, "_where": here}
            )
    return out


def policies_of(template: dict) -> dict[str, list[dict]]:
    """Every function's and IAM role's statements, by logical id."""
    found: dict[str, list[dict]] = {}
    for lid, res in template["Resources"].items():
        props = res.get("Properties") or {}
        if res["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            found[lid] = expand(props.get("Policies") or [], f"{lid}.Policies")
        elif res["Type"] == "AWS::IAM::Role":
            found[lid] = expand([p["PolicyDocument"] for p in props.get("Policies") or []], f"{lid}.Policies")
    return found


def _strings(value: Any) -> list[str]:
    """The ARN text of a Resource entry (a string, or the template of a !Sub)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return [sub if isinstance(sub, str) else sub[0]]
    if isinstance(value, dict) and "Fn::If" in value:
        return _strings(value["Fn::If"][1]) + _strings(value["Fn::If"][2])
    return []


def _allowed(statements: list[dict]) -> set[str]:
    return {a for s in statements if s.get("Effect") == "Allow" for a in _as_list(s.get("Action", []))}


def _key_patterns(statements: list[dict], actions: set[str]) -> set[str]:
    """Object-key patterns of the data bucket the Allow statements grant any of ``actions`` on."""
    out = set()
    for s in statements:
        if s.get("Effect") == "Allow" and actions & set(_as_list(s.get("Action", []))):
            for resource in _as_list(s.get("Resource", [])):
                for text in _strings(resource):
                    match = re.fullmatch(r"arn:\$\{AWS::Partition\}:s3:::\$\{DataBucket\}/(.+)", text)
                    out.add(match.group(1) if match else text)
    return out


def test_every_function_has_an_entry_in_the_table(template):
    functions = {lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert functions <= set(USED), f"add {sorted(functions - set(USED))} to USED (the actions its code calls)"


def test_each_function_is_granted_only_the_actions_its_code_uses(template):
    problems = []
    for lid, statements in policies_of(template).items():
        if lid not in USED:
            continue
        granted = _allowed(statements)
        for action in sorted(granted):
            if "*" in action:
                problems.append(f"{lid}: wildcard action {action}")
            elif action not in USED[lid]:
                problems.append(f"{lid}: grants {action}, which its code never uses")
        missing = USED[lid] - granted
        if missing:
            problems.append(f"{lid}: lacks {sorted(missing)}, which its code uses")
    assert not problems, "\n".join(problems)


def test_no_policy_grants_s3_actions_on_every_resource(template):
    problems = []
    for statements in policies_of(template).values():
        for s in statements:
            actions = [a for a in _as_list(s.get("Action", [])) if isinstance(a, str)]
            if s.get("Effect") != "Allow" or not any(a.startswith("s3:") or a == "*" for a in actions):
                continue
            for resource in _as_list(s.get("Resource", [])):
                for text in _strings(resource):
                    if text == "*" or re.search(r":s3:::\*$", text):
                        problems.append(f"{s['_where']}: {actions} on {text!r}")
    assert not problems, "\n".join(problems)


def test_s3_writes_are_limited_to_each_functions_prefixes(template):
    problems = []
    statements = policies_of(template)
    for lid, allowed in WRITES.items():
        patterns = _key_patterns(statements[lid], S3_WRITE_ACTIONS - {"s3:DeleteObject"})
        if patterns != allowed:
            problems.append(f"{lid}: writes {sorted(patterns)}, expected {sorted(allowed)}")
        if any(p == "*" or p.startswith("raw/") for p in patterns):
            problems.append(f"{lid}: may write under raw/ (uploads)")
    assert not problems, "\n".join(problems)
    # the ISR workers are also denied raw/ explicitly, whatever else a policy may add later
    isr_denied = {
        p
        for s in statements["IsrFunction"]
        if s.get("Effect") == "Deny"
        for r in _as_list(s.get("Resource", []))
        for p in _strings(r)
    }
    assert "arn:${AWS::Partition}:s3:::${DataBucket}/raw/*" in isr_denied
    # only DeleteIntermediates deletes, and only intermediates
    deleters = {lid: _key_patterns(st, {"s3:DeleteObject"}) for lid, st in statements.items()}
    assert {lid: p for lid, p in deleters.items() if p} == {
        "DeleteIntermediatesFunction": {"*/cpBiasProc/*", "*/cpDarkProc/*", "*/cpFlatProc/*"}
    }


def test_the_sam_template_table_matches_samtranslator():
    """SAM_TEMPLATES is transcribed from the installed SAM translator (skipped without the tools venv)."""
    found = sorted(
        (REPO / ".tools-venv").glob(
            "lib/python*/site-packages/samtranslator/policy_templates_data/policy_templates.json"
        )
    )
    if not found:
        pytest.skip(".tools-venv has no samtranslator; install it with `make tools`")
    templates = json.loads(found[0].read_text())["Templates"]
    for name, actions in SAM_TEMPLATES.items():
        statements = templates[name]["Definition"]["Statement"]
        assert {a for s in statements for a in _as_list(s["Action"])} == actions, name
