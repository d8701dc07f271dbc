"""Where an execution keeps its manifest and results in the datastore."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

from isrflow.io.storage import join

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def path_safe(text: str) -> str:
    """``text`` with every character but letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``:
    one path component, whatever an instrument or execution name holds."""
    return _UNSAFE.sub("_", text)


def execution_key(execution_id: str) -> str:
    """A path-safe key for an execution: state machine name + execution name from an ARN."""
    parts = execution_id.split(":")
    tail = "-".join(parts[-2:]) if len(parts) >= 2 and execution_id.startswith("arn:") else execution_id
    return path_safe(tail)[:200]


def execution_token(execution_id: str) -> str:
    """12 hex digits identifying an execution (a hash of its id), short enough for a file name."""
    return hashlib.sha256(execution_id.encode()).hexdigest()[:12]


def unique_output_uri(uri: str, execution_id: str) -> str:
    """The output URI an execution writes: the datastore's URI with the execution's token before
    the extension (``..._50.fits`` -> ``..._50.<token>.fits``).

    So no execution ever overwrites a file another one wrote: two executions into one output
    run (or a ``replace`` rerun) write different files, and the registry row that wins points
    at the file whose checksum it holds. Idempotent: a URI already carrying the token is kept.
    """
    token = execution_token(execution_id)
    head, slash, name = uri.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    if stem.endswith("." + token):
        return uri
    return f"{head}{slash}{stem}.{token}{dot}{ext}"


def manifest_uri(root: str, key: str) -> str:
    return join(root, "manifests", key, "clusters.json")


def results_prefix(root: str, key: str) -> str:
    return join(root, "results", key) + "/"


def bucket_key(uri: str, root: str) -> str:
    """The object key an ItemReader uses: the S3 key, or the path below a file:// root."""
    if uri.startswith("s3://"):
        return urlsplit(uri).path.lstrip("/")
    return uri[len(root.rstrip("/")) + 1 :]
