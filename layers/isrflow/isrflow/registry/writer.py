"""The batch writer: apply many registry messages in ONE transaction.

``apply_batch(registry, items)`` is what the registry-writer Lambda runs for an SQS batch:

1. Validate every item (pydantic), then against the database's column limits
   (:mod:`.limits`: integer ranges, NUL characters, string lengths; an ordinary dataset
   message is cleared by the quicker :func:`.writer_limits.certainly_storable`). Either
   failure makes it *poison*: rejected before the transaction.
2. In one write transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL READ COMMITTED), apply by
   kind in parent-to-child order: instruments, detectors, exposures, datasets, provenance,
   certifications, processing records, execution markers; within a kind sorted by key, so
   concurrent writers take row locks in the same order and cannot deadlock.
3. Rows go in with bulk ``INSERT ... ON CONFLICT`` (DO NOTHING for facts, DO UPDATE for
   ``replace`` datasets, processing records and execution markers): duplicates are no-ops.
   On PostgreSQL each table's rows are one statement with one array parameter per column
   (:mod:`.copy_pg`), and the dataset, provenance, record and bookkeeping INSERTs are
   pipelined (:mod:`.copy_pipeline`: sent without waiting, waited for before anything else
   touches the connection and before the commit); lookups are one ``= ANY(array)`` each.
4. Outcomes per item:

   - *applied* (including duplicates that changed nothing);
   - *rejected*: can never apply (malformed, unknown instrument, overlapping validity,
     content conflicting with an existing dataset, wrong collection type). Written to the
     ``rejected_message`` table with its reason and counted as processed: never redelivered;
   - *retry*: a parent (dimension record, input dataset, dataset to certify) is not there yet
     because SQS reordered messages. Nothing of the item is written; it is returned so the
     handler lists it in ``batchItemFailures`` and SQS delivers it again later: after the
     few seconds :meth:`BatchResult.visibility_changes` gives it (the handler applies them
     with ChangeMessageVisibility; see :mod:`.redelivery`), not after the queue's 900 s
     visibility timeout. After ``give_up_after`` deliveries it is rejected instead, but only
     once it is also ``give_up_min_age_s`` old (when its age is known): a young orphan may be
     waiting for a parent further back in a backlog, and is kept (dead-lettered, then redriven).

5. Certification runs under a lock per CALIBRATION collection (``pg_advisory_xact_lock`` on
   PostgreSQL; the SQLite write lock), re-reading existing validity ranges after taking it,
   so two writers can never certify overlapping ranges.
6. Messages carrying an ``execution_id`` are counted per execution (``applied_message``,
   keyed by message id, so redeliveries count once); ``Registry.wait_applied`` reads that.

A data error the checks did not foresee (the database refuses a value: out of range, NUL,
too long, a constraint) rolls the transaction back; the writer then finds the one item that
causes it by binary search over prefixes of the batch in parent-to-child order, each tried in a
transaction that is rolled back (about log2(n) trials), rejects only that item with the
database's error, and applies the rest (:func:`is_poison_error`, :func:`_find_poison`).

Any other database error (outage, lost connection, a bug) propagates: the transaction rolls
back as a whole and the Lambda fails, so SQS redelivers the entire batch. Nothing is
half-written.
"""

from __future__ import annotations

import gc
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Connection

from isrflow.model.errors import (
    CertificationConflictError,
    MissingParentError,
    RegistryError,
    RejectedMessageError,
)
from isrflow.model.messages import (
    KIND_ORDER,
    CertifyMessage,
    DatasetMessage,
    DetectorRecord,
    ExecutionCompleteMessage,
    ExposureRecord,
    InstrumentRecord,
    ProcessingRecordMessage,
    message_error_summary,
    parse_message,
)
from isrflow.registry import copy_pg, copy_pipeline
from isrflow.registry import schema as s
from isrflow.registry.engine import is_postgres, lock, transaction
from isrflow.registry.ids import CALIBRATION_TYPES
from isrflow.registry.limits import limit_violation, storable_ids, storable_text
from isrflow.registry.redelivery import VisibilityChange, retry_visibility_s
from isrflow.registry.writer_limits import certainly_storable, data_id_json, ids_storable

#: Largest IN list sent in one statement.
_CHUNK = 5000

PhaseHook = Callable[[str, Connection], None]

#: Whether PostgreSQL writes are pipelined (:mod:`.copy_pipeline`); else each waits in turn.
_PIPELINE = copy_pipeline.supported()


