"""State machine inputs built from a repository: default collections, the ProcessVisit and
BuildCalibration inputs, and the check that a query selects something before anything starts.

Used by :class:`isrflow.Client` and by the CLI (``run process-visit``, ``calib build``, ``demo``,
``tune``), so both build the same input from the same arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

from isrflow.model.errors import ConfigError, NothingSelectedError


def default_collections(
    registry, input_collections: Sequence[str] | None, calib_collection: str | None
) -> tuple[list[str], str]:
    """Default raw/calib collections when the registry holds exactly one instrument:
    ``<INSTRUMENT>/raw/all`` and ``<INSTRUMENT>/calib``."""
    if input_collections and calib_collection:
        return list(input_collections), calib_collection
    if registry is None:
        raise ConfigError(
            "give input collections and a calibration collection (--input-collections, "
            "--calib-collection): there is no registry to take their defaults from"
        )
    raws = {ref.data_id["instrument"] for ref in registry.query_datasets("raw")}
    if len(raws) != 1:
        raise ConfigError(
            "give input collections and a calibration collection (--input-collections, "
            f"--calib-collection): the repository holds raws of {len(raws)} instruments"
        )
    instrument = raws.pop()
    return (list(input_collections or []) or [f"{instrument}/raw/all"]), (
        calib_collection or f"{instrument}/calib"
    )


def process_visit_input(
    registry,
    where,
    quanta,
    input_collections,
    calib_collection,
    output_run,
    mode,
    cluster_size,
    max_failure_fraction,
    isr_config,
    max_concurrency=100,
    previews=False,
) -> dict:
    """The ProcessVisit input (``messages.ProcessVisitInput`` as JSON) with default collections."""
    from isrflow.model.messages import ProcessVisitInput

    inputs, calib = default_collections(registry, input_collections, calib_collection)
    payload = ProcessVisitInput(
        where=where,
        quanta=quanta,
        input_collections=inputs,
        calib_collection=calib,
        output_run=output_run,
        mode=mode,
        cluster_size=cluster_size,
        max_failure_fraction=max_failure_fraction,
        isr_config=isr_config or {},
        max_concurrency=max_concurrency,
        previews=previews,
    )
    return payload.model_dump(mode="json", exclude_none=True)


def build_input(
    registry,
    calib_type: str,
    where: str | None,
    output_run: str,
    *,
    input_collections=(),
    calib_collection: str | None = None,
    certify: bool = False,
    collection: str | None = None,
    begin=None,
    end=None,
    **options,
) -> dict:
    """The BuildCalibration input, with the default collections of the repository's one instrument."""
    from isrflow.model.messages import BuildCalibrationInput

    raws, calib = default_collections(
        registry, [] if calib_type == "defects" else input_collections, calib_collection
    )
    inputs = list(input_collections) or ([calib] if calib_type == "defects" else raws)
    spec = None
    if certify:
        spec = {"collection": collection or calib, "begin": begin, "end": end}
    payload = BuildCalibrationInput(
        calib_type=calib_type,
        where=where,
        input_collections=inputs,
        calib_collection=calib if calib_type in ("dark", "flat") else calib_collection,
        output_run=output_run,
        certify=spec,
        **{k: v for k, v in options.items() if v is not None},
    )
    return payload.model_dump(mode="json", exclude_none=True)


def selected_inputs(registry, payload: dict) -> int:
    """How many input datasets a ProcessVisit or BuildCalibration input selects (raws; for a
    defects build, the master darks and flats). Raises NothingSelectedError when none."""
    from isrflow.build_calibration.plan import with_obs_type
    from isrflow.calibration.steps import spec

    collections = payload.get("input_collections") or []
    where = payload.get("where")
    calib_type = payload.get("calib_type")
    if payload.get("quanta"):
        return len(payload["quanta"])
    if calib_type == "defects":
        count = sum(len(registry.query_datasets(t, collections, where)) for t in ("dark", "flat"))
        what = "master darks or flats"
    elif calib_type:
        obs_type = spec(calib_type).obs_type
        if obs_type is None:  # only defects are built from masters rather than raws: handled above
            raise ValueError(f"calibration type {calib_type!r} names no raw observation type")
        count = len(registry.query_datasets("raw", collections, with_obs_type(where, obs_type)))
        what = f"{obs_type} raws"
    else:
        count = len(registry.query_datasets("raw", collections, where))
        what = "raws"
    if count == 0:
        raise NothingSelectedError(
            f"the query {where!r} selects no {what} in {', '.join(collections) or '-'}: "
            "nothing to run (see `isrflow datasets --repo DIR --where ...`)"
        )
    return count


__all__ = ["build_input", "default_collections", "process_visit_input", "selected_inputs"]
