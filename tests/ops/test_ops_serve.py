"""`isrflow local serve`: the real AWS CLI (awscli, tools venv) and boto3 drive the template's state
machine on the local runtime through the Step Functions API (AWS JSON 1.0), on an ephemeral port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from ops_helpers import CALIB_COLLECTION, make_prompt_repo

from isrflow.ops.aws_status import aws_status
from isrflow.ops.prices import load_prices
from isrflow.ops.status import execution_status
from isrflow.registry import ingest
from tests.fake_aws import FAKE_AWS_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
AWS_CLI = REPO_ROOT / ".tools-venv" / "bin" / "aws"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture
def served(tmp_path):
    if not AWS_CLI.exists():
        message = f"{AWS_CLI} is missing; install it with `make tools`"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    repo = make_prompt_repo(tmp_path)
    assert ingest(repo.registry, [r.path for r in repo.night.raws]).ok
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from isrflow.cli import main; main()",
            "local",
            "serve",
            "--repo",
            str(repo.root),
            "--port",
            "0",
            "--workers",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        first = server.stdout.readline()
        assert first.startswith("isrflow local serve: http://127.0.0.1:"), first + server.stderr.read()
        endpoint = first.split()[3]
        yield repo, endpoint, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _aws(endpoint: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, **FAKE_AWS_ENV}
    env.pop("AWS_PROFILE", None)
    out = subprocess.run(
        [str(AWS_CLI), "--endpoint-url", endpoint, "--output", "json", "stepfunctions", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_aws_cli_round_trip_reaches_succeeded(served, tmp_path):
    repo, endpoint, server = served
    machines = json.loads(_aws(endpoint, "list-state-machines").stdout)["stateMachines"]
    (machine,) = [m["stateMachineArn"] for m in machines if m["name"] == "ProcessVisitStateMachine"]
    described = json.loads(_aws(endpoint, "describe-state-machine", "--state-machine-arn", machine).stdout)
    assert (
        described["status"] == "ACTIVE" and "ProcessClusters" in json.loads(described["definition"])["States"]
    )

    # The shape of events/process_visit_input.json, for this small generic repository.
    spec = json.loads((REPO_ROOT / "events" / "process_visit_input.json").read_text())
    spec.update(
        where="instrument = 'Generic'",
        input_collections=["Generic/raw/all"],
        calib_collection=CALIB_COLLECTION,
        output_run="Generic/runs/cli",
        isr_config={},
    )
    (tmp_path / "input.json").write_text(json.dumps(spec))
    started = json.loads(
        _aws(
            endpoint,
            "start-execution",
            "--state-machine-arn",
            machine,
            "--name",
            "cli-run",
            "--input",
            f"file://{tmp_path / 'input.json'}",
        ).stdout
    )
    arn = started["executionArn"]
    assert arn.endswith(":execution:ProcessVisitStateMachine:cli-run")
    deadline = time.monotonic() + 300
    while True:
        described = json.loads(_aws(endpoint, "describe-execution", "--execution-arn", arn).stdout)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["succeeded"] == 2
    history = json.loads(_aws(endpoint, "get-execution-history", "--execution-arn", arn).stdout)["events"]
    assert history[0]["type"] == "ExecutionStarted" and history[-1]["type"] == "ExecutionSucceeded"
    listed = json.loads(_aws(endpoint, "list-executions", "--state-machine-arn", machine).stdout)[
        "executions"
    ]
    assert [(e["name"], e["status"]) for e in listed] == [("cli-run", "SUCCEEDED")]

    missing = _aws(endpoint, "describe-execution", "--execution-arn", arn + "-nope", check=False)
    assert missing.returncode != 0 and "ExecutionDoesNotExist" in missing.stderr
    request = urllib.request.Request(
        endpoint + "/",
        data=b"{}",
        method="POST",
        headers={
            "X-Amz-Target": "AWSStepFunctions.DescribeExecution",
            "Content-Type": "application/x-amz-json-1.0",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=30)
    assert error.value.code == 400 and json.loads(error.value.read())["__type"] == "InvalidArn"

    sfn = boto3.client(
        "stepfunctions",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="dummy",
        aws_secret_access_key="dummy",
    )
    with pytest.raises(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(stateMachineArn=machine, name="cli-run", input=json.dumps(spec))
    assert "stopDate" in sfn.stop_execution(executionArn=arn)
    # The AWS code path of `isrflow status` (GetExecutionHistory of the execution and its map
    # children through boto3) counts what the local record counted.
    remote = aws_status(arn, load_prices(), sfn=sfn, lambda_client=object())
    assert remote.usage.state_transitions == 5 + 2 and remote.totals.succeeded == 2

    server.send_signal(signal.SIGTERM)
    assert server.wait(60) == 0
    local = execution_status("cli-run", repo=repo.root)  # the record outlives the server
    assert local.status == "SUCCEEDED" and local.usage.state_transitions == remote.usage.state_transitions
