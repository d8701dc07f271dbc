"""The writer's PostgreSQL bulk path (issue 12) and its quick limit check.

- ``copy_pg.array_literal``: every value survives the trip through a PostgreSQL array
  parameter unchanged (quotes, backslashes, the string "NULL", control characters, non-ASCII,
  NaN/infinities, 64-bit integers, uuids, datetimes as microseconds).
- ``writer_limits.certainly_storable`` never calls a message fine that ``limit_violation``
  refuses (seeded random mutations of a dataset message), and does call ordinary ones fine.
- A value only the database refuses, inside a batch of datasets with provenance, is still
  found by bisection and rejected alone, on both engines' paths.
"""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from registry_helpers import count

from isrflow.model.messages import (
    DatasetMessage,
    DetectorRecord,
    InstrumentRecord,
    ProvenanceInput,
    dump_message,
)
from isrflow.registry import BatchItem, Registry, apply_batch
from isrflow.registry.copy_pg import array_literal
from isrflow.registry.limits import limit_violation
from isrflow.registry.writer import batch as batch_module
from isrflow.registry.writer import items as items_module
from isrflow.registry.writer_limits import certainly_storable

EX = "exec-bulk"

TEXTS = [
    "plain",
    "",
    'say "hi"',
    "back\\slash",
    "NULL",
    "null",
    "tab\there",
    "new\nline",
    "é ü 漢字",
    "{braces,comma}",
    " padded ",
    None,
    '\\"',
    "\x01ctl",
]
INTS = [0, -1, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63), None, 42]
FLOATS = [0.0, -1.5, 1e300, 5e-324, math.inf, -math.inf, None, 3]


def _round_trip(pg_admin: sa.Engine, values: list, type_name: str) -> list:
    with pg_admin.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT v FROM unnest(%s::{type_name}[]) WITH ORDINALITY AS u(v, n) ORDER BY n",
            (array_literal(values, type_name),),
        ).all()
    return [r.v for r in rows]


def test_array_literals_carry_every_value_unchanged(pg_admin) -> None:
    assert _round_trip(pg_admin, TEXTS, "text") == TEXTS
    assert _round_trip(pg_admin, INTS, "int8") == INTS
    assert _round_trip(pg_admin, FLOATS, "float8") == FLOATS
    nan = _round_trip(pg_admin, [math.nan], "float8")
    assert math.isnan(nan[0])
    ids = [uuid.UUID(int=random.Random(1).getrandbits(128)), None, uuid.UUID(int=0)]
    assert _round_trip(pg_admin, ids, "uuid") == ids
    when = datetime(2026, 11, 20, 3, 0, 0, 123456, tzinfo=UTC)
    micros = _round_trip(pg_admin, [when, None], "int8")
    assert datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros[0]) == when
    assert micros[1] is None


def test_array_literal_refuses_a_value_of_the_wrong_type() -> None:
    with pytest.raises(ValueError, match="expected text"):
        array_literal([1], "text")
    with pytest.raises(ValueError, match="expected an integer"):
        array_literal([True], "int4")


def _dataset(**kw) -> DatasetMessage:
    fields = {
        "dataset_type": "postISRCCD",
        "run": "u/bulk/run",
        "data_id": {"instrument": "HSC", "exposure": 7, "detector": 3},
        "uri": "s3://b/x.fits",
        "size": 10,
        "sha256": "a" * 64,
        "execution_id": EX,
        "inputs": [ProvenanceInput(dataset_id=uuid.UUID(int=1), role="raw")],
    }
    fields.update(kw)
    return DatasetMessage(**fields)


#: field -> values that may or may not be storable (lengths around the column limits, NUL, ...)
MUTATIONS = {
    "run": ["r" * n for n in (1, 255, 256, 257, 300)] + ["r\x00x", "rü"],
    "uri": ["s3://\x00", "s3://é", "s3://\ud800", "s3://" + "u" * 5000],
    "execution_id": ["e" * n for n in (1, 256, 257)] + ["e\x00", None],
    "message_id": ["m" * n for n in (1, 64, 65)] + ["m\x00"],
    "size": [0, 2**63 - 1, 2**63, 2**70],
    "data_id": [
        {"instrument": i, "exposure": e, "detector": d}
        for i in ("HSC", "H" * 64, "H" * 65, "H\x00")
        for e in (0, 2**63 - 1, 2**63)
        for d in (0, 2**31 - 1, 2**31, -(2**31) - 1)
    ],
    "role": ["raw", "x" * 32, "x" * 33, "r\x00"],
}