@dataclass
class BatchItem:
    """One item of a batch: an id (the SQS messageId), its body, how often SQS delivered it and
    its receipt handle (what ChangeMessageVisibility needs; None outside SQS)."""

    item_id: str
    body: str | bytes | dict[str, Any] | BaseModel
    receive_count: int = 1
    receipt: str | None = None
    #: age of the message (s since it was first sent); None = unknown
    age_s: float | None = None


@dataclass
class BatchResult:
    """Outcome of a batch: item ids applied, rejected (with reason) and to retry (with reason)."""

    applied: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    retry: list[tuple[str, str]] = field(default_factory=list)

    def batch_item_failures(self) -> list[dict[str, str]]:
        """The ``batchItemFailures`` list of the SQS partial-batch response (retry items only)."""
        return [{"itemIdentifier": item_id} for item_id, _ in self.retry]

    def summary(self) -> dict[str, int]:
        return {"applied": len(self.applied), "rejected": len(self.rejected), "retry": len(self.retry)}

    def visibility_changes(self, items: Sequence[BatchItem]) -> list[VisibilityChange]:
        """How long each item returned for retry should stay invisible (see :mod:`.redelivery`):
        a few seconds growing with its receive count, instead of the queue's visibility timeout.
        Items without a receipt handle are left out."""
        retry = {item_id for item_id, _ in self.retry}
        return [
            VisibilityChange(i.item_id, i.receipt, retry_visibility_s(i.receive_count))
            for i in items
            if i.item_id in retry and i.receipt
        ]


class _Item:
    __slots__ = ("age_s", "body", "error", "fixed", "item_id", "message", "reason", "receive_count", "status")

    def __init__(self, item_id: str, message: Any, body: str, receive_count: int) -> None:
        self.item_id = item_id
        self.message = message
        self.body = body
        self.receive_count = receive_count
        self.status = "pending"
        self.reason = ""
        self.error: type[RegistryError] = RejectedMessageError
        self.fixed = False  # rejected before any transaction (parse, database limits): never reset
        self.age_s: float | None = None

    def reset(self) -> None:
        """Back to pending before a (re)run of the batch, unless rejected before the transaction."""
        if not self.fixed:
            self.status, self.reason, self.error = "pending", "", RejectedMessageError

    def reject_fixed(self, reason: str) -> None:
        """Reject for good: the item is left out of every transaction of this batch."""
        self.reject(reason)
        self.fixed = True

    def reject(self, reason: str, error: type[RegistryError] = RejectedMessageError) -> None:
        self.status, self.reason, self.error = "rejected", reason, error

    def retry(self, reason: str) -> None:
        self.status, self.reason, self.error = "retry", reason, MissingParentError

    def applied(self) -> None:
        self.status = "applied"


def _to_item(raw: BatchItem) -> _Item:
    """Parse one batch item; reject it (before any transaction) if it is malformed or holds a
    value the database cannot store (:func:`.limits.limit_violation`)."""
    item = _parse_item(raw)
    if item.message is None:
        item.fixed = True  # rejected as malformed
    else:
        problem = None if certainly_storable(item.message) else limit_violation(item.message)
        if problem is not None:
            item.reject_fixed(f"value not storable in the registry: {problem}")
    return item


def _parse_item(raw: BatchItem) -> _Item:
    body = raw.body
    if isinstance(body, BaseModel):
        text = body.model_dump_json(exclude_none=True)
        try:  # re-validate: a model built with model_construct or mutated afterwards is checked too
            return _Item(raw.item_id, parse_message(text), text, raw.receive_count)
        except ValidationError as exc:
            item = _Item(raw.item_id, None, text, raw.receive_count)
            item.reject(f"invalid message: {message_error_summary(exc)}")
            return item
    if isinstance(body, dict):
        text = json.dumps(body, default=str)
        data: Any = body
    else:
        text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body)
        data = text
    try:
        return _Item(raw.item_id, parse_message(data), text, raw.receive_count)
    except ValidationError as exc:
        item = _Item(raw.item_id, None, text, raw.receive_count)
        item.reject(f"invalid message: {message_error_summary(exc)}")
        return item


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _select_in(conn: Connection, columns: Sequence[Any], key: Any, values: Iterable[Any]) -> list[Any]:
    """``SELECT columns WHERE key IN values`` (``key``: a column or ``sa.tuple_`` of columns).

    PostgreSQL: one statement with the values as array parameters (:func:`.copy_pg.select_any`);
    otherwise (SQLite, or columns whose results SQLAlchemy converts) chunked ``IN`` lists."""
    keys = list(key.clauses) if isinstance(key, sa.sql.elements.Tuple) else [key]
    if is_postgres(conn) and copy_pg.plain_result(columns):
        return copy_pg.select_any(conn, columns, keys, values)
    vals = list(set(values))
    rows: list[Any] = []
    for chunk in _chunks(vals):
        rows.extend(conn.execute(sa.select(*columns).where(key.in_(chunk))).all())
    return rows


