"""isrflow.local.sam_template: the local runtime reads template.yaml the way CloudFormation/SAM would.

Most checks run on the real template.yaml, so they also pin the properties the local runtime and
the deployment both rely on (batched writer, redrive, ISR outside the VPC, substitutions).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from isrflow.local.sam_template import (
    LocalApp,
    Reference,
    TemplateError,
    Whole,
    default_resolver,
    dockerfile_cmd,
    dockerfile_task_root_files,
    load_app,
    load_template,
    substitute_definition,
)

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
REGISTRY_FUNCTIONS = {
    "PlanFunction",
    "SummarizeFunction",
    "RegistryWriterFunction",
    "CalibPlanFunction",
    "SummarizeCalibFunction",
    "MigrateFunction",
}
#: zip functions on the registry layer that never open the registry (one step each, outside the VPC)
STEP_FUNCTIONS = {
    "RecordFailureFunction",
    "NormalizeFlatsFunction",
    "PrepareCombineFunction",
    "RecordCombineFailureFunction",
    "DeleteIntermediatesFunction",
    "CertifyCalibFunction",
}
ALL_FUNCTIONS = (
    REGISTRY_FUNCTIONS
    | STEP_FUNCTIONS
    | {"IsrFunction", "MosaicFunction", "IngestFunction", "CombineFunction"}
)
SUBSTITUTIONS = {
    "PlanFunctionArn",
    "IsrFunctionArn",
    "RecordFailureFunctionArn",
    "MosaicFunctionArn",
    "SummarizeFunctionArn",
    "DataBucketName",
}
CALIB_SUBSTITUTIONS = {
    "CalibPlanFunctionArn",
    "IsrFunctionArn",
    "RecordFailureFunctionArn",
    "NormalizeFlatsFunctionArn",
    "PrepareCombineFunctionArn",
    "CombineFunctionArn",
    "RecordCombineFailureFunctionArn",
    "DeleteIntermediatesFunctionArn",
    "CertifyCalibFunctionArn",
    "SummarizeCalibFunctionArn",
    "DataBucketName",
    "CombineClusterArn",
    "CombineTaskDefinitionArn",
    "CombineSubnetIds",
    "CombineSecurityGroupIds",
    "CombineAssignPublicIp",
}


@pytest.fixture(scope="module")
def app() -> LocalApp:
    return load_app(TEMPLATE)


# --- YAML short tags ----------------------------------------------------------------------------


def test_short_tags_become_long_forms(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent("""\
        AWSTemplateFormatVersion: 2010-09-09
        Conditions:
          C: !Equals [!Ref P, "x"]
          D: !Not [!Condition C]
          E: !And [!Condition C, !Or [!Condition D, !Equals [a, a]]]
        Resources:
          R:
            Type: AWS::SQS::Queue
            Properties:
              A: !Ref X
              B: !GetAtt X.Arn
              B2: !GetAtt [X, Arn]
              C: !Sub "${X}-${AWS::Region}"
              D: !If [C, 1, 2]
              E: !Select [0, !Split [",", "a,b"]]
              F: !Join ["-", [a, b]]
              G: !GetAZs ""
              H: !FindInMap [M, k, v]
              I: !ImportValue exported
              J: !Base64 abc
        """)
    )
    t = load_template(path)
    assert t["AWSTemplateFormatVersion"] == "2010-09-09"  # not a datetime.date
    assert t["Conditions"]["C"] == {"Fn::Equals": [{"Ref": "P"}, "x"]}
    assert t["Conditions"]["D"] == {"Fn::Not": [{"Condition": "C"}]}
    assert t["Conditions"]["E"] == {
        "Fn::And": [{"Condition": "C"}, {"Fn::Or": [{"Condition": "D"}, {"Fn::Equals": ["a", "a"]}]}]
    }
    p = t["Resources"]["R"]["Properties"]
    assert p["A"] == {"Ref": "X"}
    assert p["B"] == p["B2"] == {"Fn::GetAtt": ["X", "Arn"]}
    assert p["C"] == {"Fn::Sub": "${X}-${AWS::Region}"}
    assert p["D"] == {"Fn::If": ["C", 1, 2]}
    assert p["E"] == {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]}
    assert p["F"] == {"Fn::Join": ["-", ["a", "b"]]}
    assert p["G"] == {"Fn::GetAZs": ""}
    assert p["H"] == {"Fn::FindInMap": ["M", "k", "v"]}
    assert p["I"] == {"Fn::ImportValue": "exported"}
    assert p["J"] == {"Fn::Base64": "abc"}


def test_the_real_template_parses_to_plain_data():
    t = load_template(TEMPLATE)
    json.dumps(t)  # only dicts, lists, strings, numbers, booleans
    assert t["Transform"] == "AWS::Serverless-2016-10-31"
    assert t["Resources"]["ProcessVisitStateMachine"]["Properties"]["DefinitionSubstitutions"][
        "PlanFunctionArn"
    ] == {"Fn::GetAtt": ["PlanFunction", "Arn"]}


# --- intrinsic evaluation on a small template ------------------------------------------------------


SMALL = """\
Parameters:
  Env: {Type: String, Default: dev, AllowedValues: [dev, prod]}
  Subnets: {Type: CommaDelimitedList, Default: "a,b,c"}
  Size: {Type: Number, Default: 256, MinValue: 128, MaxValue: 1024}
