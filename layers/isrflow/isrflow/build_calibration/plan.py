"""BuildCalibration Plan: the input frames per master, their ISR clusters, the master outputs.

For bias, dark and flat: :func:`isrflow.registry.quanta.find_quanta` over the raws of the
type's observation type (added to ``where``), with the calibrations their ISR needs looked up
in ``calib_collection`` and the intermediates (cpBiasProc, cpDarkProc, cpFlatProc) as outputs
in ``output_run``; quanta are grouped per master (detector, and physical filter for flats) and
clustered per detector for the ISR Map exactly like ProcessVisit's. An input missing a
calibration is recorded as a failed input right away.

For defects: the master dark and master flat(s) of each detector ``where`` selects, found in
``input_collections`` (the first collection holding one wins; two different masters of one
detector in the same collection are ambiguous).

Masters already in ``output_run`` are an OutputExistsError in mode ``fail`` and are replaced
in mode ``replace``. Pure Python (the plan Lambda has no numpy).
"""

from __future__ import annotations

import json

from isrflow.build_calibration import layout
from isrflow.calibration.steps import isr_config_for, spec
from isrflow.io.datastore import dataset_uri
from isrflow.io.storage import storage_for
from isrflow.model.datasets import DatasetRef
from isrflow.model.errors import CalibrationLookupError, CollectionError, ConfigError, OutputExistsError
from isrflow.model.ids import dataset_id, normalize_data_id
from isrflow.model.messages import CalibPlanEvent, CalibPlanResult, MasterGroup, MasterInput
from isrflow.process_visit import layout as pv_layout
from isrflow.process_visit.plan import make_clusters
from isrflow.process_visit.results import write_plan_failures


def with_obs_type(where: str | None, obs_type: str) -> str:
    """``where`` restricted to raws of ``obs_type``."""
    clause = f"obs_type = '{obs_type}'"
    return f"({where}) AND {clause}" if where and where.strip() else clause


def _group(
    calib_type: str,
    instrument: str,
    detector: int,
    detector_name: str,
    physical_filter: str | None,
    run: str,
    root: str,
) -> MasterGroup:
    data_id = {"instrument": instrument, "detector": detector}
    if physical_filter is not None:
        data_id["physical_filter"] = physical_filter
    data_id = normalize_data_id(calib_type, data_id)
    return MasterGroup(
        key=layout.master_key(instrument, detector, physical_filter),
        calib_type=calib_type,
        instrument=instrument,
        detector=detector,
        detector_name=detector_name,
        physical_filter=physical_filter,
        data_id=data_id,
        dataset_id=dataset_id(calib_type, run, data_id),
        output_uri=dataset_uri(root, run, calib_type, data_id),
        inputs=[],
    )


def _isr_groups(event: CalibPlanEvent, registry, root: str, isr_prefix: str):
    inp = event.input
    build = spec(inp.calib_type)
    if build.obs_type is None:
        raise ConfigError(f"{inp.calib_type} is built from master calibrations, not from raws")
    plan = registry.find_quanta(
        with_obs_type(inp.where, build.obs_type),
        inp.input_collections,
        inp.calib_collection if build.needed_calibs else None,
        inp.output_run,
        dataset_type_out=build.intermediate,
        needed_calibs=build.needed_calibs,
        mode=inp.mode,
        datastore_root=root,
    )
    groups: dict[str, MasterGroup] = {}
    ready = []
    for q in plan.quanta:
        pf = q.physical_filter if build.per_filter else None
        group = _group(inp.calib_type, q.instrument, q.detector, q.detector_name, pf, inp.output_run, root)
        group = groups.setdefault(group.key, group)
        calibs = {
            k: MasterInput(dataset_id=ref.id, uri=ref.uri, role=k)
            for k, ref in q.calibs.items()
            if ref is not None
        }
        group.inputs.append(
            MasterInput(dataset_id=q.output.id, uri=q.output.uri, exposure=q.exposure, calibs=calibs)
        )
        if not q.missing_calibs:
            ready.append(q)
    write_plan_failures(isr_prefix, plan.quanta, inp.calib_collection)
    clusters = make_clusters(ready, inp.cluster_size)
    return groups, clusters, len(plan.quanta), len(plan.quanta) - len(ready)