def _insert(
    conn: Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    conflict: Sequence[str],
    update: Sequence[str] = (),
) -> None:
    """Bulk ``INSERT ... ON CONFLICT (conflict) DO NOTHING / DO UPDATE SET update``.

    Every row must have the same keys. On PostgreSQL the rows go in one statement, each column
    as one array parameter (:mod:`.copy_pg`: one round trip, no per-value driver work); on
    SQLite with ``executemany``. Same semantics either way.
    """
    if not rows:
        return
    if is_postgres(conn):
        copy_pg.insert_rows(conn, table, rows, conflict, update)
        return
    from sqlalchemy.dialects.sqlite import insert

    stmt = insert(table)
    if update:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(conflict), set_={c: stmt.excluded[c] for c in update}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
    for chunk in _chunks(rows, 2000):
        conn.execute(stmt, list(chunk))


def _span(begin: datetime | None, end: datetime | None) -> tuple[int, int]:
    return (
        s.TIME_MIN if begin is None else s.to_micros(begin),
        s.TIME_MAX if end is None else s.to_micros(end),
    )


def _fmt_span(b: int, e: int) -> str:
    lo = "-inf" if b == s.TIME_MIN else s.from_micros(b).isoformat()
    hi = "+inf" if e == s.TIME_MAX else s.from_micros(e).isoformat()
    return f"[{lo}, {hi})"


# --- phases ----------------------------------------------------------------------------------


