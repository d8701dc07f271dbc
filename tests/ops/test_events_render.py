"""`isrflow events render`: the sample events with another stack's names, still valid."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from isrflow.cli import cli

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_render_replaces_every_sample_name(tmp_path):
    sample = json.loads((EVENTS / "names.json").read_text())
    result = CliRunner().invoke(cli, ["events", "render", "--events-dir", str(EVENTS), "--out", str(tmp_path),
                                      "--bucket", "survey-data-bucket", "--account", "210987654321",
                                      "--region", "eu-west-1", "--registry-queue", "survey-registry"])
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
