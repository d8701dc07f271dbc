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
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from isrflow.model.errors import CalibrationLookupError, CollectionError, OutputExistsError, RegistryError
from isrflow.registry import schema as s
from isrflow.registry.datastore import dataset_uri, normalize_root
from isrflow.registry.engine import transaction
from isrflow.registry.ids import (
    CALIBRATION_TYPES,
    DATASET_TYPES,
    check_collection_name,
    dataset_id,
    normalize_data_id,
)
from isrflow.registry.models import DatasetRef, Quantum, QuantumPlan, QuantumProblem
from isrflow.registry.query import compile_where

OutputMode = Literal["fail", "skip-existing", "replace"]
OUTPUT_MODES = ("fail", "skip-existing", "replace")

#: How many conflicting outputs an OutputExistsError names.
MAX_CONFLICTS_NAMED = 5


def _ref_from_row(row: Any, prefix: str = "") -> DatasetRef:
    g = lambda k: getattr(row, prefix + k)  # noqa: E731
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
    registry: Any,
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
    if mode not in OUTPUT_MODES:
        raise RegistryError(f"unknown output mode {mode!r}; use one of {', '.join(OUTPUT_MODES)}")
    for t in (dataset_type_in, dataset_type_out):
        if DATASET_TYPES.get(t) != ("instrument", "exposure", "detector"):
            raise RegistryError(f"{t!r} is not an exposure-level dataset type")
    bad = [c for c in needed_calibs if c not in CALIBRATION_TYPES]
    if bad:
        raise RegistryError(f"not calibration types: {', '.join(bad)}")
    check_collection_name(output_run)
    root = datastore_root if datastore_root is not None else registry.datastore_root
    if root is None:
        raise RegistryError("find_quanta needs a datastore root for the output URIs")
    root = normalize_root(root)

    from isrflow.registry.core import query_columns

    columns, join = query_columns()
    cond = compile_where(where, columns)
    d, e, det = s.dataset.c, s.exposure.c, s.detector.c
    with transaction(registry.engine, write=False) as conn:
        out_type = conn.execute(
            sa.select(s.collection.c.type).where(s.collection.c.name == output_run)
        ).scalar()
        if out_type is not None and out_type != "RUN":
            raise CollectionError(f"output collection {output_run!r} is a {out_type} collection, not a RUN")
        paths = [input_collections] if isinstance(input_collections, str) else list(input_collections)
        runs = [n for n, t in registry._resolve(conn, paths) if t == "RUN"]
        calibs: list[str] = []
        if needed_calibs:
            if not calib_collection:
                raise CollectionError(
                    "a calibration collection is needed to look up " + ", ".join(needed_calibs)
                )
            calibs = [n for n, t in registry._resolve(conn, [calib_collection]) if t == "CALIBRATION"]
            if not calibs:
                raise CollectionError(f"{calib_collection!r} holds no CALIBRATION collection")

        # 1. Raws (first run in the search path wins for each data id).
        rank = {r: i for i, r in enumerate(runs)}
        stmt = (
            sa.select(
                *s.dataset.c,
                e.begin.label("exp_begin"),
                e.physical_filter.label("exp_filter"),
                det.name.label("det_name"),
            )
            .select_from(join)
            .where(d.run.in_(runs), d.dataset_type == dataset_type_in, d.exposure.is_not(None))
        )
        if cond is not None:
            stmt = stmt.where(cond)
        raws: dict[tuple[str, int, int], Any] = {}
        for row in conn.execute(stmt) if runs else []:
            key = (row.instrument, row.exposure, row.detector)
            if row.exp_begin is None:
                continue  # no exposure record: cannot look up calibrations
            old = raws.get(key)
            if old is None or rank[row.run] < rank[old.run]:
                raws[key] = row

        # 2. Certified calibrations of the selected instruments/detectors.
        groups: dict[tuple[str, str, str, int, str | None], list[Any]] = defaultdict(list)
        if calibs and raws:
            v = s.calib_validity.c
            insts = sorted({k[0] for k in raws})
            dets = sorted({k[2] for k in raws})
            vstmt = (
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
                    v.dataset_type.in_(list(needed_calibs)),
                    v.instrument.in_(insts),
                    v.detector.in_(dets),
                )
            )
            for row in conn.execute(vstmt):
                pf = row.physical_filter if row.ds_dataset_type == "flat" else None
                groups[(row.collection, row.ds_dataset_type, row.ds_instrument, row.ds_detector, pf)].append(
                    row
                )

        # 3. Quanta.
        quanta: list[Quantum] = []
        problems: list[QuantumProblem] = []
        for key in sorted(raws):
            row = raws[key]
            inst, expo, detector = key
            t = s.to_micros(row.exp_begin)
            chosen: dict[str, DatasetRef | None] = {}
            missing: list[str] = []
            for ctype in needed_calibs:
                pf = row.exp_filter if ctype == "flat" else None
                found = None
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
                            f"(begin {row.exp_begin.isoformat()}) is ambiguous in {coll!r}: datasets {ids}"
                        )
                    if matches:
                        found = _ref_from_row(matches[0], "ds_")
                        break
                chosen[ctype] = found
                if found is None:
                    missing.append(ctype)
                    where_txt = f" for filter {pf!r}" if pf else ""
                    problems.append(
                        QuantumProblem(
                            instrument=inst,
                            exposure=expo,
                            detector=detector,
                            problem="missing calibration",
                            dataset_type=ctype,
                            message=f"no {ctype}{where_txt} certified in {calib_collection!r} valid at "
                            f"{row.exp_begin.isoformat()} for {inst} detector {detector}",
                        )
                    )
            out_id_data = normalize_data_id(
                dataset_type_out, {"instrument": inst, "exposure": expo, "detector": detector}
            )
            output = DatasetRef(
                id=dataset_id(dataset_type_out, output_run, out_id_data),
                dataset_type=dataset_type_out,
                run=output_run,
                data_id=out_id_data,
                uri=dataset_uri(root, output_run, dataset_type_out, out_id_data),
            )
            quanta.append(
                Quantum(
                    instrument=inst,
                    exposure=expo,
                    detector=detector,
                    detector_name=row.det_name,
                    physical_filter=row.exp_filter,
                    exposure_begin=row.exp_begin,
                    raw=_ref_from_row(row),
                    calibs=chosen,
                    missing_calibs=missing,
                    output=output,
                )
            )

        # 4. Outputs that already exist.
        existing: dict[Any, Any] = {}
        ids = [q.output.id for q in quanta]
        for i in range(0, len(ids), 5000):
            for r in conn.execute(sa.select(s.dataset).where(s.dataset.c.id.in_(ids[i : i + 5000]))):
                existing[r.id] = r
    if not existing:
        return QuantumPlan(quanta=quanta, problems=problems)
    clashes = [q for q in quanta if q.output.id in existing]
    if mode == "fail":
        named = ", ".join(
            f"{q.instrument} exposure {q.exposure} detector {q.detector}"
            for q in clashes[:MAX_CONFLICTS_NAMED]
        )
        more = len(clashes) - MAX_CONFLICTS_NAMED
        raise OutputExistsError(
            f"output run {output_run!r} already holds {len(clashes)} {dataset_type_out} dataset(s): {named}"
            + (f" and {more} more" if more > 0 else "")
            + "; plan with mode skip-existing or replace",
            conflicts=[str(q.output.id) for q in clashes],
        )
    if mode == "skip-existing":
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