class _Batch:
    def __init__(
        self, conn: Connection, items: list[_Item], now: datetime, on_phase: PhaseHook | None
    ) -> None:
        self._conn = conn
        #: PostgreSQL: bulk writes are pipelined (sent without waiting; see .copy_pipeline)
        self.sender = copy_pipeline.Sender(conn) if is_postgres(conn) and _PIPELINE else None
        self.items = items
        self.now = now
        self.on_phase = on_phase
        self.by_kind: dict[str, list[_Item]] = defaultdict(list)
        for it in items:
            if it.message is not None and it.status == "pending":
                self.by_kind[it.message.kind].append(it)
        self.instruments: set[str] = set()
        self.detectors: set[tuple[str, int]] = set()
        self.exposures: set[tuple[str, int]] = set()
        self.datasets: dict[uuid.UUID, dict[str, Any]] = {}  # accepted in this batch: id -> row

    @property
    def conn(self) -> Connection:
        """The transaction's connection, for statements through SQLAlchemy: pipelined writes
        sent before are waited for first, so they run in order and their errors surface here."""
        self.drain()
        return self._conn

    def drain(self) -> None:
        """Wait for the pipelined writes (raising their first error)."""
        if self.sender is not None:
            self.sender.drain()

    def close(self) -> None:
        """Abandon pipelined writes after an error (the transaction rolls back)."""
        if self.sender is not None:
            self.sender.close()

    def write(
        self, table: sa.Table, rows: list[dict[str, Any]], conflict: Sequence[str], update: Sequence[str] = ()
    ) -> None:
        """:func:`_insert`, pipelined on PostgreSQL."""
        if not rows:
            return
        if self.sender is not None:
            self.sender.send(*copy_pg.insert_statement(table, rows, conflict, update))
        else:
            _insert(self.conn, table, rows, conflict, update)

    def phase(self, name: str) -> None:
        if self.on_phase is not None:
            self.on_phase(name, self.conn)

    def run(self) -> None:
        self._instruments()
        self._dimension(self.by_kind["detector"], s.detector, self.detectors, "detector")
        self._dimension(self.by_kind["exposure"], s.exposure, self.exposures, "exposure")
        self.phase("dimensions")
        self._datasets()
        self.phase("datasets")
        self._certify()
        self._records()
        self._markers()

    # instruments, detectors, exposures

    def _instruments(self) -> None:
        items = sorted(self.by_kind["instrument"], key=lambda it: it.message.name)
        rows: dict[str, dict[str, Any]] = {}
        for it in items:
            m: InstrumentRecord = it.message
            rows.setdefault(m.name, {"name": m.name, "camera": m.camera})
            it.applied()
        _insert(self.conn, s.instrument, list(rows.values()), ["name"])
        self.instruments.update(rows)
        wanted = {it.message.instrument for k in ("detector", "exposure") for it in self.by_kind[k]}
        wanted |= {it.message.data_id["instrument"] for it in self.by_kind["dataset"]}
        wanted -= self.instruments
        if wanted:
            self.instruments.update(
                r.name for r in _select_in(self.conn, [s.instrument.c.name], s.instrument.c.name, wanted)
            )

    def _dimension(self, items: list[_Item], table: sa.Table, known: set[tuple[str, int]], what: str) -> None:
        rows: dict[tuple[str, int], dict[str, Any]] = {}
        for it in sorted(items, key=lambda it: (it.message.instrument, it.message.id)):
            m: DetectorRecord | ExposureRecord = it.message
            if m.instrument not in self.instruments:
                it.reject(f"unknown instrument {m.instrument!r} in {what} record {m.id}")
                continue
            row = m.model_dump(exclude={"kind", "message_id", "execution_id"})
            rows.setdefault((m.instrument, m.id), row)
            it.applied()
        _insert(self.conn, table, list(rows.values()), ["instrument", "id"])
        known.update(rows)

    def _existing_pairs(self, table: sa.Table, pairs: set[tuple[str, int]]) -> set[tuple[str, int]]:
        pairs = pairs - (self.detectors if table is s.detector else self.exposures)
        if not pairs:
            return set()
        key = sa.tuple_(table.c.instrument, table.c.id)
        return {
            (r.instrument, r.id) for r in _select_in(self.conn, [table.c.instrument, table.c.id], key, pairs)
        }

    # datasets and provenance

    def _collection_types(self, names: Iterable[str]) -> dict[str, str]:
        rows = _select_in(self.conn, [s.collection.c.name, s.collection.c.type], s.collection.c.name, names)
        return {r.name: r.type for r in rows}

    def _datasets(self) -> None:
        items = sorted(self.by_kind["dataset"], key=lambda it: it.message.id.int)
        if not items:
            return
        conn = self.conn
        primaries: dict[uuid.UUID, _Item] = {}
        followers: dict[uuid.UUID, list[_Item]] = defaultdict(list)
        for it in items:
            m: DatasetMessage = it.message
            first = primaries.get(m.id)
            if first is None:
                primaries[m.id] = it
            elif (
                _same_content(first.message, m)
                and first.message.inputs == m.inputs
                and first.message.replace == m.replace
            ):
                followers[m.id].append(it)  # a duplicate delivery in the same batch
            else:
                it.reject(f"dataset {m.id} appears twice in the batch with different content")

        # Static checks: instrument, collection type, dimensions, existing content.
        run_types = self._collection_types({it.message.run for it in primaries.values()})
        existing_dims = {
            "detector": self._existing_pairs(
                s.detector,
                {
                    (it.message.data_id["instrument"], it.message.data_id["detector"])
                    for it in primaries.values()
                },
            ),
            "exposure": self._existing_pairs(
                s.exposure,
                {
                    (it.message.data_id["instrument"], it.message.data_id["exposure"])
                    for it in primaries.values()
                    if "exposure" in it.message.data_id
                },
            ),
        }
        wanted_ids = set(primaries) | {i.dataset_id for it in primaries.values() for i in it.message.inputs}
        d = s.dataset.c
        existing = {r.id: r for r in _select_in(conn, [d.id, d.uri, d.size, d.sha256], d.id, wanted_ids)}

        candidates: dict[uuid.UUID, _Item] = {}
        for ds_id, it in primaries.items():
            m = it.message
            inst = m.data_id["instrument"]
            if inst not in self.instruments:
                it.reject(f"unknown instrument {inst!r} in dataset {ds_id}")
                continue
            run_type = run_types.get(m.run)
            if run_type is not None and run_type != "RUN":
                it.reject(
                    f"collection {m.run!r} is a {run_type} collection, datasets go into RUN collections"
                )
                continue
            row = existing.get(ds_id)
            if row is not None and not m.replace and not _same_content(row, m):
                it.reject(
                    f"dataset {ds_id} ({m.dataset_type} {m.data_id_json} in {m.run}) already exists "
                    f"with different uri/size/checksum; send it with replace=true to overwrite"
                )
                continue
            det = (inst, m.data_id["detector"])
            if det not in self.detectors and det not in existing_dims["detector"]:
                it.retry(f"detector {det[1]} of {inst} is not registered")
                continue
            if "exposure" in m.data_id:
                exp = (inst, m.data_id["exposure"])
                if exp not in self.exposures and exp not in existing_dims["exposure"]:
                    it.retry(f"exposure {exp[1]} of {inst} is not registered")
                    continue
            candidates[ds_id] = it

        # Inputs must exist already or be accepted in this batch (iterate to a fixed point).
        changed = True
        while changed:
            changed = False
            for ds_id, it in list(candidates.items()):
                missing = [
                    str(i.dataset_id)
                    for i in it.message.inputs
                    if i.dataset_id not in existing and i.dataset_id not in candidates
                ]
                if missing:
                    it.retry(f"input dataset(s) {', '.join(missing)} not registered")
                    del candidates[ds_id]
                    changed = True

        if not candidates:
            self._follow(primaries, followers)
            return
        new_runs = sorted({it.message.run for it in candidates.values()} - set(run_types))
        _insert(conn, s.collection, [{"name": r, "type": "RUN", "doc": ""} for r in new_runs], ["name"])
        if any(self._collection_types(new_runs).get(r) != "RUN" for r in new_runs):
            raise RegistryError("a new RUN collection was created concurrently with another type; retry")

        plain, replace, prov = [], [], []
        replace_ids = []
        for ds_id in sorted(candidates, key=lambda i: i.int):
            it = candidates[ds_id]
            m = it.message
            row = _dataset_row(m, self.now)
            self.datasets[ds_id] = row
            if m.replace:
                replace.append(row)
                replace_ids.append(ds_id)
            elif ds_id not in existing:
                plain.append(row)
            prov.extend(
                {"output_id": ds_id, "input_id": i.dataset_id, "role": i.role}
                for i in sorted(m.inputs, key=lambda i: i.dataset_id.int)
            )
            it.applied()
        self.write(s.dataset, plain, ["id"])
        self.write(s.dataset, replace, ["id"], update=["uri", "size", "sha256", "created"])
        if replace_ids and self.sender is not None:
            self.sender.send(*copy_pg.delete_statement(s.dataset_provenance.c.output_id, replace_ids))
        else:
            for chunk in _chunks(replace_ids):
                self.conn.execute(
                    sa.delete(s.dataset_provenance).where(s.dataset_provenance.c.output_id.in_(chunk))
                )
        self.write(s.dataset_provenance, prov, ["output_id", "input_id"])
        self._follow(primaries, followers)

    @staticmethod
    def _follow(primaries: dict[uuid.UUID, _Item], followers: dict[uuid.UUID, list[_Item]]) -> None:
        for ds_id, items in followers.items():
            p = primaries[ds_id]
            for it in items:
                it.status, it.reason, it.error = p.status, p.reason, p.error

    # certification

    def _certify(self) -> None:
        items = sorted(
            self.by_kind["certify"],
            key=lambda it: (
                it.message.collection,
                str(it.message.dataset_id),
                _span(it.message.begin, it.message.end),
            ),
        )
        if not items:
            return
        conn = self.conn
        d = s.dataset.c
        cols = [d.id, d.dataset_type, d.run, d.data_id, d.instrument, d.detector, d.physical_filter]
        info: dict[uuid.UUID, dict[str, Any]] = {
            r.id: dict(r._mapping)
            for r in _select_in(conn, cols, d.id, {it.message.dataset_id for it in items})
        }
        info.update({k: v for k, v in self.datasets.items() if k not in info})
        ctypes = self._collection_types({it.message.collection for it in items})
        ready: list[_Item] = []
        for it in items:
            m: CertifyMessage = it.message
            ds = info.get(m.dataset_id)
            if ds is None:
                it.retry(f"dataset {m.dataset_id} to certify is not registered")
                continue
            if ds["dataset_type"] not in CALIBRATION_TYPES:
                it.reject(
                    f"dataset {m.dataset_id} is a {ds['dataset_type']}; only "
                    f"{', '.join(sorted(CALIBRATION_TYPES))} can be certified"
                )
                continue
            ctype = ctypes.get(m.collection)
            if ctype is not None and ctype != "CALIBRATION":
                it.reject(f"collection {m.collection!r} is a {ctype} collection, not CALIBRATION")
                continue
            ready.append(it)
        if not ready:
            return
        names = sorted({it.message.collection for it in ready})
        _insert(
            conn,
            s.collection,
            [{"name": n, "type": "CALIBRATION", "doc": ""} for n in names if n not in ctypes],
            ["name"],
        )
        for name in names:  # sorted: two writers never wait on each other's locks in opposite order
            lock(conn, f"isrflow-certify:{name}")
        if any(t != "CALIBRATION" for t in self._collection_types(names).values()):
            raise RegistryError("a collection was created concurrently with another type; retry")
        self.phase("certify_locked")

        # Re-read existing ranges now that the lock is held.
        v = s.calib_validity.c
        keys = {
            (
                it.message.collection,
                info[it.message.dataset_id]["dataset_type"],
                info[it.message.dataset_id]["data_id"],
            )
            for it in ready
        }
        ranges: dict[tuple[str, str, str], list[tuple[int, int, uuid.UUID]]] = defaultdict(list)
        for r in _select_in(
            conn,
            [v.collection, v.dataset_type, v.calib_key, v.begin, v.end, v.dataset_id],
            sa.tuple_(v.collection, v.dataset_type, v.calib_key),
            keys,
        ):
            ranges[(r.collection, r.dataset_type, r.calib_key)].append(
                (s.to_micros(r.begin), s.to_micros(r.end), r.dataset_id)
            )
        rows = []
        for it in ready:
            m = it.message
            ds = info[m.dataset_id]
            key = (m.collection, ds["dataset_type"], ds["data_id"])
            b, e = _span(m.begin, m.end)
            if (b, e, m.dataset_id) in ranges[key]:
                it.applied()  # already certified exactly so: a duplicate
                continue
            clash = next(((b2, e2, other) for b2, e2, other in ranges[key] if b < e2 and b2 < e), None)
            if clash is not None:
                it.reject(
                    f"validity {_fmt_span(b, e)} of {ds['dataset_type']} {ds['data_id']} ({m.dataset_id}) "
                    f"overlaps {_fmt_span(clash[0], clash[1])} of dataset {clash[2]} in {m.collection!r}",
                    CertificationConflictError,
                )
                continue
            ranges[key].append((b, e, m.dataset_id))
            rows.append(
                {
                    "collection": m.collection,
                    "dataset_id": m.dataset_id,
                    "dataset_type": ds["dataset_type"],
                    "calib_key": ds["data_id"],
                    "instrument": ds["instrument"],
                    "detector": ds["detector"],
                    "physical_filter": ds["physical_filter"],
                    "begin": b,
                    "end": e,
                    "certified": self.now,
                }
            )
            it.applied()
        self.phase("certify_checked")
        if rows:
            conn.execute(sa.insert(s.calib_validity), rows)

    # processing records and execution markers

    def _records(self) -> None:
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for it in self.by_kind["processing_record"]:
            m: ProcessingRecordMessage = it.message
            key = (m.execution_id, m.instrument, m.exposure, m.detector, m.step)
            row = m.model_dump(exclude={"kind", "message_id"})
            row["recorded"] = m.recorded or self.now
            old = rows.get(key)
            if old is None or row["retries"] >= old["retries"]:
                rows[key] = row
            it.applied()
        ordered = [rows[k] for k in sorted(rows)]
        self.write(
            s.processing_record,
            ordered,
            ["execution_id", "instrument", "exposure", "detector", "step"],
            update=["status", "duration_s", "peak_memory_mb", "retries", "error", "recorded"],
        )

    def _markers(self) -> None:
        rows: dict[str, dict[str, Any]] = {}
        for it in self.by_kind["execution_complete"]:
            m: ExecutionCompleteMessage = it.message
            rows[m.execution_id] = {
                "execution_id": m.execution_id,
                "expected": m.expected,
                "completed": self.now,
            }
            it.applied()
        self.write(
            s.execution,
            [rows[k] for k in sorted(rows)],
            ["execution_id"],
            update=["expected", "completed"],
        )


