"""Planning: which detectors does a query select, with which inputs and calibrations.

:func:`find_quanta` answers it for one output dataset type (``postISRCCD`` by default):

- raws: datasets of ``dataset_type_in`` in the input collections (a search path; CHAINED
  collections expand in order, the first collection holding a data id wins), joined with
  their exposure and detector records and filtered by the ``--where`` query;
- calibrations: for each needed type, the dataset certified in the calibration collection
  (or the first member of a CHAINED calibration collection that has a match) whose validity
  range ``[begin, end)`` contains the exposure's begin time (UTC). Flats must also match the
  exposure's physical filter. None found -> the quantum lists the type as missing and the
  plan gets a "missing calibration" problem; two found -> CalibrationLookupError;
- the output: its dataset id and URI in ``output_run``. If the run already holds some of the
  outputs: mode ``fail`` raises OutputExistsError naming the first conflicts,
  ``skip-existing`` drops those quanta (listed in ``skipped_existing``), ``replace`` keeps them
  with ``replace=True`` so the writer updates their rows.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from isrflow.io.datastore import dataset_uri, normalize_root
from isrflow.model.datasets import DatasetRef, Quantum, QuantumPlan, QuantumProblem
from isrflow.model.errors import CalibrationLookupError, CollectionError, OutputExistsError, RegistryError
from isrflow.model.ids import (
    CALIBRATION_TYPES,
    DATASET_TYPES,
    check_collection_name,
    dataset_id,
    normalize_data_id,
)
from isrflow.registry import schema as s
from isrflow.registry.columns import query_columns
from isrflow.registry.engine import transaction
from isrflow.registry.query import compile_where
from isrflow.registry.search_path import resolve_search_path

OutputMode = Literal["fail", "skip-existing", "replace"]
OUTPUT_MODES = ("fail", "skip-existing", "replace")

#: How many conflicting outputs an OutputExistsError names.
MAX_CONFLICTS_NAMED = 5

#: Largest IN list of output ids sent in one statement.
_CHUNK = 5000

#: (instrument, exposure, detector) of a raw / quantum.
RawKey = tuple[str, int, int]
#: (calibration collection, calibration type, instrument, detector, physical filter or None).
CalibKey = tuple[str, str, str, int, str | None]


class PlanningRegistry(Protocol):
    """What planning needs of a :class:`.core.Registry`: its engine and datastore root."""

    engine: Engine
    datastore_root: str | None


@dataclass(frozen=True)
class _Request:
    """The checked arguments of one :func:`find_quanta` call (``root``: normalized URI)."""

    input_collections: list[str]
    calib_collection: str | None
    output_run: str
    dataset_type_in: str
    dataset_type_out: str
    needed_calibs: tuple[str, ...]
    mode: OutputMode
    root: str


@dataclass
class _Draft:
    """Quanta and their problems before existing outputs are dealt with."""

    quanta: list[Quantum]
    problems: list[QuantumProblem]


def _ref_from_row(row: Any, prefix: str = "") -> DatasetRef:
    def g(k: str) -> Any:
        return getattr(row, prefix + k)

    return DatasetRef(
        id=g("id"),
        dataset_type=g("dataset_type"),
        run=g("run"),
        data_id=normalize_data_id(g("dataset_type"), json.loads(g("data_id"))),
        uri=g("uri"),
        size=g("size"),
        sha256=g("sha256"),
    )


def find_quanta(
    registry: PlanningRegistry,
    where: str | None,
    input_collections: Sequence[str] | str,
    calib_collection: str | None,
    output_run: str,
    *,
    dataset_type_in: str = "raw",
    dataset_type_out: str = "postISRCCD",
    needed_calibs: Sequence[str] = ("bias", "dark", "flat", "defects"),
    mode: OutputMode = "fail",
    datastore_root: str | Path | None = None,
) -> QuantumPlan:
    """Plan one quantum per selected (exposure, detector); see the module docstring.

    Parameters
    ----------
    registry : Registry
    where : ``--where`` data query over the raws (None or '' = all).
    input_collections : collection name or search path holding the raws.
    calib_collection : CALIBRATION (or CHAINED) collection searched for calibrations; may be
        None only when ``needed_calibs`` is empty.
    output_run : RUN collection the outputs go into.
    dataset_type_in / dataset_type_out : input and output dataset types (exposure-level).
    needed_calibs : calibration types to look up (subset of bias, dark, flat, defects).
    mode : ``fail`` | ``skip-existing`` | ``replace`` for outputs that already exist.
    datastore_root : root of the output URIs; default the registry's datastore root.

    Raises OutputExistsError, CalibrationLookupError, CollectionError, QueryError, RegistryError.
    """
    _check_types(mode, dataset_type_in, dataset_type_out, needed_calibs)
    check_collection_name(output_run)
    root = datastore_root if datastore_root is not None else registry.datastore_root
    if root is None:
        raise RegistryError("find_quanta needs a datastore root for the output URIs")
    req = _Request(
        input_collections=[input_collections]
        if isinstance(input_collections, str)
        else list(input_collections),
        calib_collection=calib_collection,
        output_run=output_run,
        dataset_type_in=dataset_type_in,
        dataset_type_out=dataset_type_out,
        needed_calibs=tuple(needed_calibs),
        mode=mode,
        root=normalize_root(root),
    )
    columns, join = query_columns()
    cond = compile_where(where, columns)
    with transaction(registry.engine, write=False) as conn:
        runs, calibs = _search_collections(conn, req)
        raws = _collect_raws(conn, req, runs, join, cond)
        groups = _certified_calibs(conn, req, calibs, raws)
        draft = _build_quanta(req, raws, groups, calibs)
        existing = _existing_outputs(conn, draft.quanta)
    return _resolve_existing(req, draft, existing)


def _check_types(
    mode: str, dataset_type_in: str, dataset_type_out: str, needed_calibs: Sequence[str]
) -> None:
    """The mode is known, both dataset types are exposure-level, the calibrations are calibration types."""
    if mode not in OUTPUT_MODES:
        raise RegistryError(f"unknown output mode {mode!r}; use one of {', '.join(OUTPUT_MODES)}")
    for t in (dataset_type_in, dataset_type_out):
        if DATASET_TYPES.get(t) != ("instrument", "exposure", "detector"):
            raise RegistryError(f"{t!r} is not an exposure-level dataset type")
    bad = [c for c in needed_calibs if c not in CALIBRATION_TYPES]
    if bad:
        raise RegistryError(f"not calibration types: {', '.join(bad)}")


def _search_collections(conn: Connection, req: _Request) -> tuple[list[str], list[str]]:
    """(RUN collections holding the raws, CALIBRATION collections), each in search order.

    The output collection, if it exists, must be a RUN.
    """
    out_type = conn.execute(
        sa.select(s.collection.c.type).where(s.collection.c.name == req.output_run)
    ).scalar()
    if out_type is not None and out_type != "RUN":
        raise CollectionError(f"output collection {req.output_run!r} is a {out_type} collection, not a RUN")
    runs = [n for n, t in resolve_search_path(conn, req.input_collections) if t == "RUN"]
    if not req.needed_calibs:
        return runs, []
    if not req.calib_collection:
        raise CollectionError("a calibration collection is needed to look up " + ", ".join(req.needed_calibs))
    calibs = [n for n, t in resolve_search_path(conn, [req.calib_collection]) if t == "CALIBRATION"]
    if not calibs:
        raise CollectionError(f"{req.calib_collection!r} holds no CALIBRATION collection")
    return runs, calibs


def _collect_raws(
    conn: Connection, req: _Request, runs: list[str], join: Any, cond: Any
) -> dict[RawKey, Any]:
    """The selected input datasets by (instrument, exposure, detector), with their exposure's
    begin (``exp_begin``, UTC) and filter (``exp_filter``) and their detector's name
    (``det_name``). ``join`` and ``cond``: the :func:`.columns.query_columns` join and the
    compiled ``--where`` condition (None = all). The first run in the search path wins for each
    data id; raws without an exposure record are left out (no begin time to look calibrations
    up by)."""
    if not runs:
        return {}
    d, e, det = s.dataset.c, s.exposure.c, s.detector.c
    stmt = (
        sa.select(
            *s.dataset.c,
            e.begin.label("exp_begin"),
            e.physical_filter.label("exp_filter"),
            det.name.label("det_name"),
        )
        .select_from(join)
        .where(d.run.in_(runs), d.dataset_type == req.dataset_type_in, d.exposure.is_not(None))
    )
    if cond is not None:
        stmt = stmt.where(cond)
    rank = {r: i for i, r in enumerate(runs)}
    raws: dict[RawKey, Any] = {}
    for row in conn.execute(stmt):
        key = (row.instrument, row.exposure, row.detector)
        if row.exp_begin is None:
            continue
        old = raws.get(key)
        if old is None or rank[row.run] < rank[old.run]:
            raws[key] = row
    return raws


def _certified_calibs(
    conn: Connection, req: _Request, calibs: list[str], raws: dict[RawKey, Any]
) -> dict[CalibKey, list[Any]]:
    """Certifications of the needed types for the raws' instruments and detectors, grouped by
    (collection, type, instrument, detector, filter); the filter is set for flats only. Rows
    carry the validity (``v_begin``, ``v_end``) and the dataset's columns prefixed ``ds_``."""
    groups: dict[CalibKey, list[Any]] = defaultdict(list)
    if not calibs or not raws:
        return groups
    v = s.calib_validity.c
    stmt = (
        sa.select(
            v.collection,
            v.begin.label("v_begin"),
            v.end.label("v_end"),
            v.physical_filter,
            *[c.label("ds_" + c.name) for c in s.dataset.c],
        )
        .select_from(s.calib_validity.join(s.dataset, s.dataset.c.id == v.dataset_id))
        .where(
            v.collection.in_(calibs),
            v.dataset_type.in_(list(req.needed_calibs)),
            v.instrument.in_(sorted({k[0] for k in raws})),
            v.detector.in_(sorted({k[2] for k in raws})),
        )
    )
    for row in conn.execute(stmt):
        pf = row.physical_filter if row.ds_dataset_type == "flat" else None
        groups[(row.collection, row.ds_dataset_type, row.ds_instrument, row.ds_detector, pf)].append(row)
    return groups


