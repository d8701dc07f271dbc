"""The isrflow registry: datasets, collections, dimensions, data queries, calibration
validity, provenance, processing records and the batched writer.

Submodules:

- dataset types, data ids and dataset ids are :mod:`isrflow.model.ids`'s, the result models
  (DatasetRef, Quantum, QuantumPlan, ...) :mod:`isrflow.model.datasets`'s and the datastore URI
  template :mod:`isrflow.io.datastore`'s: workers use them without the registry. The names are
  re-exported here, lazily.
- :mod:`.query` the ``--where`` language
- :mod:`.schema`, :mod:`.engine`, :mod:`.migrate` tables, engines/locks, Alembic migrations
- :mod:`.columns` the columns a ``--where`` query names; :mod:`.search_path` CHAINED collections
  flattened (both shared by :mod:`.core` and :mod:`.quanta`)
- :mod:`.core` the :class:`Registry`
- :mod:`.writer` ``apply_batch`` (the SQS registry writer's logic; a package, one module per
  concern); :mod:`.dataset_row` the dataset row it inserts and :mod:`.limits` checks
- :mod:`.quanta` ``find_quanta`` (planning)
- :mod:`.ingest` raw ingest; :mod:`.repo` repository directories (``open_repo``)

Names are imported lazily, so ``from isrflow.registry import dataset_id`` does not load
SQLAlchemy, and nothing here loads numpy or astropy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    ".core": ("Registry",),
    ".columns": ("query_columns",),
    ".writer": ("BatchItem", "BatchResult", "apply_batch", "apply_messages"),
    ".quanta": ("find_quanta", "OUTPUT_MODES"),
    ".ingest": ("ingest", "IngestResult", "TRANSFERS"),
    ".repo": ("create_repo", "open_repo", "read_repo_config", "RepoConfig", "REPO_CONFIG"),
    "isrflow.model.ids": (
        "dataset_id",
        "normalize_data_id",
        "DATASET_TYPES",
        "CALIBRATION_TYPES",
        "DATASET_NAMESPACE",
        "raw_collection",
        "calib_collection",
        "canonical_json",
    ),
    "isrflow.io.datastore": ("dataset_uri", "normalize_root", "uri_to_path", "path_to_uri"),
    ".query": ("parse_query", "compile_where", "FIELDS"),
    "isrflow.model.datasets": (
        "DatasetRef",
        "CertifiedRef",
        "Validity",
        "Quantum",
        "QuantumPlan",
        "QuantumProblem",
        "AppliedStatus",
        "RejectedRecord",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