def _same_content(row: Any, m: DatasetMessage) -> bool:
    """Same file: equal URI, and size/checksum equal wherever both sides know them."""
    if row.uri != m.uri:
        return False
    if row.size is not None and m.size is not None and row.size != m.size:
        return False
    return not (row.sha256 is not None and m.sha256 is not None and row.sha256 != m.sha256)


def _dataset_row(m: DatasetMessage, now: datetime) -> dict[str, Any]:
    did = m.data_id
    return {
        "id": m.id,
        "dataset_type": m.dataset_type,
        "run": m.run,
        "instrument": did["instrument"],
        "detector": did["detector"],
        "exposure": did.get("exposure"),
        "physical_filter": did.get("physical_filter"),
        "data_id": data_id_json(m),
        "uri": m.uri,
        "size": m.size,
        "sha256": m.sha256,
        "created": m.created or now,
    }


def _bookkeeping(batch: _Batch, items: list[_Item], now: datetime, record_rejects: bool) -> None:
    counted: dict[tuple[str, str], dict[str, Any]] = {}
    for it in items:
        m = it.message
        if m is None or it.status not in ("applied", "rejected") or m.kind == "execution_complete":
            continue
        if m.execution_id is not None and (ids_storable(m) or storable_ids(m)):
            counted.setdefault(
                (m.execution_id, m.message_id),
                {
                    "execution_id": m.execution_id,
                    "message_id": m.message_id,
                    "status": it.status,
                    "applied": now,
                },
            )
    batch.write(s.applied_message, [counted[k] for k in sorted(counted)], ["execution_id", "message_id"])
    if record_rejects:
        rows = []
        for it in items:
            if it.status != "rejected":
                continue
            m = it.message
            rows.append(  # the poison itself may hold NULs or over-long ids: store them escaped and cut
                {
                    "item_id": storable_text(it.item_id, 128),
                    "message_id": storable_text(getattr(m, "message_id", None), 64),
                    "kind": storable_text(getattr(m, "kind", None), 32),
                    "execution_id": storable_text(getattr(m, "execution_id", None), 256),
                    "reason": storable_text(it.reason),
                    "body": storable_text(it.body),
                    "rejected": now,
                }
            )
        if rows:
            batch.conn.execute(sa.insert(s.rejected_message), rows)


