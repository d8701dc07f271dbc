"""Database-level poison: a message valid for its model but not storable must not fail its batch.

Issue 10, defect 1. Each test puts ONE such message among 1,000 good ones (an instrument and
999 detectors) and expects the 1,000 applied and only the poison rejected, with a reason naming
the field. Before the fix the whole transaction failed (PostgreSQL DataError, SQLite
OverflowError), so nothing was applied and SQS would have redelivered all 1,001 messages.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from registry_helpers import T0, count

from isrflow.model.messages import DetectorRecord, ExposureRecord, InstrumentRecord, dump_message
from isrflow.registry import BatchItem, Registry, apply_batch
from isrflow.registry.writer import apply as apply_module
from isrflow.registry.writer import items as items_module
from isrflow.registry.writer import poison as poison_module

GOOD = 1000
EX = "exec-poison"


def good_messages() -> list[str]:
    msgs = [InstrumentRecord(name="HSC", camera="hsc", execution_id=EX)]
    msgs += [DetectorRecord(instrument="HSC", id=d, name=f"D{d}", execution_id=EX) for d in range(GOOD - 1)]
    return [dump_message(m) for m in msgs]


def exposure(**kw) -> ExposureRecord:
    fields = {
        "instrument": "HSC",
        "id": 100,
        "obs_type": "science",
        "physical_filter": "HSC-R",
        "band": "r",
        "exptime": 30.0,
        "darktime": 30.0,
        "day_obs": 20261119,
        "begin": T0,
        "end": T0 + timedelta(seconds=30),
        "execution_id": EX,
    }
    return ExposureRecord(**{**fields, **kw})


#: kind of limit -> (poison message, words its reject reason must contain)
POISONS = {
    "int32_out_of_range": (
        lambda: DetectorRecord(instrument="HSC", id=2**31, name="big", execution_id=EX),
        ["detector field id", "2147483648", "32-bit", "detector.id"],
    ),
    "nul_character": (
        lambda: DetectorRecord(instrument="HSC", id=5000, name="D\x00x", execution_id=EX),
        ["detector field name", "NUL", "detector.name"],
    ),
    "string_too_long": (
        lambda: exposure(physical_filter="F" * 129),
        ["exposure field physical_filter", "129 characters", "at most 128"],
    ),
    "int64_out_of_range": (  # SQLite integers are 64-bit: 2**63 raised OverflowError in the driver
        lambda: exposure(id=2**63),
        ["exposure field id", str(2**63), "64-bit", "exposure.id"],
    ),
}


def batch_with(poison) -> list[BatchItem]:
    bodies = good_messages()
    bodies.insert(GOOD // 2, dump_message(poison))  # in the middle, after its parents
    return [BatchItem(f"m{i}", body) for i, body in enumerate(bodies)]


def assert_isolated(registry: Registry, result, poison_id: str) -> str:
    assert len(result.applied) == GOOD
    assert [item for item, _ in result.rejected] == [poison_id]
    assert result.retry == []
    assert count(registry, "detector") + count(registry, "instrument") + count(registry, "exposure") == GOOD
    rejects = registry.rejects()
    assert [r.item_id for r in rejects] == [poison_id]
    status = registry.applied_status(EX)
    assert (status.applied, status.rejected) == (GOOD, 1)  # the poison is counted: Summarize can see it
    return rejects[0].reason


@pytest.mark.parametrize("kind", sorted(POISONS))
def test_one_poison_among_1000_is_rejected_with_a_reason_naming_its_field(
    registry: Registry, kind: str
) -> None:
    make, words = POISONS[kind]
    result = apply_batch(registry, batch_with(make()))
    reason = assert_isolated(registry, result, f"m{GOOD // 2}")
    for word in words:
        assert word in reason, (word, reason)


@pytest.mark.parametrize("kind", ["int64_out_of_range", "nul_character"])
def test_a_poison_the_checks_miss_is_found_by_bisection(
    backend, registry: Registry, monkeypatch, kind: str
) -> None:
    """The database refuses a value the up-front check does not know about (simulated by
    turning the check off): the batch is bisected with rolled-back trial transactions and only
    that item is rejected, with the database's own error."""
    if kind == "nul_character" and backend.name == "sqlite":
        pytest.skip("SQLite stores NUL characters: only the up-front check refuses them there")
    monkeypatch.setattr(items_module, "limit_violation", lambda message: None)
    trials = []
    real_run = poison_module.run_batch

    def counting_run(registry, items, **kw):
        trials.append(len(items))
        return real_run(registry, items, **kw)

    monkeypatch.setattr(apply_module, "run_batch", counting_run)
    monkeypatch.setattr(poison_module, "run_batch", counting_run)
    poison = POISONS[kind][0]()
    result = apply_batch(registry, batch_with(poison))
    reason = assert_isolated(registry, result, f"m{GOOD // 2}")
    assert reason.startswith(f"the database refused this {poison.kind} message: ")
    assert len(trials) <= 16  # about log2(1001) trials, not one per item


def test_poison_through_the_writer_lambda(handler_module, registry: Registry) -> None:
    items = batch_with(DetectorRecord(instrument="HSC", id=-(2**31) - 1, name="low", execution_id=EX))
    event = {
        "Records": [
            {"messageId": i.item_id, "body": i.body, "attributes": {"ApproximateReceiveCount": "1"}}
            for i in items
        ]
    }
    assert handler_module.lambda_handler(json.loads(json.dumps(event)), None) == {"batchItemFailures": []}
    assert count(registry, "detector") == GOOD - 1
    assert [r.item_id for r in registry.rejects()] == [f"m{GOOD // 2}"]
