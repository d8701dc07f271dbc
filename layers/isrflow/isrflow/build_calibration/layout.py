"""Where a BuildCalibration execution keeps its manifests, requests and results in the datastore.

Under the datastore root, for execution key ``K`` (see :func:`isrflow.process_visit.layout.execution_key`):

- ``manifests/K/clusters.json``: the ISR clusters (the ISR Map's ItemReader);
- ``manifests/K/groups.json``: the masters to build and their planned inputs;
- ``manifests/K/flat_scales.json``: Normalize's exposure scales (flats);
- ``manifests/K/combine/<master>.json``: one combine request per master;
- ``manifests/K/combine.json``: the combine items (the combine Map's ItemReader);
- ``results/K/isr/cluster-<cluster id>.json``, ``results/K/isr/plan.json``: the inputs' ISR results,
  one file per cluster (:mod:`isrflow.process_visit.results`);
- ``results/K/masters/<master>.json``: each master's result;
- ``results/K/certified.json``: what Certify sent.

Pure Python.
"""

from __future__ import annotations

import re

from isrflow.io.storage import join
from isrflow.process_visit.layout import execution_key, manifest_uri  # noqa: F401  (re-exported)

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def master_key(instrument: str, detector: int, physical_filter: str | None = None) -> str:
    key = f"{instrument}-{detector}"
    if physical_filter:
        key += "-" + physical_filter
    return _UNSAFE.sub("_", key)


def groups_uri(root: str, key: str) -> str:
    return join(root, "manifests", key, "groups.json")


def scales_uri(root: str, key: str) -> str:
    return join(root, "manifests", key, "flat_scales.json")


def requests_prefix(root: str, key: str) -> str:
    return join(root, "manifests", key, "combine") + "/"


def combine_manifest_uri(root: str, key: str) -> str:
    return join(root, "manifests", key, "combine.json")


def isr_results_prefix(root: str, key: str) -> str:
    return join(root, "results", key, "isr") + "/"


def master_results_prefix(root: str, key: str) -> str:
    return join(root, "results", key, "masters") + "/"


def certified_uri(master_results_prefix_uri: str) -> str:
    return master_results_prefix_uri.rstrip("/").rsplit("/", 1)[0] + "/certified.json"


def root_of(prefix_uri: str) -> str:
    """The datastore root of a ``.../results/K/<name>/`` or ``.../manifests/K/...`` URI."""
    text = prefix_uri.rstrip("/")
    for marker in ("/results/", "/manifests/"):
        if marker in text:
            return text.rsplit(marker, 1)[0]
    raise ValueError(f"{prefix_uri!r} is not under a results/ or manifests/ prefix")
