"""Two executions into one output run (issue 10, defect 2).

Before the fix both executions SUCCEEDED: mode ``fail`` was only checked at plan time, both
workers wrote the same output file (here with different bytes: different ISR configurations), the writer rejected the second execution's dataset
message (its checksum differed from the row already registered) and Summarize ignored the
rejection, so the registered checksum no longer matched the overwritten file. Now each
execution writes its own file (never overwriting one another execution registered) and
Summarize fails an execution whose messages the registry rejected.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from visit_helpers import make_repo, visit_input

from isrflow.local.runtime import LocalRuntime
from isrflow.process_visit import layout
from isrflow.registry import uri_to_path

MACHINE = "ProcessVisitStateMachine"
RUN = "Generic/runs/race"


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path, detectors=(0,), science=1)  # one quantum: one dataset to race for


def test_two_concurrent_executions_into_one_run_one_fails_loudly_and_checksums_match(repo):
    with LocalRuntime(repo.root, processes=2) as runtime:
        # different ISR configurations: the two executions write different bytes for the one dataset
        configs = [{}, {"edge_width": 3}]
        started = [
            runtime.run(MACHINE, visit_input(output_run=RUN, isr_config=c), name=f"race-{i}", wait=False)
            for i, c in enumerate(configs)
        ]
        done = [e.wait(timeout=300) for e in started]
    assert sorted(e.status for e in done) == ["FAILED", "SUCCEEDED"], [(e.status, e.cause) for e in done]
    failed = next(e for e in done if e.status == "FAILED")
    assert failed.error in ("RegistryRejectedError", "OutputExistsError"), (failed.error, failed.cause)
    message = json.loads(failed.cause)["errorMessage"]
    assert "rejected" in message or "exist" in message, message

    outputs = repo.registry.query_datasets("postISRCCD", [RUN])
    assert len(outputs) == 1
    for ref in repo.registry.query_datasets("postISRCCD", [RUN]) + repo.registry.query_datasets(
        "raw", ["Generic/raw/all"]
    ):
        data = uri_to_path(ref.uri).read_bytes()
        assert ref.sha256 is None or hashlib.sha256(data).hexdigest() == ref.sha256, ref.uri
        assert ref.size is None or len(data) == ref.size, ref.uri
    winner = next(e for e in done if e.status == "SUCCEEDED")
    assert layout.execution_token(winner.execution_arn) in outputs[0].uri  # the winner's own file


def test_unique_output_uri_keeps_the_layout_and_is_idempotent():
    uri = "s3://b/HSC/runs/isr/postISRCCD/HSC/903334/postISRCCD_HSC_903334_50.fits"
    once = layout.unique_output_uri(uri, "arn:aws:states:eu-west-1:1:execution:M:x")
    token = layout.execution_token("arn:aws:states:eu-west-1:1:execution:M:x")
    assert once == uri[: -len(".fits")] + f".{token}.fits"
    assert layout.unique_output_uri(once, "arn:aws:states:eu-west-1:1:execution:M:x") == once
    assert layout.unique_output_uri(uri, "another") != once
