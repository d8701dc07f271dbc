"""Dataset types, data ids, collection names and dataset ids.

Pure Python (no SQLAlchemy, numpy or astropy), so workers and the plan Lambda can compute ids
and validate data ids cheaply.

A dataset id is ``UUID5(DATASET_NAMESPACE, canonical JSON of {"type", "run", "data_id"})``
with sorted keys and compact separators, so the same dataset gets the same id in every
process, on every machine, in every language that follows the same recipe.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from isrflow.model.errors import CollectionError, DataIdError

#: Fixed project namespace for dataset ids. Never change it: every stored id depends on it.
DATASET_NAMESPACE = uuid.UUID("9ed22e66-ebcd-410e-8586-52fb72202ddb")

_EXPOSURE_KEYS = ("instrument", "exposure", "detector")
_DETECTOR_KEYS = ("instrument", "detector")

#: Dataset type -> the keys of its data id.
DATASET_TYPES: dict[str, tuple[str, ...]] = {
    "raw": _EXPOSURE_KEYS,
    "postISRCCD": _EXPOSURE_KEYS,
    "cpBiasProc": _EXPOSURE_KEYS,
    "cpDarkProc": _EXPOSURE_KEYS,
    "cpFlatProc": _EXPOSURE_KEYS,
    "bias": _DETECTOR_KEYS,
    "dark": _DETECTOR_KEYS,
    "defects": _DETECTOR_KEYS,
    "flat": ("instrument", "detector", "physical_filter"),
}

#: Dataset types that can be certified into a CALIBRATION collection.
CALIBRATION_TYPES = frozenset({"bias", "dark", "flat", "defects"})

#: Value type of every data id key.
DATA_ID_KEY_TYPES: dict[str, type] = {
    "instrument": str,
    "exposure": int,
    "detector": int,
    "physical_filter": str,
}

COLLECTION_TYPES = ("RUN", "CALIBRATION", "CHAINED")

_COLLECTION_RE = re.compile(r"[A-Za-z0-9_.+:@-]+(/[A-Za-z0-9_.+:@-]+)*")


def raw_collection(instrument: str) -> str:
    """The default RUN collection raws are ingested into: ``<INSTRUMENT>/raw/all``."""
    return f"{instrument}/raw/all"


def calib_collection(instrument: str) -> str:
    """The default CALIBRATION collection calibrations are certified into: ``<INSTRUMENT>/calib``."""
    return f"{instrument}/calib"


def check_collection_name(name: str) -> str:
    """Return ``name`` if it is a valid collection name, else raise CollectionError.

    Names are '/'-separated words of letters, digits and ``_ . + : @ -``; no empty, ``.`` or
    ``..`` components (a RUN name is also a datastore path prefix).
    """
    if not isinstance(name, str) or not _COLLECTION_RE.fullmatch(name) or len(name) > 256:
        raise CollectionError(
            f"invalid collection name {name!r}: use words of letters, digits, _.+:@- separated by '/'"
        )
    if any(part in (".", "..") for part in name.split("/")):
        raise CollectionError(f"invalid collection name {name!r}: '.' and '..' components are not allowed")
    return name


def check_dataset_type(dataset_type: str) -> str:
    if dataset_type not in DATASET_TYPES:
        raise DataIdError(f"unknown dataset type {dataset_type!r}; known: {', '.join(DATASET_TYPES)}")
    return dataset_type


def _value(dataset_type: str, key: str, value: Any) -> Any:
    want = DATA_ID_KEY_TYPES[key]
    if type(value) is want:
        if want is str and value == "":
            raise DataIdError(f"{dataset_type} data id: {key} must be a non-empty string")
        return value
    if want is int:
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise DataIdError(f"{dataset_type} data id: {key} must be an integer, got {value!r}")
        return int(value.__index__())
    if not isinstance(value, str) or value == "":
        raise DataIdError(f"{dataset_type} data id: {key} must be a non-empty string, got {value!r}")
    return str(value)


def normalize_data_id(dataset_type: str, data_id: Mapping[str, Any]) -> dict[str, Any]:
    """Check a data id against its dataset type; return it with exactly the type's keys, typed.

    Raises DataIdError for an unknown dataset type, a missing or extra key, or a wrong value type.
    """
    keys = DATASET_TYPES.get(dataset_type)
    if keys is None:
        check_dataset_type(dataset_type)
    assert keys is not None
    if type(data_id) is dict and len(data_id) == len(keys):
        # The common case (every message the writer parses): exactly the keys, with values of
        # exactly their types. It gives what the checks below give; anything else takes them,
        # and they say what is wrong.
        fast = {k: data_id.get(k) for k in keys}
        if all(type(v) is DATA_ID_KEY_TYPES[k] and v != "" for k, v in fast.items()):
            return fast
    return _checked_data_id(dataset_type, keys, data_id)


def _checked_data_id(dataset_type: str, keys: tuple[str, ...], data_id: Any) -> dict[str, Any]:
    if not isinstance(data_id, Mapping):
        raise DataIdError(f"{dataset_type} data id must be a mapping, got {type(data_id).__name__}")
    missing = [k for k in keys if k not in data_id]
    extra = sorted(set(data_id) - set(keys))
    if missing or extra:
        raise DataIdError(
            f"{dataset_type} data id needs exactly {{{', '.join(keys)}}}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(extra)}" if extra else "")
        )
    return {k: _value(dataset_type, k, data_id[k]) for k in keys}


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no spaces, non-ASCII kept: the form ids and stored data ids are made from."""
    return _CANONICAL.encode(value)


def dataset_id(dataset_type: str, run: str, data_id: Mapping[str, Any]) -> uuid.UUID:
    """The dataset id: UUID5 over the canonical JSON of {type, run, data_id} (data id normalised first)."""
    return dataset_id_normalized(dataset_type, run, normalize_data_id(dataset_type, data_id))


def dataset_id_normalized(dataset_type: str, run: str, data_id: Mapping[str, Any]) -> uuid.UUID:
    """:func:`dataset_id` for a data id that already went through :func:`normalize_data_id`."""
    return dataset_id_from_json(dataset_type, run, canonical_json(data_id))


#: SHA-1 state after the UUID5 namespace (a UUID5 hashes the namespace's bytes, then the name).
_NAMESPACE_SHA1 = hashlib.sha1(DATASET_NAMESPACE.bytes, usedforsecurity=False)


def dataset_id_from_json(dataset_type: str, run: str, data_id_json: str) -> uuid.UUID:
    """:func:`dataset_id_normalized` from the normalised data id's canonical JSON.

    The UUID5 name is the canonical JSON of ``{"data_id", "run", "type"}`` (keys sorted, so in
    that order): assembled around ``data_id_json`` rather than encoding the data id again, and
    hashed from the namespace's precomputed SHA-1 state. Equal to ``uuid.uuid5(DATASET_NAMESPACE,
    canonical_json({...}))`` (a test keeps them equal)."""
    name = (
        '{"data_id":'
        + data_id_json
        + ',"run":'
        + canonical_json(run)
        + ',"type":'
        + canonical_json(dataset_type)
        + "}"
    )
    digest = _NAMESPACE_SHA1.copy()
    digest.update(name.encode("utf-8"))
    return uuid.UUID(bytes=digest.digest()[:16], version=5)