Mappings:
  Sizes:
    dev: {mem: "512"}
    prod: {mem: "2048"}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
  Both: !And [!Condition NotProd, !Or [!Equals [x, y], !Equals [!Select [1, !Ref Subnets], b]]]
Globals:
  Function:
    Timeout: 30
    Layers: [!Ref Lib]
    Environment:
      Variables:
        COMMON: !Sub "${AWS::StackName}-${Env}"
        DATA: !Sub "s3://${Bucket}/prefix"
Resources:
  Bucket: {Type: AWS::S3::Bucket}
  Lib:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: lib/}
  ProdOnly:
    Type: AWS::SQS::Queue
    Condition: IsProd
  Q:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      RedrivePolicy: {deadLetterTargetArn: !GetAtt DLQ.Arn, maxReceiveCount: 3}
  DLQ: {Type: AWS::SQS::Queue}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: pkg.mod.handle
      Runtime: python3.12
      MemorySize: !FindInMap [Sizes, !Ref Env, mem]
      Environment:
        Variables:
          OWN: !Join [":", [!Select [0, !Ref Subnets], !Select [2, !Split [",", "p,q,r"]]]]
          AZ: !Select [0, !GetAZs ""]
          IMPORTED: !ImportValue shared-thing
          LITERAL: !Sub "${!NotAVariable}"
          VARS: !Sub ["${A}/${B}", {A: !Ref Size, B: !GetAtt Q.QueueName}]
          COND: !If [Both, "yes", "no"]
          GONE: !If [IsProd, !GetAtt ProdOnly.Arn, !Ref AWS::NoValue]
      Events:
        Drain:
          Type: SQS
          Properties:
            Queue: !GetAtt Q.Arn
            BatchSize: 100
            MaximumBatchingWindowInSeconds: 2
  Sm:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: sm.asl.json
      DefinitionSubstitutions:
        FnArn: !GetAtt Fn.Arn
        BucketName: !Ref Bucket
Outputs:
  Q: {Value: !Ref Q}
  Prod: {Condition: IsProd, Value: !GetAtt ProdOnly.Arn}
