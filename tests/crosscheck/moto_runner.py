"""Run executions of a project state machine in moto's Step Functions interpreter.

Usage (a subprocess of tests/crosscheck/test_moto_crosscheck.py)::

    python tests/crosscheck/moto_runner.py SPEC

SPEC is JSON (or the path of a file holding it): one run, or a list of runs (each in its own
fresh ``mock_aws``, so a batch pays moto's ~2 s import once)::

    {"asl_path": "statemachines/process_visit.asl.json",
     "machine_name": "ProcessVisit",
     "substitutions": {"PlanFunctionArn": "...", "DataBucketName": "...", ...},
     "bucket": "isrflow-data-123456789012",
     "objects": {"manifests/.../clusters.json": "<text>"},
     "execution_name": "all-succeed",
     "input": {...},
     "timeout_seconds": 60}

and the script prints on stdout one JSON object per run (a list for a list)::

    {"status": "SUCCEEDED" | "FAILED" | ..., "output": <parsed output or null>,
     "error": <error name or null>, "cause": <cause or null>, "execution_arn": ...,
     "map_runs": [{"status", "maxConcurrency", "itemCounts"}, ...],
     "invocations": [{"function": name, "event": payload, "error": error name or null}, ...],
     "written": {key: text} of the objects the run wrote to the bucket (ResultWriter manifests)}

or ``{"runner_error": traceback}`` for a run that raised (e.g. moto rejected the definition).

Lambda functions are the deterministic stubs of ``stub_handlers.HANDLERS`` (keyed by function
name), dispatched in this process: moto's interpreter calls ``lambda:invoke`` through boto3, which
``mock_aws`` routes to the Lambda backend, whose ``invoke`` is replaced here.

Written for, and pinned to, moto 5.2.5 (``MOTO_VERSION``): with any other version the script
prints ``{"skip": reason}`` and exits with ``EXIT_SKIP`` so the test skips with that reason
instead of failing on some changed internal. EVERY moto patch of the cross-check lives in this
file, in :func:`install_moto_patches`:

1. ``moto.awslambda_simple.models.LambdaSimpleBackend.invoke`` (the Lambda backend used with
   ``config={"lambda": {"use_docker": False}}``) runs the stub handler named by the function
   name or ARN. A handler exception becomes an unhandled function error the way the Lambda
   runtime reports it: header ``x-amz-function-error: Unhandled`` and the payload
   ``{"errorMessage", "errorType", "requestId", "stackTrace"}``; moto's interpreter then fails
   the Task with error = ``errorType`` (the exception class name), cause = the payload. An
   unknown function raises moto's ``UnknownFunctionException`` (AWS: 404
   ResourceNotFoundException). The simple backend never looks functions up, so none are
   created in moto.

No other moto internal is patched: with stock moto 5.2.5 the constructs
process_visit.asl.json uses (Distributed Map with an s3:getObject JSON ItemReader,
MaxConcurrencyPath, ItemSelector with $$.Map.Item.Value, ResultSelector on the Map's child
Tasks, per-item Catch, ResultPath null, Choice with Default, OutputPath) run as on AWS for the
cross-check's scenarios. Known moto 5.2.5 gaps the project's ASL must keep avoiding (see
/work/shared/reference/local-runtime-notes.md): ItemBatcher, ToleratedFailure*, a ResultWriter
``WriterConfig`` (rejected), ``.sync`` integrations, ``$.a[0].b`` paths. moto's ResultWriter
(Bucket + Prefix) runs but writes only an empty ``manifest.json`` (no result files): the
cross-check compares where the manifests are written, not what they list.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

MOTO_VERSION = "5.2.5"
EXIT_SKIP = 75  # the test turns this into pytest.skip(reason)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for p in (str(HERE), str(ROOT), str(ROOT / "layers" / "isrflow")):
    if p not in sys.path:
        sys.path.insert(0, p)

_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")
_INVOCATIONS: list[dict[str, Any]] = []
_LOCK = threading.Lock()


def function_name_of(ref: str) -> str:
    """The function name in a name or a (partial) ARN, without a qualifier."""
    parts = ref.split(":")
    if ref.startswith("arn:") and len(parts) >= 7:
        return parts[6]
    if len(parts) >= 3 and parts[1] == "function":
        return parts[2]
    return parts[0]


def substitute(text: str, substitutions: dict[str, str]) -> str:
    """``${Key}`` → value, as SAM's DefinitionSubstitutions does; an unknown key is an error."""
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(text)} - set(substitutions))
    if missing:
        raise KeyError(f"no substitution for {missing}")
    return _PLACEHOLDER.sub(lambda m: str(substitutions[m.group(1)]), text)


class _Context:
    """The Lambda context object the stubs receive (they do not use it)."""

    def __init__(self, name: str, request_id: str):
        self.function_name = name
        self.aws_request_id = request_id
        self.invoked_function_arn = name


