"""Where an execution keeps its manifest and results in the datastore."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ..storage import join

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def execution_key(execution_id: str) -> str:
    """A path-safe key for an execution: state machine name + execution name from an ARN."""
    parts = execution_id.split(":")
    tail = "-".join(parts[-2:]) if len(parts) >= 2 and execution_id.startswith("arn:") else execution_id
    return _UNSAFE.sub("_", tail)[:200]


def manifest_uri(root: str, key: str) -> str:
    return join(root, "manifests", key, "clusters.json")


def results_prefix(root: str, key: str) -> str:
    return join(root, "results", key) + "/"


def result_uri(prefix: str, instrument: str, exposure: int, detector: int) -> str:
    return f"{prefix}{instrument}_{exposure}_{detector}.json"


def bucket_key(uri: str, root: str) -> str:
    """The object key an ItemReader uses: the S3 key, or the path below a file:// root."""
    if uri.startswith("s3://"):
        return urlsplit(uri).path.lstrip("/")
    return uri[len(root.rstrip("/")) + 1:]