def _defects_groups(event: CalibPlanEvent, registry, root: str) -> dict[str, MasterGroup]:
    inp = event.input
    groups: dict[str, MasterGroup] = {}
    for calib_type in ("dark", "flat"):
        chosen: dict[tuple, tuple[str, DatasetRef]] = {}
        for ref in registry.query_datasets(calib_type, inp.input_collections, inp.where):
            collection = getattr(getattr(ref, "validity", None), "collection", ref.run)
            slot = (ref.data_id["instrument"], ref.data_id["detector"], ref.data_id.get("physical_filter"))
            previous = chosen.get(slot)
            if previous is None:
                chosen[slot] = (collection, ref)
            elif previous[0] == collection and previous[1].id != ref.id:
                raise CalibrationLookupError(
                    f"defects: {collection!r} holds two {calib_type} masters for {slot[0]} detector {slot[1]} "
                    f"({previous[1].id}, {ref.id}); give the RUN collection of the build to use"
                )
        for (instrument, detector, _pf), (_, ref) in sorted(chosen.items(), key=lambda kv: repr(kv[0])):
            group = _group("defects", instrument, detector, str(detector), None, inp.output_run, root)
            group = groups.setdefault(group.key, group)
            group.inputs.append(MasterInput(dataset_id=ref.id, uri=ref.uri, role=calib_type))
    return groups


def _check_existing(groups: dict[str, MasterGroup], event: CalibPlanEvent, registry) -> None:
    inp = event.input
    if registry.collection_type(inp.output_run) != "RUN":
        return
    existing = {ref.id for ref in registry.query_datasets(inp.calib_type, [inp.output_run])}
    clashes = [g for g in groups.values() if g.dataset_id in existing]
    if clashes and inp.mode == "fail":
        named = ", ".join(g.key for g in clashes[:5])
        raise OutputExistsError(
            f"output run {inp.output_run!r} already holds {len(clashes)} {inp.calib_type} master(s): {named}; "
            "build with mode replace",
            conflicts=[str(g.dataset_id) for g in clashes],
        )
    for g in clashes:
        g.replace = True


def plan_build(event: CalibPlanEvent, registry, datastore_root: str) -> CalibPlanResult:
    """Plan one BuildCalibration execution; writes its manifests and returns where they are."""
    inp = event.input
    build = spec(inp.calib_type)
    if inp.certify is not None and registry.collection_type(inp.certify.collection) != "CALIBRATION":
        raise CollectionError(
            f"certify: {inp.certify.collection!r} is not a CALIBRATION collection of this "
            "registry (create it first, e.g. isrflow calib build --certify does)"
        )
    root = datastore_root.rstrip("/")
    key = pv_layout.execution_key(event.execution_id)
    isr_prefix = layout.isr_results_prefix(root, key)
    if build.intermediate is not None:
        isr_config = isr_config_for(inp.calib_type, inp.isr_config).model_dump(mode="json")
        groups, clusters, n_inputs, failed = _isr_groups(event, registry, root, isr_prefix)
    else:
        isr_config, clusters, failed = {}, [], 0
        groups = _defects_groups(event, registry, root)
        n_inputs = sum(len(g.inputs) for g in groups.values())
    _check_existing(groups, event, registry)
    store = storage_for(root)
    manifest = pv_layout.manifest_uri(root, key)
    store.write_bytes(manifest, json.dumps([c.model_dump(mode="json") for c in clusters]).encode())
    groups_uri = layout.groups_uri(root, key)
    store.write_bytes(groups_uri, json.dumps([g.model_dump(mode="json") for g in groups.values()]).encode())
    return CalibPlanResult(
        execution_id=event.execution_id,
        execution_key=key,
        calib_type=inp.calib_type,
        output_run=inp.output_run,
        mode=inp.mode,
        manifest_key=pv_layout.bucket_key(manifest, root),
        manifest_uri=manifest,
        clusters=len(clusters),
        inputs=n_inputs,
        failed_at_plan=failed,
        groups_uri=groups_uri,
        masters=len(groups),
        isr_results_prefix=isr_prefix,
        master_results_prefix=layout.master_results_prefix(root, key),
        requests_prefix=layout.requests_prefix(root, key),
        isr_config=isr_config,
        statistic=inp.statistic,
        clip=inp.clip,
        iterations=inp.iterations,
        min_inputs=inp.min_inputs,
        route=inp.route,
        combine_memory_mb=inp.combine_memory_mb,
        certify=inp.certify,
        certify_requested=inp.certify is not None,
        max_concurrency=inp.max_concurrency,
        max_failure_fraction=inp.max_failure_fraction,
        keep_intermediates=inp.keep_intermediates,
    )


def read_groups(uri: str) -> list[MasterGroup]:
    return [MasterGroup.model_validate(g) for g in json.loads(storage_for(uri).read_bytes(uri))]


__all__ = ["plan_build", "read_groups", "with_obs_type"]
