"""Defect 4 of issue 10: outages and reordering never become permanent loss.

- A registry outage longer than the redelivery budget (and longer than maxReceiveCount x the
  queue's 900 s visibility timeout) followed by recovery: every row applied, nothing
  dead-lettered (the local event source backs off and does not count the failed receives).
- A shuffled backlog (children before parents) through the local queue and the writer with
  the template's give-up count: every row applied, nothing rejected or dead-lettered. The
  default size is 11,000 messages in writer batches of 1,000 (about 7 s);
  ``ISRFLOW_BACKLOG_EXPOSURES=5000 ISRFLOW_BACKLOG_BATCH=5000`` runs 55,000 in the template's
  5,000-message batches (about 95 s on 2 shared cores; ``make`` target-free: run it by hand).
- Plan and Summarize retry RegistryUnavailableError in both state machines.

All on an injected clock: no real waits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from queue_backlog import RAW_RUN, T0, Clock, backlog, instrument, poller_for, run_until_empty, writer_setup

from functions.registry_writer import app as writer_app
from isrflow.local.lambdas import LambdaError
from isrflow.model.errors import RegistryUnavailableError
from isrflow.registry import Registry
from isrflow.registry.redelivery import retrier_budget_s

ROOT = Path(__file__).resolve().parents[2]
#: Exposures x 10 detectors raws in the default backlog test (+ their parents).
BACKLOG_EXPOSURES = int(os.environ.get("ISRFLOW_BACKLOG_EXPOSURES", "1000"))
#: Messages per writer batch: 1,000 by default so that the small backlog still spans many batches
#: (as 50k messages span many of the template's 5,000); ISRFLOW_BACKLOG_BATCH=5000 for the template's.
BACKLOG_BATCH = int(os.environ.get("ISRFLOW_BACKLOG_BATCH", "1000"))


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import isrflow.infra.settings

    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    reg = Registry.open(url, tmp_path / "datastore", create=True)
    reg.apply([instrument()])
    monkeypatch.setenv("ISRFLOW_REGISTRY_URL", url)
    monkeypatch.delenv("ISRFLOW_REGISTRY_SECRET_ARN", raising=False)
    yield reg
    cached = isrflow.infra.settings._REGISTRIES.pop(url, None)
    if cached is not None:
        cached.close()
    reg.close()


def _raws(registry: Registry) -> int:
    return len(registry.query_datasets("raw", [RAW_RUN]))


@pytest.mark.parametrize("as_lambda_error", [False, True], ids=["in-process", "lambda-error"])
def test_an_outage_longer_than_every_budget_loses_nothing(
    tmp_path, monkeypatch, registry, as_lambda_error
) -> None:
    clock = Clock()
    queue = writer_setup(tmp_path, monkeypatch, clock)
    outage_end = T0 + 2 * 3600.0  # 2 h: > the 88 s redelivery span and > 5 receives x 900 s
    bodies = backlog(exposures=20, detectors=10, seed=3)

    def writer(event: dict) -> dict:
        if clock() < outage_end:
            if as_lambda_error:  # how the runtime's in-process invoke reports it
                raise LambdaError("RegistryUnavailableError", "connection refused")
            raise RegistryUnavailableError("registry database unreachable: connection refused")
        return writer_app.lambda_handler(event)

    queue.send(bodies)
    poller = poller_for(queue, clock, writer, batch_s=1.0, batch_size=100)
    run_until_empty(queue, poller, clock)
    assert queue.counts() == {"visible": 0, "in_flight": 0, "dead_letter": 0}
    assert _raws(registry) == 200 and registry.rejects() == []
    assert poller.outage_batches > 0 and poller.backoff_s == 0
    # the back-off is capped: the backlog is applied within a minute or so of the recovery
    assert clock() <= outage_end + poller.max_outage_backoff_s + 10 * 1.0


def test_a_shuffled_backlog_with_children_first_is_applied_whole(tmp_path, monkeypatch, registry) -> None:
    clock = Clock()
    queue = writer_setup(tmp_path, monkeypatch, clock)
    bodies = backlog(exposures=BACKLOG_EXPOSURES, detectors=10, seed=11)
    queue.send(bodies)
    # 10 s per writer batch: a slow writer, so items returned for 4-16 s come back while most of
    # the backlog is still waiting (before the fix, 9,711 of a 30k backlog were rejected this way)
    poller = poller_for(queue, clock, writer_app.lambda_handler, batch_s=10.0, batch_size=BACKLOG_BATCH)
    run_until_empty(queue, poller, clock)
    assert queue.counts() == {"visible": 0, "in_flight": 0, "dead_letter": 0}
    assert registry.rejects() == []
    assert _raws(registry) == BACKLOG_EXPOSURES * 10


def test_a_young_orphan_is_kept_an_old_one_is_rejected_with_its_age(tmp_path, monkeypatch, registry) -> None:
    """The give-up count alone no longer rejects: only with the message's age past the minimum."""
    clock = Clock()
    queue = writer_setup(tmp_path, monkeypatch, clock)
    (child,) = [b for b in backlog(exposures=1, detectors=1, seed=0) if '"raw"' in b]
    queue.send([child])
    poller = poller_for(queue, clock, writer_app.lambda_handler, batch_s=1.0)
    for _ in range(4):  # 4 deliveries = the give-up count, all within a minute of sending
        clock.now = max(
            clock.now, float(queue._connect().execute("SELECT visible_at FROM message").fetchone()[0])
        )
        assert poller.poll_once() == 1
    assert registry.rejects() == [] and queue.counts()["in_flight"] == 1
    monkeypatch.setenv("ISRFLOW_REGISTRY_GIVE_UP_MIN_AGE_S", "30")
    clock.now += 60
    assert poller.poll_once() == 1  # 5th delivery, older than 30 s: rejected, with its age
    (reject,) = registry.rejects()
    assert reject.reason.startswith("gave up after 5 deliveries over 0.0 h: ")


@pytest.mark.parametrize("asl", ["process_visit.asl.json", "build_calibration.asl.json"])
@pytest.mark.parametrize("task", ["Plan", "Summarize"])
def test_plan_and_summarize_retry_an_unavailable_registry(asl: str, task: str) -> None:
    state = json.loads((ROOT / "statemachines" / asl).read_text(encoding="utf-8"))["States"][task]
    (retrier,) = [r for r in state["Retry"] if "RegistryUnavailableError" in r["ErrorEquals"]]
    assert retrier["ErrorEquals"] == ["RegistryUnavailableError"] and retrier.get("JitterStrategy") == "FULL"
    budget = retrier_budget_s(
        retrier["IntervalSeconds"],
        retrier["MaxAttempts"],
        retrier.get("BackoffRate", 2.0),
        retrier.get("MaxDelaySeconds"),
    )
    assert budget / 2 >= 10 * 60  # ten minutes of outage on average (full jitter halves the bound)
