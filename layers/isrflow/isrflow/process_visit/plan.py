"""Plan: find the quanta, group them into clusters, write the manifest (always, at every size)."""

from __future__ import annotations

import json
from collections import defaultdict

from isrflow.io.storage import storage_for
from isrflow.isr.config import IsrConfig
from isrflow.model.datasets import Quantum
from isrflow.model.errors import QuantaNotFoundError
from isrflow.model.messages import Cluster, PlanEvent, PlanResult, QuantumKey
from isrflow.process_visit import layout
from isrflow.process_visit.results import write_plan_failures

CALIB_STEPS = ("bias", "dark", "flat", "defects")


def where_for_quanta(keys: list[QuantumKey]) -> str:
    """A ``--where`` query selecting exactly these (instrument, exposure, detector) triples."""
    by_exposure: dict[tuple[str, int], list[int]] = defaultdict(list)
    for k in keys:
        by_exposure[(k.instrument, k.exposure)].append(k.detector)
    terms = []
    for (instrument, exposure), detectors in sorted(by_exposure.items()):
        quoted = instrument.replace("'", "''")
        terms.append(
            f"(instrument = '{quoted}' AND exposure = {exposure} "
            f"AND detector IN ({', '.join(str(d) for d in sorted(set(detectors)))}))"
        )
    return " OR ".join(terms)


def check_requested(keys: list[QuantumKey], plan, input_collections: list[str]) -> None:
    """Explicit quanta must all be planned (or skipped as existing); otherwise their raws are not
    registered, or not yet applied by the writer (an upload's prompt execution may start first):
    QuantaNotFoundError, which the state machine's Plan state retries with back-off."""
    found = {(q.instrument, q.exposure, q.detector) for q in plan.quanta}
    found |= {
        (r.data_id["instrument"], r.data_id["exposure"], r.data_id["detector"]) for r in plan.skipped_existing
    }
    missing = sorted({(k.instrument, k.exposure, k.detector) for k in keys} - found)
    if missing:
        named = ", ".join(f"{i} {e} det {d}" for i, e, d in missing[:10])
        raise QuantaNotFoundError(
            f"{len(missing)} requested quanta have no raw in {', '.join(input_collections)}: "
            f"{named}{' ...' if len(missing) > 10 else ''}"
        )


def make_clusters(quanta: list[Quantum], size: int) -> list[Cluster]:
    """Group quanta that share calibrations (same detector and calibration datasets), in
    exposure order, into clusters of at most ``size`` so a worker reads each calibration once."""
    groups: dict[tuple, list[Quantum]] = defaultdict(list)
    for q in quanta:
        calib_ids = tuple(sorted((k, str(v.id)) for k, v in q.calibs.items() if v is not None))
        groups[(q.instrument, q.detector, calib_ids)].append(q)
    clusters: list[Cluster] = []
    for (instrument, detector, _), members in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])
    ):
        members.sort(key=lambda q: q.exposure)
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            clusters.append(Cluster(cluster_id=f"{instrument}-{detector}-{chunk[0].exposure}", quanta=chunk))
    return clusters


def _with_unique_output(q: Quantum, execution_id: str) -> Quantum:
    """The quantum writing its output to this execution's own file (see layout.unique_output_uri)."""
    output = q.output.model_copy(update={"uri": layout.unique_output_uri(q.output.uri, execution_id)})
    return q.model_copy(update={"output": output})


def plan_visit(event: PlanEvent, registry, datastore_root: str) -> PlanResult:
    """Plan an execution; quanta missing a calibration are recorded as failed right away."""
    spec = event.input
    config = IsrConfig.model_validate(spec.isr_config)
    needed = [k for k in CALIB_STEPS if getattr(config, k)]
    where = spec.where if spec.where is not None else where_for_quanta(spec.quanta or [])
    if spec.quanta is not None:  # the first raw of an instrument creates its raw collection
        absent = [c for c in spec.input_collections if registry.collection_type(c) is None]
        if absent:
            raise QuantaNotFoundError(
                f"{len(spec.quanta)} requested quanta have no raw yet: input collection(s) "
                f"{', '.join(absent)} do not exist"
            )
    plan = registry.find_quanta(
        where,
        spec.input_collections,
        spec.calib_collection,
        spec.output_run,
        needed_calibs=needed,
        mode=spec.mode,
        datastore_root=datastore_root,
    )
    if spec.quanta is not None:
        check_requested(spec.quanta, plan, spec.input_collections)
    key = layout.execution_key(event.execution_id)
    results = layout.results_prefix(datastore_root, key)
    storage = storage_for(datastore_root)
    ready = [_with_unique_output(q, event.execution_id) for q in plan.quanta if not q.missing_calibs]
    write_plan_failures(results, plan.quanta, spec.calib_collection)
    clusters = make_clusters(ready, spec.cluster_size)
    manifest = layout.manifest_uri(datastore_root, key)
    storage.write_bytes(manifest, json.dumps([c.model_dump(mode="json") for c in clusters]).encode())
    return PlanResult(
        execution_id=event.execution_id,
        execution_key=key,
        manifest_key=layout.bucket_key(manifest, datastore_root),
        manifest_uri=manifest,
        results_prefix=results,
        clusters=len(clusters),
        quanta=len(plan.quanta),
        failed_at_plan=len(plan.quanta) - len(ready),
        skipped_existing=len(plan.skipped_existing),
        output_run=spec.output_run,
        isr_config=config.model_dump(mode="json"),
        max_concurrency=spec.max_concurrency,
        max_failure_fraction=spec.max_failure_fraction,
        previews=spec.previews,
    )