def _mutated(rng: random.Random) -> DatasetMessage | None:
    m = _dataset()
    for name in rng.sample(sorted(MUTATIONS), rng.randint(1, 3)):
        value = rng.choice(MUTATIONS[name])
        try:
            if name == "role":
                bad_input = ProvenanceInput.model_construct(dataset_id=uuid.UUID(int=1), role=value)
                m = m.model_copy(update={"inputs": [bad_input]})
            elif name == "data_id":
                m = _dataset(data_id=value, execution_id=m.execution_id, message_id=m.message_id)
            else:
                m = m.model_copy(update={name: value})
        except Exception:  # the model itself refuses it: not this check's business
            return None
    return m


def test_the_quick_check_never_passes_what_limit_violation_refuses() -> None:
    rng = random.Random(12)
    refused = passed = 0
    for _ in range(3000):
        m = _mutated(rng)
        if m is None:
            continue
        verdict = limit_violation(m)
        if certainly_storable(m):
            passed += 1
            assert verdict is None, (verdict, m)
        refused += verdict is not None
    assert refused > 100 and passed > 100  # both sides were exercised


def test_the_quick_check_passes_ordinary_datasets_and_nothing_else() -> None:
    assert certainly_storable(_dataset())
    assert certainly_storable(_dataset(execution_id=None, sha256=None, size=None, inputs=[]))
    # other kinds: always ask limit_violation
    assert not certainly_storable(DetectorRecord(instrument="HSC", id=1, name="D1"))


def _parents_and_outputs(n: int) -> list:
    msgs: list = [InstrumentRecord(name="HSC", execution_id=EX)]
    msgs += [DetectorRecord(instrument="HSC", id=d, name=f"D{d}", execution_id=EX) for d in range(4)]
    raws = [
        DatasetMessage(
            dataset_type="bias",
            run="HSC/calib",
            data_id={"instrument": "HSC", "detector": d},
            uri=f"s3://b/bias{d}.fits",
            execution_id=EX,
        )
        for d in range(4)
    ]
    msgs += raws
    msgs += [
        DatasetMessage(
            dataset_type="flat",
            run="HSC/calib/flat",
            uri=f"s3://b/flat{i}.fits",
            size=i,
            data_id={"instrument": "HSC", "detector": i % 4, "physical_filter": f"F{i}"},
            execution_id=EX,
            inputs=[ProvenanceInput(dataset_id=raws[i % 4].id, role="bias")],
        )
        for i in range(n)
    ]
    return msgs


def test_a_dataset_only_the_database_refuses_is_rejected_alone(
    backend, registry: Registry, monkeypatch
) -> None:
    """Both up-front checks off: a NUL in a URI (PostgreSQL) / a 2**63 size (both engines) reaches the
    bulk INSERT; bisection finds it and everything else of the batch is applied with its provenance."""
    monkeypatch.setattr(items_module, "limit_violation", lambda message: None)
    monkeypatch.setattr(items_module, "certainly_storable", lambda message: False)
    msgs = _parents_and_outputs(60)
    bad = msgs[-1].model_copy(update={"size": 2**63})
    if backend.name == "postgresql":
        bad = bad.model_copy(update={"uri": "s3://b/\x00.fits", "size": 1})
    msgs[-1] = bad
    result = apply_batch(registry, [BatchItem(f"m{i}", dump_message(m)) for i, m in enumerate(msgs)])
    assert [i for i, _ in result.rejected] == [f"m{len(msgs) - 1}"]
    assert result.rejected[0][1].startswith("the database refused this dataset message: ")
    assert len(result.applied) == len(msgs) - 1 and result.retry == []
    assert count(registry, "dataset") == 4 + 59
    assert count(registry, "dataset_provenance") == 59
    again = apply_batch(registry, [BatchItem(f"m{i}", dump_message(m)) for i, m in enumerate(msgs[:-1])])
    assert len(again.applied) == len(msgs) - 1  # a redelivery changes nothing
    assert count(registry, "dataset") == 4 + 59 and count(registry, "dataset_provenance") == 59
    assert registry.applied_status(EX).applied == len(msgs) - 1


def test_replace_rewrites_the_row_and_its_provenance_in_bulk(registry: Registry) -> None:
    msgs = _parents_and_outputs(10)
    assert not apply_batch(registry, [BatchItem(f"m{i}", m) for i, m in enumerate(msgs)]).rejected
    replaced = [
        m.model_copy(update={"uri": m.uri + ".v2", "replace": True, "inputs": []}) for m in msgs[-10:]
    ]
    result = apply_batch(registry, [BatchItem(f"r{i}", m) for i, m in enumerate(replaced)])
    assert len(result.applied) == 10
    assert all(registry.get_dataset(m.id).uri.endswith(".v2") for m in replaced)
    assert count(registry, "dataset_provenance") == 0