def install_moto_patches(handlers: dict[str, Any]) -> None:
    """The one place moto is patched (see the module docstring)."""
    from moto.awslambda.exceptions import UnknownFunctionException
    from moto.awslambda_simple.models import LambdaSimpleBackend

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        name = function_name_of(function_name)
        handler = handlers.get(name)
        if handler is None:
            raise UnknownFunctionException(function_name)
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        event = json.loads(body) if body else {}
        request_id = str(uuid.uuid4())
        record = {"function": name, "event": event, "error": None}
        try:
            result = handler(event, _Context(name, request_id))
            payload = json.dumps(result)
        except Exception as exc:
            record["error"] = type(exc).__name__
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = json.dumps(
                {
                    "errorMessage": str(exc),
                    "errorType": type(exc).__name__,
                    "requestId": request_id,
                    "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)),
                }
            )
        with _LOCK:
            _INVOCATIONS.append(record)
        return payload.encode("utf-8")

    LambdaSimpleBackend.invoke = invoke


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import boto3
    import stub_handlers
    from moto import mock_aws

    install_moto_patches(stub_handlers.HANDLERS)
    stub_handlers.reset()
    with _LOCK:
        _INVOCATIONS.clear()
    region = spec.get("region", "us-east-1")
    config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    with mock_aws(config=config):
        if spec.get("bucket"):
            s3 = boto3.client("s3", region_name=region)
            s3.create_bucket(Bucket=spec["bucket"])
            for key, body in (spec.get("objects") or {}).items():
                s3.put_object(Bucket=spec["bucket"], Key=key, Body=body.encode("utf-8"))
        sfn = boto3.client("stepfunctions", region_name=region)
        asl_path = Path(spec["asl_path"])
        if not asl_path.is_absolute():
            asl_path = ROOT / asl_path
        definition = substitute(asl_path.read_text(encoding="utf-8"), spec.get("substitutions") or {})
        machine = sfn.create_state_machine(
            name=spec["machine_name"],
            definition=definition,
            roleArn=f"arn:aws:iam::{spec.get('account', '123456789012')}:role/isrflow-crosscheck",
        )
        arn = sfn.start_execution(
            stateMachineArn=machine["stateMachineArn"],
            name=spec["execution_name"],
            input=json.dumps(spec.get("input", {})),
        )["executionArn"]
        deadline = time.monotonic() + float(spec.get("timeout_seconds", 60))
        while True:
            desc = sfn.describe_execution(executionArn=arn)
            if desc["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                sfn.stop_execution(
                    executionArn=arn, error="CrossCheck.Timeout", cause="moto_runner gave up waiting"
                )
                return {
                    "status": "RUNNING",
                    "output": None,
                    "error": "CrossCheck.Timeout",
                    "cause": f"still RUNNING after {spec.get('timeout_seconds', 60)} s",
                    "execution_arn": arn,
                    "invocations": _invocations(),
                }
            time.sleep(0.05)
        if desc["status"] == "SUCCEEDED":
            # moto can report SUCCEEDED before it has stored the output: re-read once
            time.sleep(0.1)
            desc = sfn.describe_execution(executionArn=arn)
        output = desc.get("output")
        return {
            "status": desc["status"],
            "output": json.loads(output) if output is not None else None,
            "error": desc.get("error"),
            "cause": desc.get("cause"),
            "execution_arn": arn,
            "map_runs": _map_runs(sfn, arn),
            "invocations": _invocations(),
            "written": _written(spec, region),
        }


def _map_runs(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """DescribeMapRun of each Distributed Map run of the execution: status, maxConcurrency, itemCounts."""
    runs = []
    for item in sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", []):
        d = sfn.describe_map_run(mapRunArn=item["mapRunArn"])
        runs.append(
            {"status": d["status"], "maxConcurrency": d["maxConcurrency"], "itemCounts": d["itemCounts"]}
        )
    return runs


def _written(spec: dict[str, Any], region: str) -> dict[str, str]:
    """The objects in the bucket that the run wrote (not those the spec uploaded)."""
    import boto3

    if not spec.get("bucket"):
        return {}
    s3 = boto3.client("s3", region_name=region)
    uploaded = set(spec.get("objects") or {})
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=spec["bucket"]):
        for obj in page.get("Contents", []):
            if obj["Key"] not in uploaded:
                body = s3.get_object(Bucket=spec["bucket"], Key=obj["Key"])["Body"].read()
                out[obj["Key"]] = body.decode("utf-8")
    return out


def _invocations() -> list[dict[str, Any]]:
    with _LOCK:
        return list(_INVOCATIONS)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    arg = argv[1]
    spec = json.loads(arg if arg.lstrip()[:1] in ("{", "[") else Path(arg).read_text(encoding="utf-8"))
    specs = spec if isinstance(spec, list) else [spec]
    import moto

    if moto.__version__ != MOTO_VERSION:
        print(
            json.dumps(
                {
                    "skip": f"moto_runner.py patches moto {MOTO_VERSION} internals; installed moto is "
                    f"{moto.__version__}: re-check the patches and update MOTO_VERSION"
                }
            )
        )
        return EXIT_SKIP
    assert moto.__version__ == MOTO_VERSION
    for var, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_SESSION_TOKEN", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ[var] = value  # fake credentials: mock_aws never lets a call out
    os.environ.pop("AWS_PROFILE", None)
    results = []
    for one in specs:
        try:
            results.append(run(one))
        except Exception:
            results.append({"runner_error": traceback.format_exc()})
    print(json.dumps(results if isinstance(spec, list) else results[0]))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