def _valid_calib(
    groups: dict[CalibKey, list[Any]], calibs: list[str], ctype: str, key: RawKey, raw: Any
) -> DatasetRef | None:
    """The calibration of type ``ctype`` valid at the raw's exposure begin: from the first
    calibration collection with one; None if none has. Two valid in one collection ->
    CalibrationLookupError."""
    inst, expo, detector = key
    pf = raw.exp_filter if ctype == "flat" else None
    t = s.to_micros(raw.exp_begin)
    for coll in calibs:
        matches = [
            c
            for c in groups.get((coll, ctype, inst, detector, pf), ())
            if s.to_micros(c.v_begin) <= t < s.to_micros(c.v_end)
        ]
        if len(matches) > 1:
            ids = ", ".join(str(m.ds_id) for m in matches)
            raise CalibrationLookupError(
                f"{ctype} for {inst} exposure {expo} detector {detector} "
                f"(begin {raw.exp_begin.isoformat()}) is ambiguous in {coll!r}: datasets {ids}"
            )
        if matches:
            return _ref_from_row(matches[0], "ds_")
    return None


def _missing_calib(req: _Request, ctype: str, key: RawKey, raw: Any) -> QuantumProblem:
    """The plan's problem for a calibration type with nothing certified for this raw."""
    inst, expo, detector = key
    pf = raw.exp_filter if ctype == "flat" else None
    where_txt = f" for filter {pf!r}" if pf else ""
    return QuantumProblem(
        instrument=inst,
        exposure=expo,
        detector=detector,
        problem="missing calibration",
        dataset_type=ctype,
        message=f"no {ctype}{where_txt} certified in {req.calib_collection!r} valid at "
        f"{raw.exp_begin.isoformat()} for {inst} detector {detector}",
    )


