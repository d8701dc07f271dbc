"""Powertools at the function edges (isrflow.infra.edge): structured log lines carrying the correlation
ids, one EMF line per invocation, failed detectors logged with their error and counted."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from functions.summarize.app import record_failure_handler
from isrflow.infra import edge

EVENTS = Path(__file__).resolve().parents[2] / "events"


def _event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def captured(monkeypatch):
    """The edge logger's JSON lines (at INFO, into a buffer); the service an isrflow function's."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "isrflow-summarize")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "isrflow-summarize")  # EMF is written in Lambda only
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "isrflow")
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    buffer = io.StringIO()
    handler = edge.logger.registered_handler
    old_stream, old_level = handler.stream, edge.logger.log_level
    handler.setStream(buffer)
    edge.logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    handler.setStream(old_stream)
    edge.logger.setLevel(old_level)


def _emf(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def test_record_failure_logs_and_counts_every_failed_detector(local_repo, captured, capsys):
    from visit_helpers import CALIB_COLLECTION

    from functions.plan.app import lambda_handler as plan_handler
    from isrflow.io.storage import storage_for

    spec = {
        "where": "instrument = 'Generic'",
        "input_collections": ["Generic/raw/all"],
        "calib_collection": CALIB_COLLECTION,
        "output_run": "Generic/runs/edge",
        "cluster_size": 2,
    }
    plan = plan_handler({"input": spec, "execution_id": "exec-edge"})
    cluster = json.loads(storage_for(plan["manifest_uri"]).read_bytes(plan["manifest_uri"]))[0]
    capsys.readouterr()
    event = {
        "cluster": cluster,
        "results_prefix": plan["results_prefix"],
        "execution_id": "exec-edge",
        "error": {"Error": "Sandbox.Timedout", "Cause": json.dumps({"errorMessage": "timed out"})},
    }
    assert record_failure_handler(event) == {"recorded": len(cluster["quanta"])}

    failed = [line for line in captured() if line["message"] == "detector failed"]
    assert sorted(line["detector"] for line in failed) == sorted(q["detector"] for q in cluster["quanta"])
    for line in failed:
        assert line["level"] == "ERROR" and line["service"] == "isrflow-summarize"
        assert line["execution"] == "exec-edge" and line["cluster"] == cluster["cluster_id"]
        assert line["error"] == "Sandbox.Timedout: timed out" and isinstance(line["exposure"], int)
    (emf,) = _emf(capsys.readouterr().out)
    assert sum(emf["DetectorsFailed"]) == len(cluster["quanta"])
    assert emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert emf["service"] == "isrflow-summarize"


def test_correlation_ids_of_the_functions_events():
    cluster = _event("isr_cluster.json")
    ids = edge.correlation_ids(cluster)
    assert ids["execution"] == cluster["execution_id"] and ids["detector"] == 50
    assert ids["cluster"] == cluster["cluster"]["cluster_id"]
    summarize = _event("summarize.json")
    assert edge.correlation_ids(summarize)["execution"] == summarize["plan"]["execution_id"]
    upload = _event("ingest_object_created.json")
    assert edge.correlation_ids(upload) == {"key": upload["detail"]["object"]["key"]}
    assert edge.correlation_ids(["not", "a", "mapping"]) == {}
    several = {
        "cluster": {
            "cluster_id": "c",
            "quanta": [{"exposure": 2, "detector": 1}, {"exposure": 1, "detector": 1}],
        }
    }
    assert edge.correlation_ids(several) == {"cluster": "c", "exposure": [1, 2], "detector": 1}


def test_a_failing_handler_is_logged_with_its_ids_and_its_metrics_flushed(captured, capsys):
    class Boom(RuntimeError):
        pass

    @edge.lambda_edge
    def handler(event, context=None):
        edge.add_count("Attempts", 2, step="demo")
        logging.getLogger("isrflow.test").info("working", extra={"stage": 1})
        raise Boom("no disk")

    with pytest.raises(Boom, match="no disk"):
        handler(
            {
                "execution_id": "exec-9",
                "cluster": {"cluster_id": "c9", "quanta": [{"exposure": 7, "detector": 3}]},
            }
        )
    working, failed = captured()
    assert (working["message"], working["stage"], working["execution"], working["detector"]) == (
        "working",
        1,
        "exec-9",
        3,
    )
    assert failed["message"] == "invocation failed" and failed["error"] == "Boom: no disk"
    assert failed["exposure"] == 7 and "Boom" in failed["exception"]
    (emf,) = _emf(capsys.readouterr().out)
    assert emf["Attempts"] == [2.0] and emf["step"] == "demo"

    @edge.lambda_edge
    def quiet(event, context=None):
        logging.getLogger("isrflow.test").info("after")
        return "ok"

    assert quiet({}) == "ok"
    (after,) = captured()[2:]
    assert "execution" not in after and "detector" not in after  # no ids leak into the next invocation
    assert _emf(capsys.readouterr().out) == []  # nothing counted, no EMF line


def test_disabled_metrics_print_nothing_and_do_not_pile_up(captured, capsys, monkeypatch):
    @edge.lambda_edge
    def handler(event, context=None):
        edge.add_count("Calls")
        return len(edge.metrics().metric_set["Calls"]["Value"])

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    assert [handler({}) for _ in range(3)] == [1, 1, 1]
    assert _emf(capsys.readouterr().out) == []
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    assert handler({}) == 1
    (emf,) = _emf(capsys.readouterr().out)
    assert emf["Calls"] == [1.0]
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    assert handler({}) == 1
    assert _emf("\n".join(capsys.readouterr())) == []  # outside Lambda (local runtime, CLI): no EMF line