class _TrialDone(Exception):
    """Raised at the end of a trial run to roll its transaction back."""


def _gives_up(it: _Item, give_up_after: int | None, min_age_s: float | None) -> bool:
    """Whether an item whose parent is missing is rejected rather than retried: delivered at
    least ``give_up_after`` times AND (when its age is known) first sent ``min_age_s`` seconds
    ago or more. A young orphan is never rejected: in a shuffled backlog its parent may still
    be queued behind it, however often the child was received."""
    if give_up_after is None or it.receive_count < give_up_after:
        return False
    return min_age_s is None or it.age_s is None or it.age_s >= min_age_s


def _run(
    registry: Any,
    items: list[_Item],
    *,
    strict: bool,
    give_up_after: int | None,
    on_phase: PhaseHook | None,
    trial: bool = False,
    give_up_min_age_s: float | None = None,
) -> BatchResult:
    """Apply the items in one transaction. ``trial``: do everything, then roll back."""
    now = datetime.now(UTC)
    for it in items:
        it.reset()
    with transaction(registry.engine, write=True) as conn:
        batch = _Batch(conn, items, now, on_phase)
        try:
            batch.run()
            for it in items:
                if it.status == "pending":  # every kind is handled above; this is a guard
                    raise RegistryError(f"internal: item {it.item_id} was not handled")
                if it.status == "retry" and _gives_up(it, give_up_after, give_up_min_age_s):
                    age = "" if it.age_s is None else f" over {it.age_s / 3600:.1f} h"
                    it.reject(
                        f"gave up after {it.receive_count} deliveries{age}: {it.reason}", MissingParentError
                    )
            if strict:
                bad = next((it for it in items if it.status != "applied"), None)
                if bad is not None:
                    raise bad.error(bad.reason)  # rolls the whole transaction back
            _bookkeeping(batch, items, now, record_rejects=not strict)
            batch.drain()  # every pipelined write done (its errors raised) before a trial ends or a commit
        except BaseException:
            batch.close()
            raise
        if trial:
            raise _TrialDone
        batch.phase("before_commit")
    result = BatchResult()
    for it in items:
        if it.status == "applied":
            result.applied.append(it.item_id)
        elif it.status == "rejected":
            result.rejected.append((it.item_id, it.reason))
        else:
            result.retry.append((it.item_id, it.reason))
    return result


