"""The batch writer (apply_batch) and the registry-writer Lambda handler, on both engines."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from registry_helpers import (
    REPO_ROOT,
    T0,
    FakeClock,
    calib_msg,
    certify_msg,
    count,
    dims,
    output_msg,
    raw_msg,
)

from isrflow.model.errors import (
    CertificationConflictError,
    MissingParentError,
    RegistryUnavailableError,
    RejectedMessageError,
    WaitTimeoutError,
)
from isrflow.model.messages import (
    DetectorRecord,
    ExecutionCompleteMessage,
    ProcessingRecordMessage,
    dump_message,
)
from isrflow.registry import BatchItem, Registry, apply_batch
from isrflow.registry.engine import create_registry_engine
from isrflow.registry.writer import certify as certify_module

TABLES = (
    "instrument",
    "detector",
    "exposure",
    "collection",
    "dataset",
    "dataset_provenance",
    "calib_validity",
    "processing_record",
    "execution",
    "applied_message",
    "rejected_message",
)

EX = "exec-1"


def items(messages, prefix: str = "m") -> list[BatchItem]:
    return [
        BatchItem(f"{prefix}{i}", m if isinstance(m, str) else dump_message(m))
        for i, m in enumerate(messages)
    ]


def counts(registry: Registry) -> dict[str, int]:
    return {t: count(registry, t) for t in TABLES}


def good_batch():
    raw = raw_msg(100, 1, execution_id=EX)
    bias = calib_msg("bias", 1, "HSC/calib/bias", execution_id=EX)
    out = output_msg(100, 1, [raw, bias], execution_id=EX)
    msgs = [
        *dims(detectors=(1,)),
        raw,
        bias,
        out,
        certify_msg(bias, T0 - timedelta(days=1), T0 + timedelta(days=1), execution_id=EX),
        ProcessingRecordMessage(
            execution_id=EX,
            instrument="HSC",
            exposure=100,
            detector=1,
            status="succeeded",
            duration_s=2.5,
            peak_memory_mb=900.0,
        ),
        ExecutionCompleteMessage(execution_id=EX, expected=5),
    ]
    return msgs, raw, bias, out


# --- the happy path, duplicates, ordering ----------------------------------------------------


def test_a_shuffled_batch_of_every_kind_applies_in_one_go(registry: Registry) -> None:
    msgs, raw, bias, out = good_batch()
    random.Random(3).shuffle(msgs)
    result = apply_batch(registry, items(msgs))
    assert result.rejected == [] and result.retry == [] and len(result.applied) == len(msgs)
    assert result.batch_item_failures() == []
    assert registry.get_dataset(out.id).uri == out.uri
    assert sorted(registry.provenance(out.id), key=lambda p: p[1]) == [(bias.id, "bias"), (raw.id, "raw")]
    [cert] = registry.query_datasets("bias", ["HSC/calib"])
    assert cert.id == bias.id and cert.validity.begin == T0 - timedelta(days=1)
    [rec] = registry.processing_records(EX)
    assert rec["status"] == "succeeded" and rec["duration_s"] == 2.5 and rec["recorded"].tzinfo is not None
    status = registry.applied_status(EX)
    assert (status.applied, status.rejected, status.expected, status.complete) == (5, 0, 5, True)
    assert registry.collection_type("HSC/runs/isr") == "RUN"
    assert registry.collection_type("HSC/calib") == "CALIBRATION"


def test_redelivered_batches_and_duplicates_are_no_ops(registry: Registry) -> None:
    msgs, *_ = good_batch()
    apply_batch(registry, items(msgs))
    before = counts(registry)
    # SQS delivers the whole batch again, and a message twice inside one batch.
    again = apply_batch(registry, items(msgs + msgs, prefix="again"))
    assert again.rejected == [] and again.retry == [] and len(again.applied) == 2 * len(msgs)
    assert counts(registry) == before
    assert registry.applied_status(EX).applied == 5  # counted once per message id


def test_duplicate_in_batch_with_different_content_is_rejected(registry: Registry) -> None:
    registry.apply(dims(detectors=(1,)))
    a = raw_msg(100, 1, uri="file:///a.fits")
    b = raw_msg(100, 1, uri="file:///b.fits")
    result = apply_batch(registry, items([a, b]))
    assert result.applied == ["m0"]
    assert [i for i, _ in result.rejected] == ["m1"] and "twice in the batch" in result.rejected[0][1]


def test_out_of_order_provenance_is_retried_then_applied(registry: Registry) -> None:
    registry.apply(dims(detectors=(1, 2)))
    raw1, raw2 = raw_msg(100, 1), raw_msg(100, 2)
    bias1 = calib_msg("bias", 1, "HSC/calib/bias")
    out1 = output_msg(100, 1, [raw1, bias1], execution_id=EX)
    out2 = output_msg(100, 2, [raw2], execution_id=EX)
    # The outputs arrive before their inputs; raw2 arrives together with out2.
    first = apply_batch(registry, items([out1, out2, raw2], prefix="a"))
    assert [i for i, _ in first.retry] == ["a0"]
    assert "not registered" in first.retry[0][1] and str(raw1.id) in first.retry[0][1]
    assert sorted(first.applied) == ["a1", "a2"]
    assert first.batch_item_failures() == [{"itemIdentifier": "a0"}]
    assert registry.get_dataset(out1.id) is None and registry.provenance(out1.id) == []
    assert registry.applied_status(EX).applied == 1  # out2 only; out1 is not processed yet
    # Redelivery before the inputs arrive: still retried; then the inputs come, then out1 again.
    assert [i for i, _ in apply_batch(registry, items([out1], prefix="b")).retry] == ["b0"]
    assert apply_batch(registry, items([raw1, bias1], prefix="c")).retry == []
    last = apply_batch(registry, items([out1], prefix="d"))
    assert last.applied == ["d0"] and last.retry == []
    assert {role for _, role in registry.provenance(out1.id)} == {"raw", "bias"}
    assert registry.applied_status(EX).applied == 2


def test_missing_parents_cascade_within_a_batch(registry: Registry) -> None:
    registry.apply(dims(detectors=(1,)))
    raw = raw_msg(999, 1)  # exposure 999 not registered
    out = output_msg(999, 1, [raw])
    result = apply_batch(registry, items([raw, out]))
    assert sorted(i for i, _ in result.retry) == ["m0", "m1"]
    assert "exposure 999" in dict(result.retry)["m0"]
    assert count(registry, "dataset") == 0


def test_dimension_records_in_the_same_batch_are_parents(registry: Registry) -> None:
    msgs = [raw_msg(100, 7), *dims(detectors=(7,))]  # children first
    result = apply_batch(registry, items(msgs))
    assert result.retry == [] and result.rejected == []


# --- poison ----------------------------------------------------------------------------------


def test_a_poison_record_among_good_ones_is_the_only_one_rejected(registry: Registry) -> None:
    registry.apply([*dims(detectors=(1, 2)), raw_msg(100, 2, uri="file:///original.fits")])
    good = [raw_msg(100, 1, execution_id=EX), calib_msg("bias", 1, "HSC/calib/bias", execution_id=EX)]
    wrong_id = json.loads(dump_message(raw_msg(100, 1)))
    wrong_id["data_id"]["detector"] = 2  # id no longer matches the data id
    poison = [
        "{not json",
        json.dumps({"kind": "dataset", "dataset_type": "raw"}),
        json.dumps({"kind": "teleport", "execution_id": EX}),
        json.dumps(wrong_id),
        dump_message(DetectorRecord(instrument="NOPE", id=1, name="x", execution_id=EX)),
        dump_message(raw_msg(100, 1, instrument="NOPE")),
        dump_message(raw_msg(100, 2, uri="file:///different.fits")),  # conflicts with the stored raw
    ]
    batch = [
        BatchItem("g0", dump_message(good[0])),
        *[BatchItem(f"p{i}", p) for i, p in enumerate(poison)],
        BatchItem("g1", dump_message(good[1])),
    ]
    result = apply_batch(registry, batch)
    assert sorted(result.applied) == ["g0", "g1"]
    assert result.retry == [] and result.batch_item_failures() == []
    reasons = dict(result.rejected)
    assert sorted(reasons) == [f"p{i}" for i in range(len(poison))]
    assert "invalid message" in reasons["p0"] and "invalid message" in reasons["p2"]
    assert "does not match" in reasons["p3"]
    assert "unknown instrument 'NOPE'" in reasons["p4"] and "unknown instrument 'NOPE'" in reasons["p5"]
    assert "different uri" in reasons["p6"]
    rows = registry.rejects()
    assert [r.item_id for r in rows] == [f"p{i}" for i in range(len(poison))]
    assert rows[0].body == "{not json" and rows[0].kind is None
    assert rows[4].kind == "detector" and rows[4].execution_id == EX
    assert registry.get_dataset(raw_msg(100, 2).id).uri == "file:///original.fits"
    # Rejected messages of an execution count as processed (they will never come back).
    status = registry.applied_status(EX)
    assert (status.applied, status.rejected) == (2, 1)


def test_replace_updates_uri_size_checksum_and_provenance(registry: Registry) -> None:
    registry.apply(dims(detectors=(1,)))
    raw = raw_msg(100, 1)
    bias_a, bias_b = calib_msg("bias", 1, "HSC/calib/a"), calib_msg("bias", 1, "HSC/calib/b")
    first = output_msg(100, 1, [raw, bias_a], sha256="a" * 64)
    apply_batch(registry, items([raw, bias_a, bias_b, first]))
    again = output_msg(100, 1, [raw, bias_b], uri="file:///new.fits", size=42, sha256="b" * 64, replace=True)
    assert again.id == first.id
    assert apply_batch(registry, items([again])).applied == ["m0"]
    ref = registry.get_dataset(first.id)
    assert (ref.uri, ref.size, ref.sha256) == ("file:///new.fits", 42, "b" * 64)
    assert {i for i, _ in registry.provenance(first.id)} == {raw.id, bias_b.id}
    # Without replace, different content is refused; identical content is a no-op.
    refused = apply_batch(registry, items([output_msg(100, 1, [raw], uri="file:///other.fits")]))
    assert "replace=true" in refused.rejected[0][1]
    assert apply_batch(registry, items([again.model_copy(update={"replace": False})])).applied == ["m0"]


def test_collection_type_mismatches_are_rejected(registry: Registry) -> None:
    registry.apply(dims(detectors=(1,)))
    bias = calib_msg("bias", 1, "HSC/calib/bias")
    raw = raw_msg(100, 1)
    registry.register_collection("HSC/calib", "CALIBRATION")
    result = apply_batch(
        registry,
        items(
            [
                bias,
                raw,
                calib_msg("dark", 1, "HSC/calib"),  # dataset into a CALIBRATION collection
                certify_msg(bias, T0, None, collection="HSC/raw/all"),  # certify into a RUN
                certify_msg(raw, T0, None),  # certify a raw
            ]
        ),
    )
    reasons = dict(result.rejected)
    assert sorted(reasons) == ["m2", "m3", "m4"]
    assert "CALIBRATION collection, datasets go into RUN" in reasons["m2"]
    assert "not CALIBRATION" in reasons["m3"]
    assert "only bias, dark, defects, flat can be certified" in reasons["m4"]


# --- certification ---------------------------------------------------------------------------


def test_certification_overlap_rules(registry: Registry) -> None:
    registry.apply(dims(detectors=(1,)))
    b1, b2, b3 = (calib_msg("bias", 1, f"HSC/calib/bias{i}") for i in (1, 2, 3))
    day = timedelta(days=1)
    first = apply_batch(
        registry,
        items(
            [
                b1,
                b2,
                b3,
                certify_msg(b1, T0, T0 + day),
                certify_msg(b2, T0 + day, T0 + 2 * day),  # adjacent: fine
                certify_msg(b3, T0 + 2 * day - timedelta(microseconds=1), None),  # overlaps b2 by 1 µs
                certify_msg(b1, T0, T0 + day),  # exact duplicate: no-op
            ]
        ),
    )
    assert sorted(first.applied) == ["m0", "m1", "m2", "m3", "m4", "m6"]
    assert [i for i, _ in first.rejected] == ["m5"] and "overlaps" in first.rejected[0][1]
    # Across batches, and the unbounded side.
    later = apply_batch(
        registry,
        items(
            [
                certify_msg(b3, None, T0 + timedelta(hours=1)),
                certify_msg(b3, T0 + 2 * day, None),
                certify_msg(b3, T0 - day, T0, collection="HSC/calib-other"),
            ]
        ),
    )
    assert [i for i, _ in later.rejected] == ["m0"]
    assert sorted(later.applied) == ["m1", "m2"]
    assert count(registry, "calib_validity") == 4


def test_certifying_a_dataset_not_there_yet_is_retried(registry: Registry) -> None:
    registry.apply(dims(detectors=(1,)))
    bias = calib_msg("bias", 1, "HSC/calib/bias")
    result = apply_batch(registry, items([certify_msg(bias, T0, None)]))
    assert [i for i, _ in result.retry] == ["m0"]
    assert apply_batch(registry, items([bias, certify_msg(bias, T0, None)])).retry == []


def test_strict_apply_is_all_or_nothing(registry: Registry) -> None:
    registry.apply(dims(detectors=(1,)))
    b1, b2 = calib_msg("bias", 1, "HSC/calib/b1"), calib_msg("bias", 1, "HSC/calib/b2")
    registry.apply([b1, certify_msg(b1, T0, None)])
    before = counts(registry)
    with pytest.raises(CertificationConflictError, match="overlaps"):
        registry.apply([b2, certify_msg(b2, T0 + timedelta(days=3), None)])
    with pytest.raises(MissingParentError, match="exposure 5"):
        registry.apply([raw_msg(5, 1), b2])
    with pytest.raises(RejectedMessageError, match="unknown instrument"):
        registry.apply([raw_msg(100, 1, instrument="NOPE")])
    assert counts(registry) == before  # b2 was not written by any of the failed calls


def _hold_until(event: threading.Event, what: str, timeout: float = 20.0) -> None:
    if not event.wait(timeout):
        raise AssertionError(f"timed out waiting for {what}")


def _pg_waiting(admin_engine: sa.Engine, pid: int) -> bool:
    with admin_engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text("SELECT count(*) FROM pg_locks WHERE pid = :p AND NOT granted"), {"p": pid}
            ).scalar()
        )


def _race(backend, registry: Registry, *, locked: bool):
    """Two writers with their own engines certify overlapping ranges of the same bias key.

    Writer A checks for overlaps and then, before committing, waits until writer B is either
    blocked by the lock (locked=True) or has done its own overlap check (locked=False).
    """
    registry.apply(dims(detectors=(1,)))
    ba, bb = calib_msg("bias", 1, "HSC/calib/a"), calib_msg("bias", 1, "HSC/calib/b")
    registry.apply([ba, bb])
    registry.register_collection("HSC/calib", "CALIBRATION")
    wa, wb = backend.open(), backend.open()
    a_checked, b_started, b_checked, b_locked = (threading.Event() for _ in range(4))
    b_pid: list[int] = []
    results: dict[str, object] = {}

    def hook_a(phase: str, conn) -> None:
        if phase != "certify_checked":
            return
        a_checked.set()
        if not locked:
            _hold_until(b_checked, "writer B's overlap check")
        elif backend.name == "postgresql":
            _hold_until(b_started, "writer B to start")
            deadline = time.monotonic() + 20
            while not _pg_waiting(registry.engine, b_pid[0]):  # B blocked on A's advisory lock
                assert time.monotonic() < deadline, "writer B never waited for the lock"
                time.sleep(0.005)
            assert not b_locked.is_set()
        else:
            # SQLite: B's write transaction cannot even begin while A holds the write lock.
            assert not b_started.wait(0.3), "writer B got into a write transaction while A held the lock"

    def hook_b(phase: str, conn) -> None:
        if phase == "dimensions":
            if backend.name == "postgresql":
                b_pid.append(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar())
            b_started.set()
        elif phase == "certify_locked":
            b_locked.set()
        elif phase == "certify_checked":
            b_checked.set()

    def run(name: str, reg: Registry, msg, hook) -> None:
        try:
            results[name] = apply_batch(reg, items([msg], prefix=name), on_phase=hook)
        except BaseException as exc:
            results[name] = exc

    ta = threading.Thread(target=run, args=("a", wa, certify_msg(ba, T0, T0 + timedelta(days=2)), hook_a))
    tb = threading.Thread(target=run, args=("b", wb, certify_msg(bb, T0 + timedelta(days=1), None), hook_b))
    ta.start()
    _hold_until(a_checked, "writer A's overlap check")
    tb.start()
    ta.join(60)
    tb.join(60)
    assert not ta.is_alive() and not tb.is_alive()
    for name in ("a", "b"):
        assert not isinstance(results[name], BaseException), results[name]
    return results["a"], results["b"]


def test_two_concurrent_writers_certifying_overlapping_ranges_exactly_one_wins(backend, registry) -> None:
    ra, rb = _race(backend, registry, locked=True)
    assert ra.applied == ["a0"] and ra.rejected == []
    assert rb.applied == [] and [i for i, _ in rb.rejected] == ["b0"]
    assert "overlaps" in rb.rejected[0][1]
    assert count(registry, "calib_validity") == 1
    assert [r.item_id for r in registry.rejects()] == ["b0"]


def test_the_race_test_detects_a_missing_lock(backend, registry, monkeypatch) -> None:
    """Without the advisory lock both PostgreSQL writers would win: the test above can fail."""
    if backend.name != "postgresql":
        pytest.skip("on SQLite the lock is the write transaction itself (BEGIN IMMEDIATE)")
    monkeypatch.setattr(certify_module, "lock", lambda conn, name: None)
    ra, rb = _race(backend, registry, locked=False)
    assert ra.applied == ["a0"] and rb.applied == ["b0"]
    assert count(registry, "calib_validity") == 2  # overlapping ranges: what the lock prevents


# --- crashes and outages ---------------------------------------------------------------------


def test_a_crash_mid_batch_leaves_no_partial_rows_and_redelivery_completes(registry: Registry) -> None:
    msgs, *_ = good_batch()
    batch = items([*msgs, "{poison"])
    empty = counts(registry)

    def crash(phase: str, conn) -> None:
        if phase == "certify_checked":
            raise RuntimeError("Lambda killed mid-batch")

    with pytest.raises(RuntimeError, match="killed"):
        apply_batch(registry, batch, on_phase=crash)
    assert counts(registry) == empty
    result = apply_batch(registry, batch)
    assert len(result.applied) == len(msgs) and len(result.rejected) == 1
    assert registry.applied_status(EX).complete


_CRASH_SCRIPT = """
import os, sys, json
from isrflow.registry import Registry, apply_batch, BatchItem
url, schema, path = sys.argv[1], sys.argv[2] or None, sys.argv[3]
reg = Registry.open(url, schema=schema)
batch = [BatchItem(i["id"], i["body"]) for i in json.load(open(path))]
def die(phase, conn):
    if phase == "before_commit":
        os._exit(17)   # the process dies with the transaction open: no rollback, no commit
