"""``isrflow registry verify``: every registered dataset's file is there and holds what the registry says.

Checks, for the datasets of the given collections (default: every RUN):

- **missing**: no file at the dataset's URI;
- **mismatched**: the file's size or sha256 differs from the registered ones;
- **shared**: two datasets point at one file (a later write would change both);

and, on a file datastore, scanning the whole datastore root:

- **unregistered**: FITS files (``*.fits``, ``*.fits.fz``) no dataset points at (a run killed
  between writing and registering, say; ``isrflow rerun --failed`` of a killed execution removes
  its own);
- **temporary**: files left under a temporary name by an interrupted atomic write (``.*.tmp``).

Missing, mismatched and shared are integrity errors; unregistered and temporary files are waste
(``strict`` counts them as errors too). Checksums are computed in 1 MiB blocks (sha256 of the
whole file; sizes in bytes).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from isrflow.io.datastore import normalize_root, uri_to_path
from isrflow.io.storage import ObjectNotFoundError, StorageError, storage_for
from isrflow.model.datasets import DatasetRef
from isrflow.registry.ingest import file_digest

DATA_SUFFIXES = (".fits", ".fits.fz")


@dataclass
class Problem:
    """One finding: what kind, the dataset (if any) and the file."""

    kind: str  # missing | mismatched | shared | unreadable | unregistered | temporary
    uri: str
    detail: str = ""
    dataset: DatasetRef | None = None

    def line(self) -> str:
        who = ""
        if self.dataset is not None:
            data_id = " ".join(f"{k}={v}" for k, v in sorted(self.dataset.data_id.items()))
            who = f"{self.dataset.dataset_type} {self.dataset.run} {data_id}: "
        return f"{self.kind}: {who}{self.uri}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class VerifyReport:
    checked: int = 0
    bytes_read: int = 0
    problems: list[Problem] = field(default_factory=list)

    def of(self, kind: str) -> list[Problem]:
        return [p for p in self.problems if p.kind == kind]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("missing", "mismatched", "shared", "unreadable", "unregistered", "temporary"), 0)
        for p in self.problems:
            out[p.kind] += 1
        return out

    def ok(self, strict: bool = False) -> bool:
        bad = {"missing", "mismatched", "shared", "unreadable"} | (
            {"unregistered", "temporary"} if strict else set()
        )
        return not any(p.kind in bad for p in self.problems)


def object_digest(uri: str) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of the object at ``uri``; ObjectNotFoundError if there is none."""
    if uri.startswith("file://") or "://" not in uri:
        path = uri_to_path(uri) if uri.startswith("file://") else Path(uri)
        try:
            return file_digest(path)
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{uri}: no such object") from None
        except OSError as exc:
            raise StorageError(f"{uri}: cannot read ({exc.strerror})") from None
    data = storage_for(uri).read_bytes(uri)
    return len(data), hashlib.sha256(data).hexdigest()


def _check(ref: DatasetRef, report: VerifyReport) -> None:
    try:
        size, sha = object_digest(ref.uri)
    except ObjectNotFoundError:
        report.problems.append(Problem("missing", ref.uri, "no file", ref))
        return
    except StorageError as exc:
        report.problems.append(Problem("unreadable", ref.uri, str(exc), ref))
        return
    report.bytes_read += size
    if ref.size is not None and size != ref.size:
        report.problems.append(
            Problem("mismatched", ref.uri, f"size {size} bytes, registered {ref.size}", ref)
        )
    elif ref.sha256 is not None and sha != ref.sha256:
        report.problems.append(
            Problem("mismatched", ref.uri, f"sha256 {sha[:12]}..., registered {ref.sha256[:12]}...", ref)
        )


def _scan(root: str, registered: set[str], report: VerifyReport) -> None:
    """Unregistered data files and temporary files under a file datastore root."""
    if not root.startswith("file://"):
        return
    base = uri_to_path(root)
    if not base.is_dir():
        return
    for path in sorted(base.rglob("*")):
        if not path.is_file():
            continue
        name = path.name
        if name.startswith(".") and name.endswith(".tmp"):
            report.problems.append(Problem("temporary", path.as_uri(), "left by an interrupted write"))
        elif name.endswith(DATA_SUFFIXES) and not name.startswith(".") and path.as_uri() not in registered:
            report.problems.append(Problem("unregistered", path.as_uri(), "no dataset points at it"))


def verify_registry(
    registry,
    collections: Sequence[str] | None = None,
    where: str | None = None,
    *,
    dataset_type: str | None = None,
    scan: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Check every selected dataset's file (see the module docstring). ``scan``: also look for
    unregistered and temporary files under the datastore root (only when every RUN is checked,
    i.e. no ``collections``, ``where`` or ``dataset_type``)."""
    refs = registry.query_datasets(dataset_type, list(collections) if collections else None, where)
    unique: dict[str, DatasetRef] = {}
    by_uri: dict[str, set[str]] = defaultdict(set)
    for ref in refs:  # a certified calibration appears once per validity range: check its file once
        unique.setdefault(str(ref.id), ref)
        by_uri[ref.uri].add(str(ref.id))
    report = VerifyReport()
    for i, ref in enumerate(unique.values(), 1):
        _check(ref, report)
        report.checked += 1
        if progress is not None:
            progress(i, len(unique))
    for uri, ids in sorted(by_uri.items()):
        if len(ids) > 1:
            report.problems.append(Problem("shared", uri, f"{len(ids)} datasets point at this file"))
    if scan and not collections and where is None and dataset_type is None:
        _scan(normalize_root(registry.datastore_root), set(by_uri), report)
    return report


__all__ = ["Problem", "VerifyReport", "object_digest", "verify_registry"]