def apply_batch(
    registry: Any,
    items: Sequence[BatchItem | tuple[str, Any]],
    *,
    give_up_after: int | None = None,
    on_phase: PhaseHook | None = None,
    give_up_min_age_s: float | None = None,
) -> BatchResult:
    """Apply one batch of registry messages in one transaction (see the module docstring).

    ``items``: BatchItem or (item_id, body) pairs; a body is JSON text/bytes, a dict or a message
    model. ``give_up_after``: reject (instead of retry) an item with a missing parent once SQS
    has delivered it this many times and (``give_up_min_age_s``, for items whose ``age_s`` is
    known) it is at least that many seconds old. ``on_phase(name, conn)`` is a test hook called at
    "dimensions", "datasets", "certify_locked", "certify_checked" and "before_commit".

    Raises RegistryUnavailableError (or another database error) when the batch could not be
    committed: then nothing of it was written.
    """
    with _gc_paused():
        return _apply_batch(registry, items, give_up_after, on_phase, give_up_min_age_s)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Automatic garbage collection off while a batch is applied (re-enabled after, if it was
    on). A batch allocates tens of thousands of objects, none of them in reference cycles that
    outlive it; the collector would otherwise scan the young ones dozens of times per batch."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _apply_batch(
    registry: Any,
    items: Sequence[BatchItem | tuple[str, Any]],
    give_up_after: int | None,
    on_phase: PhaseHook | None,
    give_up_min_age_s: float | None,
) -> BatchResult:
    raws = [i if isinstance(i, BatchItem) else BatchItem(*i) for i in items]
    parsed = [_to_item(i) for i in raws]
    for raw, it in zip(raws, parsed):
        it.age_s = raw.age_s
    while True:
        try:
            return _run(
                registry,
                parsed,
                strict=False,
                give_up_after=give_up_after,
                on_phase=on_phase,
                give_up_min_age_s=give_up_min_age_s,
            )
        except Exception as exc:
            if not is_poison_error(exc):
                raise
            found = _find_poison(registry, parsed, give_up_after)
            if found is None:
                raise  # the failure needs several items together: redeliver the batch as it is
            bad, error = found
            bad.reject_fixed(f"the database refused this {bad.message.kind} message: {_error_summary(error)}")


