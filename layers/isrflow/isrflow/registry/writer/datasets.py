"""Dataset messages of a batch: checks, the dataset rows and their provenance.

A dataset is rejected if its instrument is unknown, its run is not a RUN collection or it
exists with other content (unless sent with ``replace``); it is retried while its detector,
exposure or an input dataset is not registered. Duplicates within the batch follow the first.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from isrflow.model.errors import RegistryError
from isrflow.model.messages import DatasetMessage, ProvenanceInput
from isrflow.registry import copy_pg
from isrflow.registry import schema as s
from isrflow.registry.dataset_row import dataset_row
from isrflow.registry.writer.batch import Batch
from isrflow.registry.writer.items import Item
from isrflow.registry.writer.sql import chunks, insert_rows


def apply_datasets(batch: Batch) -> None:
    """Apply the batch's dataset messages (sorted by dataset id); see the module docstring."""
    items = sorted(batch.by_kind["dataset"], key=lambda it: it.message.id.int)
    if not items:
        return
    # keyed by the ids' integers: hashed in C (a UUID's __hash__ is Python)
    primaries: dict[int, Item] = {}
    followers: dict[int, list[Item]] = defaultdict(list)
    for it in items:
        m: DatasetMessage = it.message
        ds_id = m.dataset_id
        first = primaries.get(ds_id.int)
        if first is None:
            primaries[ds_id.int] = it
        elif (
            same_content(first.message, m)
            and first.message.inputs == m.inputs
            and first.message.replace == m.replace
        ):
            followers[ds_id.int].append(it)  # a duplicate delivery in the same batch
        else:
            it.reject(f"dataset {ds_id} appears twice in the batch with different content")

    # Static checks: instrument, collection type, dimensions, existing content: one round trip.
    dc, ec, d, c = s.detector.c, s.exposure.c, s.dataset.c, s.collection.c
    detectors = {
        (it.message.data_id["instrument"], it.message.data_id["detector"]) for it in primaries.values()
    }
    exposures = {
        (it.message.data_id["instrument"], it.message.data_id["exposure"])
        for it in primaries.values()
        if "exposure" in it.message.data_id
    }
    wanted_ids = {it.message.id for it in primaries.values()}
    wanted_ids.update(i.dataset_id for it in primaries.values() for i in it.message.inputs)
    found = batch.select_many(
        [
            ([c.name, c.type], c.name, {it.message.run for it in primaries.values()}),
            ([dc.instrument, dc.id], sa.tuple_(dc.instrument, dc.id), detectors - batch.detectors),
            ([ec.instrument, ec.id], sa.tuple_(ec.instrument, ec.id), exposures - batch.exposures),
            ([d.id, d.uri, d.size, d.sha256], d.id, wanted_ids),
        ]
    )
    run_types = {r.name: r.type for r in found[0]}
    existing_dims = {
        "detector": {(r.instrument, r.id) for r in found[1]},
        "exposure": {(r.instrument, r.id) for r in found[2]},
    }
    existing = {r.id.int: r for r in found[3]}

    candidates: dict[int, Item] = {}
    for key, it in primaries.items():
        m = it.message
        ds_id = m.dataset_id
        inst = m.data_id["instrument"]
        if inst not in batch.instruments:
            it.reject(f"unknown instrument {inst!r} in dataset {ds_id}")
            continue
        run_type = run_types.get(m.run)
        if run_type is not None and run_type != "RUN":
            it.reject(f"collection {m.run!r} is a {run_type} collection, datasets go into RUN collections")
            continue
        row = existing.get(key)
        if row is not None and not m.replace and not same_content(row, m):
            it.reject(
                f"dataset {ds_id} ({m.dataset_type} {m.data_id_json} in {m.run}) already exists "
                f"with different uri/size/checksum; send it with replace=true to overwrite"
            )
            continue
        det = (inst, m.data_id["detector"])
        if det not in batch.detectors and det not in existing_dims["detector"]:
            it.retry(f"detector {det[1]} of {inst} is not registered")
            continue
        if "exposure" in m.data_id:
            exp = (inst, m.data_id["exposure"])
            if exp not in batch.exposures and exp not in existing_dims["exposure"]:
                it.retry(f"exposure {exp[1]} of {inst} is not registered")
                continue
        candidates[key] = it

    # Inputs must exist already or be accepted in this batch (iterate to a fixed point).
    changed = True
    while changed:
        changed = False
        for key, it in list(candidates.items()):
            missing = [
                str(i.dataset_id)
                for i in it.message.inputs
                if i.dataset_id.int not in existing and i.dataset_id.int not in candidates
            ]
            if missing:
                it.retry(f"input dataset(s) {', '.join(missing)} not registered")
                del candidates[key]
                changed = True

    if not candidates:
        _follow(primaries, followers)
        return
    conn = batch.conn
    new_runs = sorted({it.message.run for it in candidates.values()} - set(run_types))
    insert_rows(conn, s.collection, [{"name": r, "type": "RUN", "doc": ""} for r in new_runs], ["name"])
    if any(batch.collection_types(new_runs).get(r) != "RUN" for r in new_runs):
        raise RegistryError("a new RUN collection was created concurrently with another type; retry")

    plain: list[dict[str, Any]] = []
    replace: list[dict[str, Any]] = []
    replace_ids: list[uuid.UUID] = []
    ordered = [candidates[key] for key in sorted(candidates)]
    for it in ordered:
        m = it.message
        ds_id = m.dataset_id
        row = dataset_row(m, batch.now)
        batch.datasets[ds_id] = row
        if m.replace:
            replace.append(row)
            replace_ids.append(ds_id)
        elif ds_id.int not in existing:
            plain.append(row)
            it.fresh = True
        it.applied()
    batch.write(s.dataset, plain, ["id"], new=True)  # sent: the server inserts while the rest is built
    batch.write(s.dataset, replace, ["id"], update=["uri", "size", "sha256", "created"])
    new_prov: dict[str, list[Any]] = {"output_id": [], "input_id": [], "role": []}
    old_prov: dict[str, list[Any]] = {"output_id": [], "input_id": [], "role": []}
    for it in ordered:
        m = it.message
        ds_id = m.dataset_id
        outputs, inputs, roles = (new_prov if it.fresh else old_prov).values()
        for i in _by_id(m.inputs):
            outputs.append(ds_id)
            inputs.append(i.dataset_id)
            roles.append(i.role)
    if replace_ids and batch.sender is not None:
        batch.sender.send(*copy_pg.delete_statement(s.dataset_provenance.c.output_id, replace_ids))
    else:
        for chunk in chunks(replace_ids):
            batch.conn.execute(
                sa.delete(s.dataset_provenance).where(s.dataset_provenance.c.output_id.in_(chunk))
            )
    # provenance of datasets new in this batch is new too; of others, rows may exist already
    batch.write_columns(s.dataset_provenance, new_prov, ["output_id", "input_id"], new=True)
    batch.write_columns(s.dataset_provenance, old_prov, ["output_id", "input_id"])
    _follow(primaries, followers)


def _by_id(inputs: list[ProvenanceInput]) -> list[ProvenanceInput]:
    """Inputs sorted by dataset id (two, the usual count, by one comparison)."""
    if len(inputs) == 2:
        a, b = inputs
        return inputs if a.dataset_id.int < b.dataset_id.int else [b, a]
    return sorted(inputs, key=lambda i: i.dataset_id.int) if len(inputs) > 2 else inputs


def _follow(primaries: dict[int, Item], followers: dict[int, list[Item]]) -> None:
    """Duplicates of a dataset within the batch get the outcome of its first item."""
    for key, items in followers.items():
        p = primaries[key]
        for it in items:
            it.status, it.reason, it.error = p.status, p.reason, p.error


def same_content(row: Any, m: DatasetMessage) -> bool:
    """Same file: equal URI, and size/checksum equal wherever both sides know them."""
    if row.uri != m.uri:
        return False
    if row.size is not None and m.size is not None and row.size != m.size:
        return False
    return not (row.sha256 is not None and m.sha256 is not None and row.sha256 != m.sha256)
