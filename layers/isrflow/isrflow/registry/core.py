"""The :class:`Registry`: one database (SQLite file or PostgreSQL) plus a datastore root.

Reads go straight to the database. Writes go through registry messages
(:mod:`isrflow.model.messages`): synchronously with :meth:`Registry.apply` (CLI ``ingest`` and
``calib certify``), or in batches with :meth:`Registry.apply_batch` (the SQS writer).
All times are timezone-aware UTC.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import URL, Engine

from isrflow.io.datastore import dataset_uri, normalize_root
from isrflow.model.datasets import (
    AppliedStatus,
    CertifiedRef,
    DatasetRef,
    QuantumPlan,
    RejectedRecord,
    Validity,
)
from isrflow.model.errors import CollectionError, RegistryError, WaitTimeoutError
from isrflow.model.ids import COLLECTION_TYPES, check_collection_name, normalize_data_id
from isrflow.model.messages import CertifyMessage
from isrflow.registry import schema as s
from isrflow.registry.columns import query_columns
from isrflow.registry.engine import ConnectCredentials, check_schema, create_registry_engine, transaction
from isrflow.registry.migrate import upgrade
from isrflow.registry.quanta import find_quanta
from isrflow.registry.query import compile_where
from isrflow.registry.search_path import resolve_search_path
from isrflow.registry.writer import BatchItem, BatchResult, PhaseHook, apply_batch, apply_messages


def _ref(row: Any) -> DatasetRef:
    return DatasetRef(
        id=row.id,
        dataset_type=row.dataset_type,
        run=row.run,
        data_id=normalize_data_id(row.dataset_type, json.loads(row.data_id)),
        uri=row.uri,
        size=row.size,
        sha256=row.sha256,
    )


def _bound(value: datetime, sentinel: int) -> datetime | None:
    return None if s.to_micros(value) == sentinel else value


class Registry:
    """A registry database and the datastore root its dataset URIs are made under."""

    def __init__(self, engine: Engine, datastore_root: str | Path | None = None) -> None:
        self.engine = engine
        self.datastore_root = normalize_root(datastore_root) if datastore_root is not None else None

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str | URL,
        datastore_root: str | Path | None = None,
        *,
        schema: str | None = None,
        create: bool = False,
        pool_size: int = 5,
        credentials: ConnectCredentials | None = None,
    ) -> Registry:
        """Open a registry, upgrading its schema to this code's revision (Alembic) if needed.

        ``create=True`` also creates the schema in an empty database; otherwise an empty
        database is a RegistryError. ``schema`` selects a PostgreSQL schema (search_path).
        ``credentials`` supply each new connection's user name and password (a rotating secret).
        """
        engine = create_registry_engine(url, schema=schema, pool_size=pool_size, credentials=credentials)
        try:
            check_schema(engine, schema, create=create)  # a missing PostgreSQL schema: one typed error
            upgrade(engine, create=create)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, datastore_root)

    @classmethod
    def create(
        cls, url: str | URL, datastore_root: str | Path | None = None, *, schema: str | None = None
    ) -> Registry:
        """Create (or open and upgrade) a registry."""
        return cls.open(url, datastore_root, schema=schema, create=True)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writes ------------------------------------------------------------------------------

    def apply(self, messages: Iterable[BaseModel], *, on_phase: PhaseHook | None = None) -> BatchResult:
        """Apply messages synchronously and atomically; raise (and write nothing) if any fails."""
        return apply_messages(self, messages, on_phase=on_phase)

    def apply_batch(self, items: Sequence[BatchItem | tuple[str, Any]], **kwargs: Any) -> BatchResult:
        """Apply an SQS batch (see :func:`isrflow.registry.writer.apply_batch`)."""
        return apply_batch(self, items, **kwargs)

    def certify(
        self, dataset_ids: Iterable[uuid.UUID], collection: str, begin: datetime | None, end: datetime | None
    ) -> int:
        """Certify datasets into a CALIBRATION collection for ``[begin, end)`` UTC; returns the count.

        CertificationConflictError (nothing written) if any range would overlap an existing one.
        """
        msgs = [
            CertifyMessage(dataset_id=i, collection=collection, begin=begin, end=end) for i in dataset_ids
        ]
        self.apply(msgs)
        return len(msgs)

    # --- collections -------------------------------------------------------------------------

    def register_collection(self, name: str, type: str, doc: str = "") -> bool:
        """Create a RUN or CALIBRATION collection; False if it exists with that type already."""
        check_collection_name(name)
        if type not in ("RUN", "CALIBRATION"):
            raise CollectionError(
                f"register_collection makes RUN or CALIBRATION collections, not {type!r} "
                "(use set_chain for CHAINED)"
            )
        with transaction(self.engine, write=True) as conn:
            existing = conn.execute(
                sa.select(s.collection.c.type).where(s.collection.c.name == name)
            ).scalar()
            if existing is not None:
                if existing != type:
                    raise CollectionError(
                        f"collection {name!r} exists as a {existing} collection, not {type}"
                    )
                return False
            conn.execute(sa.insert(s.collection), {"name": name, "type": type, "doc": doc})
            return True

    def collection_type(self, name: str) -> str | None:
        """RUN, CALIBRATION or CHAINED; None if there is no such collection."""
        with transaction(self.engine, write=False) as conn:
            return conn.execute(sa.select(s.collection.c.type).where(s.collection.c.name == name)).scalar()

    def collections(self) -> list[tuple[str, str]]:
        """All collections as (name, type), sorted by name."""
        with transaction(self.engine, write=False) as conn:
            return [
                (r.name, r.type)
                for r in conn.execute(
                    sa.select(s.collection.c.name, s.collection.c.type).order_by(s.collection.c.name)
                )
            ]

    def set_chain(self, name: str, children: Sequence[str], doc: str = "") -> None:
        """Create or redefine a CHAINED collection as the ordered search path ``children``."""
        check_collection_name(name)
        if len(set(children)) != len(children):
            raise CollectionError(f"chain {name!r} lists a collection twice")
        with transaction(self.engine, write=True) as conn:
            c = s.collection.c
            types = {
                r.name: r.type
                for r in conn.execute(sa.select(c.name, c.type).where(c.name.in_([name, *children])))
            }
            if types.get(name, "CHAINED") != "CHAINED":
                raise CollectionError(
                    f"collection {name!r} exists as a {types[name]} collection, not CHAINED"
                )
            missing = [ch for ch in children if ch not in types]
            if missing:
                raise CollectionError(f"chain {name!r}: unknown collection(s) {', '.join(missing)}")
            if name not in types:
                conn.execute(sa.insert(s.collection), {"name": name, "type": "CHAINED", "doc": doc})
            conn.execute(sa.delete(s.collection_chain).where(s.collection_chain.c.parent == name))
            if children:
                conn.execute(
                    sa.insert(s.collection_chain),
                    [{"parent": name, "position": i, "child": ch} for i, ch in enumerate(children)],
                )
            resolve_search_path(conn, [name])  # refuses cycles (and rolls back)

    def get_chain(self, name: str) -> list[str]:
        with transaction(self.engine, write=False) as conn:
            cc = s.collection_chain.c
            return list(
                conn.execute(sa.select(cc.child).where(cc.parent == name).order_by(cc.position)).scalars()
            )

    def resolve_collections(self, names: Sequence[str] | str) -> list[tuple[str, str]]:
        """Flatten a search path: CHAINED collections expand in order, first occurrence wins.

        Returns (name, type) pairs of RUN and CALIBRATION collections. Unknown names and cycles
        are CollectionError.
        """
        with transaction(self.engine, write=False) as conn:
            return resolve_search_path(conn, [names] if isinstance(names, str) else list(names))

    # --- datasets ----------------------------------------------------------------------------

    def dataset_uri(self, dataset_type: str, run: str, data_id: dict[str, Any]) -> str:
        """The URI a dataset gets in this registry's datastore (see :mod:`.datastore`)."""
        if self.datastore_root is None:
            raise RegistryError("this registry has no datastore root")
        return dataset_uri(self.datastore_root, run, dataset_type, normalize_data_id(dataset_type, data_id))

    def get_dataset(self, dataset_id: uuid.UUID | str) -> DatasetRef | None:
        with transaction(self.engine, write=False) as conn:
            row = conn.execute(
                sa.select(s.dataset).where(s.dataset.c.id == uuid.UUID(str(dataset_id)))
            ).first()
        return None if row is None else _ref(row)

    def query_datasets(
        self,
        dataset_type: str | None = None,
        collections: Sequence[str] | str | None = None,
        where: str | None = None,
    ) -> list[DatasetRef]:
        """Datasets of a type in a search path of collections, filtered by a ``--where`` query.

        RUN collections give their datasets; CALIBRATION collections give their certified
        datasets as :class:`CertifiedRef` (one per validity range). ``collections=None`` searches
        every RUN. Results are ordered by collection position, type, instrument, exposure,
        detector.
        """
        columns, join = query_columns()
        cond = compile_where(where, columns)
        d = s.dataset.c
        with transaction(self.engine, write=False) as conn:
            if collections is None:
                resolved = [
                    (r.name, "RUN")
                    for r in conn.execute(
                        sa.select(s.collection.c.name)
                        .where(s.collection.c.type == "RUN")
                        .order_by(s.collection.c.name)
                    )
                ]
            else:
                resolved = resolve_search_path(
                    conn, [collections] if isinstance(collections, str) else list(collections)
                )
            out: list[DatasetRef] = []
            order = (d.dataset_type, d.instrument, d.exposure, d.detector, d.physical_filter)
            runs = [n for n, t in resolved if t == "RUN"]
            calibs = [n for n, t in resolved if t == "CALIBRATION"]
            by_run: dict[str, list[DatasetRef]] = {}
            if runs:
                stmt = sa.select(*s.dataset.c).select_from(join).where(d.run.in_(runs))
                if dataset_type:
                    stmt = stmt.where(d.dataset_type == dataset_type)
                if cond is not None:
                    stmt = stmt.where(cond)
                for row in conn.execute(stmt.order_by(*order)):
                    by_run.setdefault(row.run, []).append(_ref(row))
            by_calib: dict[str, list[DatasetRef]] = {}
            if calibs:
                v = s.calib_validity.c
                stmt = (
                    sa.select(*s.dataset.c, v.collection, v.begin.label("v_begin"), v.end.label("v_end"))
                    .select_from(join.join(s.calib_validity, v.dataset_id == d.id))
                    .where(v.collection.in_(calibs))
                )
                if dataset_type:
                    stmt = stmt.where(d.dataset_type == dataset_type)
                if cond is not None:
                    stmt = stmt.where(cond)
                for row in conn.execute(stmt.order_by(*order, v.begin)):
                    ref = _ref(row)
                    by_calib.setdefault(row.collection, []).append(
                        CertifiedRef(
                            **ref.model_dump(),
                            validity=Validity(
                                collection=row.collection,
                                begin=_bound(row.v_begin, s.TIME_MIN),
                                end=_bound(row.v_end, s.TIME_MAX),
                            ),
                        )
                    )
            for name, ctype in resolved:
                out.extend((by_run if ctype == "RUN" else by_calib).get(name, []))
            return out

    def provenance(self, dataset_id: uuid.UUID | str) -> list[tuple[uuid.UUID, str]]:
        """The inputs of a dataset as (input dataset id, role), sorted by role."""
        p = s.dataset_provenance.c
        with transaction(self.engine, write=False) as conn:
            return [
                (r.input_id, r.role)
                for r in conn.execute(
                    sa.select(p.input_id, p.role)
                    .where(p.output_id == uuid.UUID(str(dataset_id)))
                    .order_by(p.role)
                )
            ]

    def processing_records(self, execution_id: str) -> list[dict[str, Any]]:
        """Processing records of an execution (durations s, memory MiB, times UTC)."""
        r = s.processing_record.c
        with transaction(self.engine, write=False) as conn:
            return [
                dict(row._mapping)
                for row in conn.execute(
                    sa.select(s.processing_record)
                    .where(r.execution_id == execution_id)
                    .order_by(r.instrument, r.exposure, r.detector, r.step)
                )
            ]

    def rejects(self, execution_id: str | None = None) -> list[RejectedRecord]:
        """Rows of the rejects table (all, or one execution's), oldest first."""
        rm = s.rejected_message.c
        stmt = sa.select(s.rejected_message).order_by(rm.id)
        if execution_id is not None:
            stmt = stmt.where(rm.execution_id == execution_id)
        with transaction(self.engine, write=False) as conn:
            return [RejectedRecord(**row._mapping) for row in conn.execute(stmt)]

    # --- executions --------------------------------------------------------------------------

    def applied_status(self, execution_id: str) -> AppliedStatus:
        """Applied/rejected message counts of an execution, and the count its marker announced."""
        a = s.applied_message.c
        with transaction(self.engine, write=False) as conn:
            counts: dict[str, int] = dict(
                conn.execute(
                    sa.select(a.status, sa.func.count())
                    .where(a.execution_id == execution_id)
                    .group_by(a.status)
                ).all()
            )
            expected = conn.execute(
                sa.select(s.execution.c.expected).where(s.execution.c.execution_id == execution_id)
            ).scalar()
        return AppliedStatus(
            execution_id=execution_id,
            applied=counts.get("applied", 0),
            rejected=counts.get("rejected", 0),
            expected=expected,
        )

    def wait_applied(
        self,
        execution_id: str,
        expected: int | None = None,
        *,
        timeout: float = 300.0,
        poll_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> AppliedStatus:
        """Wait until the writer has processed ``expected`` messages of an execution.

        Processed = applied + rejected (a rejected message is never redelivered, so waiting for
        it would never end; check ``status.rejected``). With ``expected=None`` the count comes
        from the execution's ExecutionCompleteMessage, which must have been applied too.
        ``timeout`` and ``poll_interval`` are seconds of ``clock`` (monotonic by default);
        ``clock`` and ``sleep`` are injectable for tests. Raises WaitTimeoutError on timeout.
        """
        deadline = clock() + timeout
        while True:
            status = self.applied_status(execution_id)
            target = expected if expected is not None else status.expected
            if target is not None and status.processed >= target:
                return status.model_copy(update={"expected": target})
            now = clock()
            if now >= deadline:
                want = "its completion marker" if target is None else f"{target} messages"
                raise WaitTimeoutError(
                    f"execution {execution_id}: after {timeout:g} s the registry writer has processed "
                    f"{status.processed} messages ({status.applied} applied, {status.rejected} rejected), "
                    f"waiting for {want}"
                )
            sleep(min(poll_interval, max(deadline - now, 0.0)))

    # --- planning ----------------------------------------------------------------------------

    def find_quanta(
        self,
        where: str | None,
        input_collections: Sequence[str] | str,
        calib_collection: str,
        output_run: str,
        **kwargs: Any,
    ) -> QuantumPlan:
        """Plan ISR quanta; see :func:`isrflow.registry.quanta.find_quanta`."""
        return find_quanta(self, where, input_collections, calib_collection, output_run, **kwargs)


__all__ = ["COLLECTION_TYPES", "Registry"]