def is_poison_error(exc: BaseException) -> bool:
    """Whether a failed batch transaction may be caused by one item's values (a data error the
    database or its driver raised: out of range, NUL, too long, constraint), rather than by
    the database being unreachable or by the writer itself."""
    if isinstance(exc, RegistryError):
        return False
    if isinstance(exc, sa.exc.DBAPIError):
        return isinstance(exc, (sa.exc.DataError, sa.exc.IntegrityError)) and not exc.connection_invalidated
    if isinstance(exc, (sa.exc.StatementError, OverflowError, ValueError)):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite-only installations
        return False
    return isinstance(exc, (psycopg.DataError, psycopg.IntegrityError))


def _error_summary(exc: BaseException) -> str:
    """``Type: first line of the message`` of a database error, at most 500 characters."""
    inner = getattr(exc, "orig", None) or exc
    text = (str(inner).strip().splitlines() or [""])[0]
    return f"{type(inner).__name__}: {text}"[:500]


def _apply_order(it: _Item) -> tuple[int, int]:
    """Parents before children: by kind, and datasets without inputs before those with inputs."""
    m = it.message
    return (KIND_ORDER.index(m.kind), len(m.inputs) if m.kind == "dataset" else 0)


def _trial_error(registry: Any, items: list[_Item], give_up_after: int | None) -> BaseException | None:
    """The poison error a trial run of these items raises, or None if they would apply."""
    try:
        _run(registry, items, strict=False, give_up_after=give_up_after, on_phase=None, trial=True)
    except _TrialDone:
        return None
    except Exception as exc:
        if is_poison_error(exc):
            return exc
        raise
    raise RegistryError("internal: a trial run committed")  # pragma: no cover


def _find_poison(
    registry: Any, items: list[_Item], give_up_after: int | None
) -> tuple[_Item, BaseException] | None:
    """The item a database error comes from: binary search for the shortest failing prefix of
    the batch in parent-to-child order (trial transactions, rolled back; about log2(n) of
    them). None if no single item explains the failure."""
    order = sorted((it for it in items if not it.fixed and it.message is not None), key=_apply_order)
    lo, hi = 0, len(order)  # prefix of length lo applies; of length hi fails (the whole batch did)
    error: BaseException | None = None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        e = _trial_error(registry, order[:mid], give_up_after)
        if e is None:
            lo = mid
        else:
            hi, error = mid, e
    if hi == 0:
        return None
    if error is None:  # the whole candidate set was never tried on its own: confirm it fails
        error = _trial_error(registry, order[:hi], give_up_after)
        if error is None:
            return None
    alone = _trial_error(registry, [order[hi - 1]], give_up_after)
    return order[hi - 1], alone or error


def apply_messages(
    registry: Any, messages: Iterable[BaseModel], *, on_phase: PhaseHook | None = None
) -> BatchResult:
    """Apply messages synchronously, all or nothing (the CLI's direct writes).

    Any message that would be rejected or retried raises its error (RejectedMessageError,
    CertificationConflictError, MissingParentError) and nothing is written; no rejects row.
    """
    parsed = [_to_item(BatchItem(str(i), m)) for i, m in enumerate(messages)]
    bad = next((it for it in parsed if it.status == "rejected"), None)
    if bad is not None:
        raise RejectedMessageError(bad.reason)
    return _run(registry, parsed, strict=True, give_up_after=None, on_phase=on_phase)
