"""DeleteIntermediates: after the combine, remove the ISR'd inputs of the masters that were built.

BuildCalibration writes one intermediate (cpBiasProc, cpDarkProc, cpFlatProc) per input frame
into the output run: on an HSC-size detector ~100 MB each, most of a calibration build's disk.
Once a master is built from them they are only provenance, so by default the state machine's
DeleteIntermediates state (the calib_plan function) deletes the inputs of every master whose
result says ``succeeded``, from the datastore the same way locally (``file://``) and on AWS (S3
DeleteObjects, 1,000 keys a request). Inputs of masters that failed are kept for diagnosis (on
AWS the bucket's lifecycle rule expires them, :mod:`isrflow.io.lifecycle`); ``keep_intermediates``
in the input skips the state. The registry keeps the intermediates' rows: they are the masters'
provenance, their files are gone. Defects have no intermediates (their inputs are masters) and
are never touched.

Pure Python (the plan Lambda has no numpy).
"""

from __future__ import annotations

from collections import defaultdict

from isrflow.build_calibration.plan import read_groups
from isrflow.calibration.steps import spec
from isrflow.io.storage import ObjectNotFoundError, storage_for
from isrflow.model.messages import CalibStepEvent, IntermediatesDeleted, MasterResult


def _built(prefix: str, key: str) -> bool:
    uri = prefix + key + ".json"
    try:
        return MasterResult.model_validate_json(storage_for(uri).read_bytes(uri)).status == "succeeded"
    except ObjectNotFoundError:
        return False


def delete_intermediates(event: CalibStepEvent) -> IntermediatesDeleted:
    """Delete the intermediates of every master of the execution that was built."""
    plan = event.plan
    if plan.keep_intermediates or spec(plan.calib_type).intermediate is None:
        return IntermediatesDeleted(masters=0, deleted=0)
    uris: list[str] = []
    masters = 0
    for group in read_groups(plan.groups_uri):
        if _built(plan.master_results_prefix, group.key):
            masters += 1
            uris.extend(item.uri for item in group.inputs)
    by_scheme: dict[str, list[str]] = defaultdict(list)
    for uri in uris:  # one datastore per execution, but the storage is chosen per URI
        by_scheme[uri.split("://", 1)[0] if "://" in uri else "file"].append(uri)
    deleted = sum(storage_for(group[0]).delete(group) for group in by_scheme.values())
    return IntermediatesDeleted(masters=masters, deleted=deleted)


__all__ = ["delete_intermediates"]