"""


@pytest.fixture
def small(tmp_path) -> Path:
    (tmp_path / "template.yaml").write_text(SMALL)
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "mod.py").write_text("def handle(event, context):\n    return event\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "sm.asl.json").write_text(
        json.dumps(
            {
                "StartAt": "A",
                "States": {
                    "A": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::lambda:invoke",
                        "Parameters": {"FunctionName": "${FnArn}", "Bucket": "${BucketName}"},
                        "End": True,
                    }
                },
            }
        )
    )
    return tmp_path / "template.yaml"


def test_small_template_defaults(small):
    app = load_app(small, stack_name="stk")
    fn = app.functions["Fn"]
    assert fn.code_dir == small.parent / "src"
    assert (fn.handler_module, fn.handler_attribute) == ("pkg.mod", "handle")
    assert fn.handler_file == small.parent / "src" / "pkg" / "mod.py"
    assert fn.memory_mb == 512 and fn.timeout_s == 30  # FindInMap; timeout from Globals
    assert fn.layers == ["Lib"] and fn.layer_dirs == [small.parent / "lib"]
    assert fn.environment == {
        "COMMON": "stk-dev",
        "DATA": "s3://bucket/prefix",
        "OWN": "a:r",
        "AZ": "locala",
        "IMPORTED": "shared-thing",
        "LITERAL": "${NotAVariable}",
        "VARS": "256/Q",
        "COND": "yes",
    }
    assert "ProdOnly" not in app.queues and app.conditions == {"IsProd": False, "NotProd": True, "Both": True}
    assert app.queues["Q"].dead_letter_target == "DLQ" and app.queues["Q"].max_receive_count == 3
    assert app.queues["Q"].visibility_timeout_s == 60 and app.queues["DLQ"].visibility_timeout_s == 30
    (esm,) = app.event_source_mappings
    assert (esm.function, esm.queue, esm.batch_size, esm.batching_window_s) == ("Fn", "Q", 100, 2)
    assert esm.max_concurrency is None and not esm.report_batch_item_failures
    assert app.outputs == {"Q": "Q"}
    sm = app.state_machines["Sm"]
    assert sm.definition()["States"]["A"]["Parameters"] == {
        "FunctionName": "arn:aws:lambda:local:000000000000:function:Fn",
        "Bucket": "bucket",
    }
    assert app.function(sm.substitutions["FnArn"]) is fn
    assert app.function(fn.arn + ":$LATEST") is fn


def test_small_template_with_parameters(small):
    app = load_app(small, {"Env": "prod", "Subnets": ["x", "y"], "Size": 1024})
    fn = app.functions["Fn"]
    assert fn.memory_mb == 2048
    assert fn.environment["OWN"] == "x:r" and fn.environment["VARS"] == "1024/Q"
    assert fn.environment["COND"] == "no"
    assert fn.environment["GONE"] == "arn:aws:sqs:local:000000000000:ProdOnly"
    assert "ProdOnly" in app.queues and "Prod" in app.outputs


def test_resolver_supplies_local_values(small):
    seen: list[Reference] = []

    def resolver(ref: Reference):
        seen.append(ref)
        if ref.logical_id == "Bucket" and ref.where.endswith(".DATA"):
            return Whole("file:///data/root")
        if ref.resource_type == "AWS::SQS::Queue" and ref.attribute == "QueueName":
            return "sqlite:///q.db#" + ref.logical_id
        return None

    app = load_app(small, resolver=resolver)
    assert app.functions["Fn"].environment["DATA"] == "file:///data/root"
    assert app.functions["Fn"].environment["VARS"] == "256/sqlite:///q.db#Q"
    assert app.state_machines["Sm"].substitutions["BucketName"] == "bucket"  # elsewhere: the default
    assert any(
        r.where == "Resources.Sm.Properties.DefinitionSubstitutions.FnArn" and r.kind == "GetAtt"
        for r in seen
    )


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"Nope": "1"}, "unknown template parameter"),
        ({"Env": "staging"}, "is not one of"),
        ({"Size": "4096"}, "outside"),
        ({"Size": "big"}, "not a number"),
    ],
)
def test_bad_parameters_are_rejected(small, parameters, message):
    with pytest.raises(TemplateError, match=message):
        load_app(small, parameters)


def test_reference_to_a_resource_that_is_not_created(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent("""\
        Conditions:
          Never: !Equals [a, b]
        Resources:
          Gone: {Type: AWS::SQS::Queue, Condition: Never}
          F:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: .
              Handler: app.h
              Environment: {Variables: {Q: !Ref Gone}}
        """)
    )
    with pytest.raises(TemplateError, match="not created"):
        load_app(path)


def test_substitute_definition_requires_every_placeholder():
    assert substitute_definition('{"a": "${X}"}', {"X": "1"}) == '{"a": "1"}'
    with pytest.raises(TemplateError, match="Y"):
        substitute_definition('{"a": "${X}", "b": "${Y}"}', {"X": "1"})


def test_dockerfile_cmd_forms(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text('FROM x\nCMD ["first.h"]\n# CMD ["commented.h"]\nCMD [ "app.lambda_handler" ]\n')
    assert dockerfile_cmd(path) == ["app.lambda_handler"]
    path.write_text("FROM x\nCMD app.handler \\\n  extra\n")
    assert dockerfile_cmd(path) == ["app.handler", "extra"]


def test_dockerfile_stages_give_each_target_its_cmd_and_task_root_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "app.py").write_text("")
    (tmp_path / "a" / "run.py").write_text("")
    path = tmp_path / "Dockerfile"
    path.write_text(
        'ARG BASE=x\nFROM ${BASE} AS lib\nCOPY a/run.py /var/task/\nCMD ["lib.h"]\n'
        'FROM lib AS one\nCOPY a/app.py ${LAMBDA_TASK_ROOT}/\nCMD ["app.one"]\n'
        'FROM lib AS two\nCMD ["app.two"]\n'
    )
    assert dockerfile_cmd(path, "one") == ["app.one"] and dockerfile_cmd(path, "two") == ["app.two"]
    assert dockerfile_cmd(path, "lib") == ["lib.h"] and dockerfile_cmd(path) == ["app.two"]
    assert dockerfile_task_root_files(path, tmp_path, "one") == {
        "run.py": tmp_path / "a" / "run.py",
        "app.py": tmp_path / "a" / "app.py",
    }
    assert dockerfile_task_root_files(path, tmp_path, "two") == {"run.py": tmp_path / "a" / "run.py"}
    with pytest.raises(TemplateError, match="no stage named"):
        dockerfile_cmd(path, "three")


def test_default_resolver_placeholders():
    fn = Reference(kind="GetAtt", logical_id="X", attribute="Arn", resource_type="AWS::Serverless::Function")
    assert default_resolver(fn) == "arn:aws:lambda:local:000000000000:function:X"
    q = Reference(kind="Ref", logical_id="Q", resource_type="AWS::SQS::Queue")
    assert default_resolver(q) == "Q"


# --- the real template.yaml ----------------------------------------------------------------------


def test_functions_and_handlers(app):
    assert set(app.functions) == ALL_FUNCTIONS
    for lid in REGISTRY_FUNCTIONS | STEP_FUNCTIONS:
        fn = app.functions[lid]
        assert fn.package_type == "Zip" and fn.runtime == "python3.12"
        assert fn.handler.startswith("app.") and fn.handler.endswith("_handler")
        assert fn.layers == ["RegistryLayer"] and fn.layer_dirs == [REPO / "layers" / "isrflow"]
    assert app.functions["PlanFunction"].handler_file == REPO / "functions" / "plan" / "app.py"
    assert app.functions["SummarizeFunction"].handler_file == REPO / "functions" / "summarize" / "app.py"
    assert (
        app.functions["RegistryWriterFunction"].handler_file
        == REPO / "functions" / "registry_writer" / "app.py"
    )
    isr = app.functions["IsrFunction"]
    assert isr.package_type == "Image" and isr.runtime is None and isr.layers == []
    assert isr.dockerfile == REPO / "functions" / "Dockerfile" and isr.docker_context == REPO
    assert isr.code_dir == REPO / "functions" / "isr" and isr.handler == "app.isr_handler"
    assert isr.handler_file == REPO / "functions" / "isr" / "app.py"
    assert (isr.memory_mb, isr.timeout_s) == (1769, 900)  # one vCPU, sized from the measured peak
    assert {a for f in app.functions.values() for a in f.architectures} == {"arm64"}  # one architecture


def test_isr_parameters(app):
    tuned = load_app(TEMPLATE, {"IsrMemorySize": 2048, "IsrTimeout": "600"})
    assert (tuned.functions["IsrFunction"].memory_mb, tuned.functions["IsrFunction"].timeout_s) == (2048, 600)


def test_environment(app):
    for fn in app.functions.values():
        env = fn.environment
        assert env["POWERTOOLS_SERVICE_NAME"].startswith("isrflow-")
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "isrflow"
        assert env["ISRFLOW_DATASTORE_ROOT"] == "s3://" + app.buckets["DataBucket"].name
        assert env["ISRFLOW_REGISTRY_QUEUE_URL"] == app.queues["RegistryQueue"].url
        registry = fn.logical_id in REGISTRY_FUNCTIONS
        assert ("ISRFLOW_REGISTRY_SECRET_ARN" in env) is registry
        assert ("ISRFLOW_REGISTRY_URL" in env) is registry
    assert len({fn.environment["POWERTOOLS_SERVICE_NAME"] for fn in app.functions.values()}) == len(
        app.functions
    )


def test_environment_with_a_local_resolver(tmp_path):
    root = tmp_path / "repo"

    def resolver(ref: Reference):
        if ref.logical_id == "DataBucket" and "Environment" in ref.where:
            return Whole(f"file://{root}/datastore")
        if ref.resource_type == "AWS::SQS::Queue" and ref.attribute is None:
            return f"sqlite:///{root}/queues.db#{ref.logical_id}"
        return None

    local = load_app(TEMPLATE, resolver=resolver)
    for fn in local.functions.values():
        assert fn.environment["ISRFLOW_DATASTORE_ROOT"] == f"file://{root}/datastore"
        assert fn.environment["ISRFLOW_REGISTRY_QUEUE_URL"] == f"sqlite:///{root}/queues.db#RegistryQueue"
    assert local.state_machines["ProcessVisitStateMachine"].substitutions["DataBucketName"] == "databucket"


def test_registry_secret_parameter_and_created_registry():
    existing = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:isrflow-registry-AbCdEf"
    app = load_app(TEMPLATE, {"RegistrySecretArn": existing, "CreateRegistryRoles": "false"})
    for lid in REGISTRY_FUNCTIONS:
        assert app.functions[lid].environment["ISRFLOW_REGISTRY_SECRET_ARN"] == existing
        assert not app.functions[lid].in_vpc
    assert app.outputs["RegistryCredentialsSecretArn"] == existing
    assert app.functions["MigrateFunction"].environment["ISRFLOW_REGISTRY_WRITER_SECRET_ARN"] == ""

    # By default the migration creates least-privilege roles: only it keeps the master secret.
    roles = load_app(TEMPLATE, {"RegistrySecretArn": existing})
    secret = "arn:aws:secretsmanager:local:000000000000:secret:Registry{}Secret"
    expected = {
        "PlanFunction": "Reader",
        "SummarizeFunction": "Reader",
        "CalibPlanFunction": "Reader",
        "SummarizeCalibFunction": "Reader",
        "RegistryWriterFunction": "Writer",
    }
    for lid, which in expected.items():
        assert roles.functions[lid].environment["ISRFLOW_REGISTRY_SECRET_ARN"] == secret.format(which)
    migrate = roles.functions["MigrateFunction"].environment
    assert migrate["ISRFLOW_REGISTRY_SECRET_ARN"] == existing
    assert (migrate["ISRFLOW_REGISTRY_WRITER_SECRET_ARN"], migrate["ISRFLOW_REGISTRY_READER_SECRET_ARN"]) == (
        secret.format("Writer"),
        secret.format("Reader"),
    )

    created = load_app(
        TEMPLATE,
        {
            "CreateRegistry": "true",
            "VpcId": "vpc-0123456789abcdef0",
            "PrivateSubnetIds": "subnet-a,subnet-b",
            "PrivateRouteTableIds": "rtb-1",
        },
    )
    assert created.conditions["CreateRegistryCond"] and created.conditions["CreateS3EndpointCond"]
    for lid in REGISTRY_FUNCTIONS:
        env = created.functions[lid].environment
        assert env["ISRFLOW_REGISTRY_SECRET_ARN"] == (
            "arn:aws:secretsmanager:local:000000000000:secret:RegistryDatabase"
            if lid == "MigrateFunction"
            else secret.format("Writer" if lid == "RegistryWriterFunction" else "Reader")
        )
        assert env["ISRFLOW_REGISTRY_URL"] == "postgresql+psycopg://localhost:5432/isrflow?sslmode=require"
        assert created.functions[lid].in_vpc
    assert not created.functions["IsrFunction"].in_vpc  # workers never touch the database
    assert created.outputs["RegistryEndpoint"] == "localhost:5432"


def test_registry_queue_and_writer_mapping(app):
    queue = app.queues["RegistryQueue"]
    assert queue.max_receive_count == 5 and queue.dead_letter_target == "RegistryDeadLetterQueue"
    assert app.queues["RegistryDeadLetterQueue"].message_retention_s == 14 * 24 * 3600
    (esm,) = app.mappings_for("RegistryWriterFunction")
    assert esm.queue == "RegistryQueue" and app.mappings_for("RegistryQueue") == [esm]
    assert esm.batch_size >= 1000 and esm.batching_window_s >= 1
    assert esm.max_concurrency == 2 and esm.report_batch_item_failures and esm.enabled
    writer = app.functions["RegistryWriterFunction"]
    assert queue.visibility_timeout_s >= 6 * writer.timeout_s + esm.batching_window_s
    give_up = int(writer.environment["ISRFLOW_REGISTRY_GIVE_UP_AFTER"])
    assert 0 < give_up < queue.max_receive_count


def test_state_machine(app):
    assert set(app.state_machines) == {"ProcessVisitStateMachine", "BuildCalibrationStateMachine"}
    sm = app.state_machines["ProcessVisitStateMachine"]
    assert sm.logical_id == "ProcessVisitStateMachine" and sm.type == "STANDARD"
    assert sm.definition_path == REPO / "statemachines" / "process_visit.asl.json"
    assert set(sm.substitutions) == SUBSTITUTIONS
    assert sm.substitutions["PlanFunctionArn"] == "arn:aws:lambda:local:000000000000:function:PlanFunction"
    assert sm.substitutions["DataBucketName"] == app.buckets["DataBucket"].name
    for key, function in [
        ("PlanFunctionArn", "PlanFunction"),
        ("IsrFunctionArn", "IsrFunction"),
        ("SummarizeFunctionArn", "SummarizeFunction"),
    ]:
        assert app.function(sm.substitutions[key]).logical_id == function
    if sm.definition_path.exists():
        definition = sm.definition()
        assert "${" not in json.dumps(definition)


def test_build_calibration_state_machine(app):
    sm = app.state_machines["BuildCalibrationStateMachine"]
    assert (
        sm.type == "STANDARD" and sm.definition_path == REPO / "statemachines" / "build_calibration.asl.json"
    )
    assert set(sm.substitutions) == CALIB_SUBSTITUTIONS
    for key, function in [
        ("CalibPlanFunctionArn", "CalibPlanFunction"),
        ("IsrFunctionArn", "IsrFunction"),
        ("CombineFunctionArn", "CombineFunction"),
        ("SummarizeCalibFunctionArn", "SummarizeCalibFunction"),
    ]:
        assert app.function(sm.substitutions[key]).logical_id == function
    assert sm.substitutions["CombineAssignPublicIp"] == "DISABLED"  # private tasks unless asked otherwise
    assert "${" not in json.dumps(sm.definition())
    combine = app.functions["CombineFunction"]
    assert (
        combine.package_type == "Image" and combine.handler_file == REPO / "functions" / "combine" / "app.py"
    )
    plan_env = app.functions["PrepareCombineFunction"].environment
    assert (
        int(plan_env["ISRFLOW_COMBINE_LAMBDA_MEMORY_MB"]),
        int(plan_env["ISRFLOW_COMBINE_LAMBDA_TIMEOUT_S"]),
    ) == (combine.memory_mb, combine.timeout_s)


def test_outputs_cover_every_arn_bucket_and_queue(app):
    for lid in ALL_FUNCTIONS:
        assert app.functions[lid].arn in app.outputs.values()
    for sm in app.state_machines.values():
        assert sm.arn in app.outputs.values()
    assert app.buckets["DataBucket"].name in app.outputs.values()
    assert {app.queues["RegistryQueue"].url, app.queues["RegistryQueue"].arn} <= set(app.outputs.values())


def test_importable_without_the_science_stack():
    code = (
        "import sys, isrflow.local.sam_template; "
        "heavy = {'numpy', 'astropy', 'scipy'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
