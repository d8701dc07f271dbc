"""Uploads -> ingest function -> prompt processing, on the local runtime: the same handler, the same
state machine, StartExecution through boto3 against the local Step Functions endpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from ops_helpers import make_prompt_repo

from isrflow.cli import cli
from isrflow.local.records import load_record
from isrflow.local.runtime import LocalRuntime
from isrflow.local.sfn_api import LocalStepFunctionsServer
from isrflow.model.messages import IngestOutcome, QuarantineRecord
from isrflow.prompt.watch import UploadWatcher, md5_etag, object_created_event
from isrflow.registry import uri_to_path

OUTPUT_RUN = "Generic/prompt"


@pytest.fixture
def prompt(tmp_path):
    repo = make_prompt_repo(tmp_path)
    (repo.root / "raw").mkdir()
    runtime = LocalRuntime(
        repo.root, processes=2, parameters={"PromptProcessing": "true", "PromptOutputRun": OUTPUT_RUN}
    ).start()
    server = LocalStepFunctionsServer(runtime).start()
    watcher = UploadWatcher(runtime, repo.root / "raw", endpoint=server.endpoint, settle_s=0)
    try:
        yield repo, runtime, watcher
    finally:
        server.stop()
        runtime.close()


def _upload(repo, source: Path, name: str | None = None, data: bytes | None = None) -> Path:
    target = repo.root / "raw" / (name or source.name)
    target.write_bytes(source.read_bytes() if data is None else data)
    return target


def test_a_science_upload_ends_in_its_output_and_registry_rows(prompt):
    repo, runtime, watcher = prompt
    uploaded = _upload(repo, repo.science[0])
    (outcome,) = watcher.poll_once()
    assert outcome.status == "ingested" and outcome.obs_type == "science" and outcome.detectors == [0]
    assert outcome.execution is not None and outcome.execution.outcome == "started"
    assert outcome.header_bytes < uploaded.stat().st_size / 5  # the handler read headers only
    watcher.wait_idle()
    execution = runtime.interpreter.get_execution(outcome.execution.execution_arn)
    assert execution.status == "SUCCEEDED", execution.cause
    (raw,) = repo.registry.query_datasets("raw", ["Generic/raw/all"])
    assert (
        uri_to_path(raw.uri) == uploaded and raw.size == uploaded.stat().st_size
    )  # registered where uploaded
    (output,) = repo.registry.query_datasets("postISRCCD", [OUTPUT_RUN])
    assert output.data_id == {"instrument": "Generic", "exposure": raw.data_id["exposure"], "detector": 0}
    assert uri_to_path(output.uri).is_file()
    assert (raw.id, "raw") in repo.registry.provenance(output.id)
    (record,) = repo.registry.processing_records(execution.execution_arn)
    assert record["status"] == "succeeded"
    assert load_record(repo.root, execution.name).status == "SUCCEEDED"  # kept for `isrflow status`
    assert watcher.poll_once() == []  # already fed


def test_the_same_event_twice_gives_one_dataset_and_one_execution(prompt):
    repo, runtime, watcher = prompt
    uploaded = _upload(repo, repo.science[1])
    key = f"raw/{uploaded.name}"
    event = object_created_event(watcher.bucket, key, uploaded.stat().st_size, md5_etag(uploaded))
    first = IngestOutcome.model_validate(runtime.pool.invoke(watcher.function, event))
    second = IngestOutcome.model_validate(runtime.pool.invoke(watcher.function, event))
    watcher.wait_idle()
    third = IngestOutcome.model_validate(runtime.pool.invoke(watcher.function, event))  # after the end
    assert first.execution.outcome == "started"
    assert second.execution.outcome == third.execution.outcome == "already_started"
    assert first.execution.execution_arn == second.execution.execution_arn == third.execution.execution_arn
    assert len(first.execution.name) <= 80 and first.datasets == second.datasets == third.datasets
    (execution,) = runtime.interpreter.list_executions()
    assert execution.status == "SUCCEEDED", execution.cause
    assert len(repo.registry.query_datasets("raw", ["Generic/raw/all"])) == 1
    assert len(repo.registry.query_datasets("postISRCCD", [OUTPUT_RUN])) == 1


def test_truncated_and_non_fits_uploads_are_quarantined(prompt):
    repo, runtime, watcher = prompt
    data = repo.science[0].read_bytes()
    truncated = _upload(repo, repo.science[0], "cut.fits", data[: len(data) // 2])
    notes = _upload(repo, repo.science[0], "notes.txt", b"seeing 0.7 arcsec\n" * 300)
    outcomes = {o.key: o for o in watcher.poll_once()}
    assert {k: o.status for k, o in outcomes.items()} == {
        "raw/cut.fits": "quarantined",
        "raw/notes.txt": "quarantined",
    }
    assert outcomes["raw/cut.fits"].reason.startswith("TruncatedFitsError")
    assert outcomes["raw/notes.txt"].reason.startswith("NotFitsError")
    record = QuarantineRecord.model_validate_json(
        (repo.root / "quarantine" / "raw" / "cut.fits.json").read_bytes()
    )
    assert (record.key, record.error, record.size) == ("raw/cut.fits", "TruncatedFitsError", len(data) // 2)
    assert (repo.root / "quarantine" / "raw" / "notes.txt.json").is_file()
    assert truncated.read_bytes() == data[: len(data) // 2] and notes.is_file()  # objects kept as uploaded
    assert runtime.interpreter.list_executions() == []
    assert repo.registry.query_datasets("raw") == []
    counts = runtime.queue.counts()
    assert counts["visible"] + counts["in_flight"] == 0  # nothing sent: nothing queued, nothing applied
    with repo.registry.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM exposure")).scalar() == 0


def test_ingest_watch_once_uploads_from_another_directory(tmp_path):
    repo = make_prompt_repo(tmp_path, detectors=(1,))
    incoming = tmp_path / "incoming" / "night1"
    incoming.mkdir(parents=True)
    shutil.copy(repo.science[0], incoming / repo.science[0].name)
    result = CliRunner().invoke(
        cli,
        [
            "ingest",
            "--repo",
            str(repo.root),
            "--watch",
            str(tmp_path / "incoming"),
            "--once",
            "--workers",
            "2",
            "--parameter",
            "PromptOutputRun={instrument}/p/{day_obs}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"ingested raw/night1/{repo.science[0].name}" in result.output
    assert "SUCCEEDED (1 of 1 detectors succeeded)" in result.output
    assert (repo.root / "raw" / "night1" / repo.science[0].name).read_bytes() == repo.science[0].read_bytes()
    key = f"raw/night1/{repo.science[0].name}"
    assert json.loads((repo.root / "ingest-watch.json").read_text()) == {key: md5_etag(repo.science[0])}
    (raw,) = repo.registry.query_datasets("raw")
    (output,) = repo.registry.query_datasets("postISRCCD", where=f"detector = {raw.data_id['detector']}")
    assert output.run.startswith("Generic/p/") and uri_to_path(output.uri).is_file()


def test_plan_of_explicit_quanta_waits_for_their_raws(tmp_path):
    """Plan raises QuantaNotFoundError (which the state machine retries) until the writer has applied
    the raws an upload's execution names: first the raw collection is missing, then the raw."""
    from isrflow.model.errors import QuantaNotFoundError
    from isrflow.model.messages import PlanEvent, ProcessVisitInput, QuantumKey
    from isrflow.process_visit.plan import plan_visit
    from isrflow.registry import ingest

    repo = make_prompt_repo(tmp_path)
    spec = ProcessVisitInput(
        quanta=[QuantumKey(instrument="Generic", exposure=5000, detector=d) for d in (0, 1)],
        input_collections=["Generic/raw/all"],
        calib_collection="Generic/calib",
        output_run=OUTPUT_RUN,
    )
    event = PlanEvent(input=spec, execution_id="arn:aws:states:local:000000000000:execution:P:x")
    with pytest.raises(QuantaNotFoundError, match="Generic/raw/all do not exist"):
        plan_visit(event, repo.registry, repo.registry.datastore_root)
    assert ingest(repo.registry, [p for p in repo.science if p.name.endswith("-000.fits")]).ok
    with pytest.raises(
        QuantaNotFoundError, match="1 requested quanta have no raw in Generic/raw/all: Generic 5000 det 1"
    ):
        plan_visit(event, repo.registry, repo.registry.datastore_root)
    assert not (repo.root / "manifests").exists()  # nothing written before the check