def _output_ref(req: _Request, key: RawKey) -> DatasetRef:
    """The output dataset of a quantum: its id and URI in the output run."""
    inst, expo, detector = key
    data_id = normalize_data_id(
        req.dataset_type_out, {"instrument": inst, "exposure": expo, "detector": detector}
    )
    return DatasetRef(
        id=dataset_id(req.dataset_type_out, req.output_run, data_id),
        dataset_type=req.dataset_type_out,
        run=req.output_run,
        data_id=data_id,
        uri=dataset_uri(req.root, req.output_run, req.dataset_type_out, data_id),
    )


def _build_quanta(
    req: _Request, raws: dict[RawKey, Any], groups: dict[CalibKey, list[Any]], calibs: list[str]
) -> _Draft:
    """One quantum per raw (sorted by key), with its calibrations and output, and the problems
    of calibrations not found."""
    draft = _Draft(quanta=[], problems=[])
    for key in sorted(raws):
        raw = raws[key]
        chosen: dict[str, DatasetRef | None] = {}
        missing: list[str] = []
        for ctype in req.needed_calibs:
            chosen[ctype] = _valid_calib(groups, calibs, ctype, key, raw)
            if chosen[ctype] is None:
                missing.append(ctype)
                draft.problems.append(_missing_calib(req, ctype, key, raw))
        inst, expo, detector = key
        draft.quanta.append(
            Quantum(
                instrument=inst,
                exposure=expo,
                detector=detector,
                detector_name=raw.det_name,
                physical_filter=raw.exp_filter,
                exposure_begin=raw.exp_begin,
                raw=_ref_from_row(raw),
                calibs=chosen,
                missing_calibs=missing,
                output=_output_ref(req, key),
            )
        )
    return draft