def test_key_lookups_accept_values_beyond_the_column_range(backend, registry: Registry) -> None:
    """A 33-bit detector id in a lookup (of a message whose limit check was skipped) matches no row
    instead of failing the statement."""
    if backend.name != "postgresql":
        pytest.skip("the array lookups are PostgreSQL's")
    from isrflow.registry import schema as s
    from isrflow.registry.copy_pg import select_any

    apply_batch(
        registry,
        [
            BatchItem("i", InstrumentRecord(name="HSC")),
            BatchItem("d", DetectorRecord(instrument="HSC", id=5, name="D5")),
        ],
    )
    d = s.detector.c
    with registry.engine.connect() as conn:
        rows = select_any(conn, [d.instrument, d.id], [d.instrument, d.id], [("HSC", 2**31), ("HSC", 5)])
        assert [(r.instrument, r.id) for r in rows] == [("HSC", 5)]
        assert select_any(conn, [d.name], [d.id], [2**40]) == []


def test_a_connection_lost_under_pipelined_writes_is_an_outage_and_nothing_is_written(
    backend, registry: Registry, pg_admin
) -> None:
    """The writer's backend is killed after the dataset phase: the pipelined bookkeeping INSERT
    fails as RegistryUnavailableError (redeliver the batch), no row stays, and the next try applies."""
    if backend.name != "postgresql":
        pytest.skip("pipelined writes are PostgreSQL's")
    from isrflow.model.errors import RegistryUnavailableError

    msgs = _parents_and_outputs(20)
    batch = [BatchItem(f"m{i}", dump_message(m)) for i, m in enumerate(msgs)]

    def kill(phase: str, conn) -> None:
        if phase == "datasets":
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with pg_admin.connect() as admin:
                admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")

    with pytest.raises(RegistryUnavailableError, match="unavailable"):
        apply_batch(registry, batch, on_phase=kill)
    assert count(registry, "dataset") == 0 and count(registry, "applied_message") == 0
    result = apply_batch(registry, batch)
    assert len(result.applied) == len(msgs) and count(registry, "dataset") == 24


def test_without_pipelining_the_writes_wait_in_turn_with_the_same_outcome(
    registry: Registry, monkeypatch
) -> None:
    """An old libpq cannot pipeline: the writer then executes each bulk statement directly."""
    monkeypatch.setattr(batch_module, "_PIPELINE", False)
    msgs = _parents_and_outputs(30)
    result = apply_batch(registry, [BatchItem(f"m{i}", m) for i, m in enumerate(msgs)])
    assert len(result.applied) == len(msgs)
    assert count(registry, "dataset") == 34 and count(registry, "dataset_provenance") == 30
    assert registry.applied_status(EX).applied == len(msgs)


def test_datasets_a_concurrent_writer_commits_first_are_applied_by_a_second_run(
    backend, registry: Registry, monkeypatch
) -> None:
    """PostgreSQL inserts the datasets it found absent with plain INSERTs: when another writer commits
    some of them between this batch's lookups and its INSERTs, the unique violation makes the writer
    run the batch again with ON CONFLICT, and every row is there once."""
    if backend.name != "postgresql":
        pytest.skip("the optimistic plain INSERTs are PostgreSQL's")
    msgs = _parents_and_outputs(20)
    parents, outputs = msgs[:9], msgs[9:]
    assert not apply_batch(registry, [BatchItem(f"p{i}", m) for i, m in enumerate(parents)]).rejected
    other = backend.open()
    original = batch_module.Batch.select_many
    optimism: list[bool] = []

    def racing(self, lookups):
        optimism.append(self.optimistic)
        found = original(self, lookups)
        if len(optimism) == 1:  # the other writer wins the race for five of the datasets
            won = apply_batch(other, [BatchItem(f"o{i}", m) for i, m in enumerate(outputs[:5])])
            assert len(won.applied) == 5
        return found

    monkeypatch.setattr(batch_module.Batch, "select_many", racing)
    result = apply_batch(registry, [BatchItem(f"m{i}", dump_message(m)) for i, m in enumerate(outputs)])
    assert optimism == [True, True, False]  # this batch, the other writer's, this batch again
    assert len(result.applied) == 20 and result.rejected == [] and result.retry == []
    assert count(registry, "dataset") == 24 and count(registry, "dataset_provenance") == 20
    assert registry.applied_status(EX).applied == len(msgs)
