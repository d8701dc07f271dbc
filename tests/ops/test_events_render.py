"""`isrflow events render`: the sample events with another stack's names, still valid."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from isrflow.cli import cli

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_render_replaces_every_sample_name(tmp_path):
    sample = json.loads((EVENTS / "names.json").read_text())
    result = CliRunner().invoke(
        cli,
        [
            "events",
            "render",
            "--events-dir",
            str(EVENTS),
            "--out",
            str(tmp_path),
            "--bucket",
            "survey-data-bucket",
            "--account",
            "210987654321",
            "--region",
            "eu-west-1",
            "--registry-queue",
            "survey-registry",
        ],
    )
    assert result.exit_code == 0, result.output
    written = sorted(tmp_path.glob("*.json"))
    assert len(written) == len(list(EVENTS.glob("*.json"))) - 1
    for path in written:
        text = path.read_text()
        json.loads(text)
        for key in ("bucket", "account", "region"):
            assert sample[key] not in text, (path.name, key)
    plan = json.loads((tmp_path / "isr_cluster.json").read_text())
    assert plan["cluster"]["quanta"][0]["raw"]["uri"].startswith("s3://survey-data-bucket/")
    batch = json.loads((tmp_path / "registry_writer_sqs_batch.json").read_text())
    assert batch["Records"][0]["eventSourceARN"] == "arn:aws:sqs:eu-west-1:210987654321:survey-registry"


def test_invalid_names_and_a_folder_without_names_are_refused_before_writing(tmp_path):
    out = tmp_path / "out"
    for option, value in (
        ("--bucket", "a b\tc\n"),
        ("--account", "12345"),
        ("--region", "\u202e\x07é"),
        ("--registry-queue", "x" * 81),
        ("--stack", "1stack"),
    ):
        result = CliRunner().invoke(
            cli, ["events", "render", "--events-dir", str(EVENTS), "--out", str(out), option, value]
        )
        assert result.exit_code == 1, result.output
        assert result.output.strip().startswith(f"error: InvalidArgumentError: {option} "), result.output
        assert "not a valid name" in result.output and not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["events", "render", "--events-dir", str(empty), "--out", str(out)])
    assert result.exit_code == 1 and "ConfigError" in result.output and "names.json" in result.output
    assert not out.exists()