def _existing_outputs(conn: Connection, quanta: list[Quantum]) -> dict[Any, Any]:
    """Dataset rows that already exist for the quanta's outputs, by dataset id."""
    existing: dict[Any, Any] = {}
    ids = [q.output.id for q in quanta]
    for i in range(0, len(ids), _CHUNK):
        for r in conn.execute(sa.select(s.dataset).where(s.dataset.c.id.in_(ids[i : i + _CHUNK]))):
            existing[r.id] = r
    return existing


def _resolve_existing(req: _Request, draft: _Draft, existing: dict[Any, Any]) -> QuantumPlan:
    """The plan, after the mode's treatment of outputs that exist already: raise (``fail``),
    drop those quanta and their problems (``skip-existing``) or mark them ``replace``."""
    quanta, problems = draft.quanta, draft.problems
    if not existing:
        return QuantumPlan(quanta=quanta, problems=problems)
    clashes = [q for q in quanta if q.output.id in existing]
    if req.mode == "fail":
        named = ", ".join(
            f"{q.instrument} exposure {q.exposure} detector {q.detector}"
            for q in clashes[:MAX_CONFLICTS_NAMED]
        )
        more = len(clashes) - MAX_CONFLICTS_NAMED
        raise OutputExistsError(
            f"output run {req.output_run!r} already holds {len(clashes)} {req.dataset_type_out} "
            f"dataset(s): {named}"
            + (f" and {more} more" if more > 0 else "")
            + "; plan with mode skip-existing or replace",
            conflicts=[str(q.output.id) for q in clashes],
        )
    if req.mode == "skip-existing":
        kept = [q for q in quanta if q.output.id not in existing]
        skipped_keys = {(q.instrument, q.exposure, q.detector) for q in clashes}
        return QuantumPlan(
            quanta=kept,
            problems=[p for p in problems if (p.instrument, p.exposure, p.detector) not in skipped_keys],
            skipped_existing=[_ref_from_row(existing[q.output.id]) for q in clashes],
        )
    return QuantumPlan(
        quanta=[q.model_copy(update={"replace": True}) if q.output.id in existing else q for q in quanta],
        problems=problems,
    )
