"""template.yaml wiring of the upload trigger: S3 Object Created under raw/ (EventBridge) -> IngestFunction."""

from __future__ import annotations

from pathlib import Path

from isrflow.local.sam_template import load_app, load_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"


def test_event_bridge_rule_sends_raw_uploads_of_the_data_bucket_to_ingest():
    template = load_template(TEMPLATE)
    resources = template["Resources"]
    assert resources["DataBucket"]["Properties"]["NotificationConfiguration"]["EventBridgeConfiguration"] == {
        "EventBridgeEnabled": True
    }
    events = resources["IngestFunction"]["Properties"]["Events"]
    (event,) = events.values()
    assert event["Type"] == "EventBridgeRule"
    pattern = event["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"] == {
        "bucket": {"name": [{"Ref": "DataBucket"}]},
        "object": {"key": [{"prefix": "raw/"}]},
    }


def test_ingest_function_runs_on_the_registry_layer_outside_the_vpc():
    app = load_app(
        TEMPLATE,
        {
            "VpcId": "vpc-0123456789abcdef0",
            "PrivateSubnetIds": "subnet-a,subnet-b",
            "RegistrySecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x",
            "PromptProcessing": "true",
            "PromptOutputRun": "{instrument}/nightly/{day_obs}",
        },
    )
    fn = app.functions["IngestFunction"]
    assert fn.package_type == "Zip" and fn.layers == ["RegistryLayer"] and not fn.in_vpc
    assert fn.handler_file == REPO / "functions" / "ingest" / "app.py"
    env = fn.environment
    assert env["ISRFLOW_PROCESS_VISIT_ARN"] == app.state_machines["ProcessVisitStateMachine"].arn
    assert (env["ISRFLOW_PROMPT_PROCESSING"], env["ISRFLOW_PROMPT_OUTPUT_RUN"]) == (
        "true",
        "{instrument}/nightly/{day_obs}",
    )
    assert (
        "ISRFLOW_REGISTRY_URL" not in env and "ISRFLOW_REGISTRY_SECRET_ARN" not in env
    )  # never opens the database
    assert load_app(TEMPLATE).functions["IngestFunction"].environment["ISRFLOW_PROMPT_PROCESSING"] == "false"


def test_ingest_may_start_only_process_visit():
    props = load_template(TEMPLATE)["Resources"]["IngestFunction"]["Properties"]
    statements = [
        s for p in props["Policies"] if isinstance(p, dict) and "Statement" in p for s in p["Statement"]
    ]
    starts = [s for s in statements if "states:StartExecution" in s["Action"]]
    assert [s["Resource"] for s in starts] == [[{"Ref": "ProcessVisitStateMachine"}]]
    assert props["DeadLetterQueue"]["TargetArn"] == {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]}