apply_batch(reg, batch, on_phase=die)
"""


def test_a_killed_writer_process_leaves_no_partial_rows(backend, registry, tmp_path) -> None:
    msgs, *_ = good_batch()
    path = tmp_path / "batch.json"
    path.write_text(json.dumps([{"id": i.item_id, "body": i.body} for i in items(msgs)]))
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH_SCRIPT, backend.url, backend.schema or "", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 17, proc.stderr
    assert counts(registry)["dataset"] == 0 and counts(registry)["instrument"] == 0
    assert len(apply_batch(registry, items(msgs)).applied) == len(msgs)


def test_database_outage_raises_so_sqs_redelivers_the_batch(backend, registry, tmp_path) -> None:
    msgs, *_ = good_batch()
    registry.engine.dispose()
    if backend.name == "postgresql":
        registry.engine = create_registry_engine(
            "postgresql://postgres@127.0.0.1:1/test", schema=backend.schema
        )
    else:
        registry.engine = create_registry_engine(f"sqlite:///{tmp_path}")  # a directory: cannot be opened
    with pytest.raises(RegistryUnavailableError, match="unavailable"):
        apply_batch(registry, items(msgs))


def test_give_up_after_n_deliveries(registry: Registry) -> None:
    registry.apply(dims(detectors=(1,)))
    out = output_msg(100, 1, [raw_msg(100, 1)], execution_id=EX)
    body = dump_message(out)
    early = apply_batch(registry, [BatchItem("x", body, receive_count=4)], give_up_after=5)
    assert [i for i, _ in early.retry] == ["x"]
    late = apply_batch(registry, [BatchItem("x", body, receive_count=5)], give_up_after=5)
    assert late.retry == [] and "gave up after 5 deliveries" in late.rejected[0][1]
    assert registry.applied_status(EX).rejected == 1


def test_processing_records_keep_the_latest_attempt(registry: Registry) -> None:
    def rec(retries: int, status: str):
        return ProcessingRecordMessage(
            execution_id=EX,
            instrument="HSC",
            exposure=100,
            detector=1,
            status=status,
            retries=retries,
            error=None if status == "succeeded" else "boom",
        )

    apply_batch(registry, items([rec(1, "succeeded"), rec(0, "failed")]))
    [row] = registry.processing_records(EX)
    assert (row["retries"], row["status"], row["error"]) == (1, "succeeded", None)


# --- wait_applied ----------------------------------------------------------------------------


def test_wait_applied_returns_at_once_when_done(registry: Registry) -> None:
    msgs, *_ = good_batch()
    apply_batch(registry, items(msgs))
    clock = FakeClock()
    status = registry.wait_applied(EX, 5, clock=clock, sleep=clock.sleep)
    assert status.applied == 5 and clock.sleeps == []
    assert registry.wait_applied(EX, clock=clock, sleep=clock.sleep).expected == 5  # from the marker


def test_wait_applied_polls_until_the_writer_catches_up(registry: Registry) -> None:
    msgs, *_ = good_batch()
    marker, rest = msgs[-1], msgs[:-1]
    clock = FakeClock()
    deliveries = {2: rest, 4: [marker]}  # the writer applies these during the 2nd and 4th sleeps
    clock.on_sleep = lambda n: (
        apply_batch(registry, items(deliveries[n], prefix=f"s{n}")) if n in deliveries else None
    )
    status = registry.wait_applied(EX, timeout=60, poll_interval=0.5, clock=clock, sleep=clock.sleep)
    assert status.complete and status.expected == 5
    assert clock.sleeps == [0.5] * 4


def test_wait_applied_times_out_without_real_sleeping(registry: Registry) -> None:
    registry.apply([*dims(detectors=(1,)), raw_msg(100, 1, execution_id=EX)])
    clock = FakeClock()
    start = time.monotonic()
    with pytest.raises(
        WaitTimeoutError, match=r"processed 1 messages \(1 applied, 0 rejected\), waiting for 3"
    ):
        registry.wait_applied(EX, 3, timeout=10, poll_interval=3, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [3, 3, 3, 1] and clock.now == 1010.0
    assert time.monotonic() - start < 5
    with pytest.raises(WaitTimeoutError, match="completion marker"):
        registry.wait_applied(EX, timeout=1, clock=clock, sleep=clock.sleep)


# --- the Lambda handler ----------------------------------------------------------------------

EVENT = REPO_ROOT / "events" / "registry_writer_sqs_batch.json"


def test_example_event_validates_and_runs_through_the_handler(handler_module, registry: Registry) -> None:
    event = json.loads(EVENT.read_text())
    kinds = {json.loads(r["body"])["kind"] for r in event["Records"]}
    assert kinds == {
        "instrument",
        "detector",
        "exposure",
        "dataset",
        "certify",
        "processing_record",
        "execution_complete",
    }
    assert handler_module.lambda_handler(event, None) == {"batchItemFailures": []}
    assert registry.rejects() == []
    execution = json.loads(event["Records"][0]["body"])["execution_id"]
    status = registry.wait_applied(execution, timeout=0, clock=lambda: 0.0, sleep=lambda s: None)
    assert status.complete and status.applied == 2
    assert len(registry.query_datasets("postISRCCD", ["HSC/runs/isr/20261120T031500Z"])) == 1
    before = counts(registry)
    assert handler_module.lambda_handler(event, None) == {"batchItemFailures": []}  # redelivered: no change
    assert counts(registry) == before


def test_handler_reports_only_missing_parents_as_failures(
    handler_module, registry: Registry, monkeypatch
) -> None:
    registry.apply(dims(detectors=(1,)))
    orphan = output_msg(100, 1, [raw_msg(100, 1)])
    event = {
        "Records": [
            {
                "messageId": "ok",
                "body": dump_message(raw_msg(100, 1, run="HSC/raw/other")),
                "attributes": {"ApproximateReceiveCount": "1"},
            },
            {
                "messageId": "orphan",
                "body": dump_message(orphan),
                "attributes": {"ApproximateReceiveCount": "2"},
            },
            {"messageId": "poison", "body": "[]", "attributes": {}},
        ]
    }
    assert handler_module.lambda_handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "orphan"}]}
    assert [r.item_id for r in registry.rejects()] == ["poison"]
    # With ISRFLOW_REGISTRY_GIVE_UP_AFTER, an item whose parent never comes is rejected at last.
    monkeypatch.setenv("ISRFLOW_REGISTRY_GIVE_UP_AFTER", "2")
    assert handler_module.lambda_handler({"Records": event["Records"][1:2]}, None) == {
        "batchItemFailures": []
    }
    assert [r.item_id for r in registry.rejects()] == ["poison", "orphan"]


def test_handler_raises_when_the_database_is_down(handler_module, monkeypatch) -> None:
    monkeypatch.setenv("ISRFLOW_REGISTRY_URL", "postgresql://postgres@127.0.0.1:1/test")
    event = json.loads(EVENT.read_text())
    with pytest.raises(RegistryUnavailableError):
        handler_module.lambda_handler(event, None)
