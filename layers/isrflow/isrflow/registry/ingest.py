"""Ingest raw files: read their headers, place them in the datastore, register them.

For each file: :func:`isrflow.rawio.read_observations` gives one observation per detector
(imported lazily: the registry itself never needs numpy/astropy). The file is transferred
first, then its instrument, detector, exposure and raw dataset records are written in one
transaction into ``<INSTRUMENT>/raw/all`` (or ``run``). A file holding several detectors (a
DECam exposure) is stored once and every detector's dataset points at it.

Transfer modes: ``copy`` (default; atomic write via a temporary file), ``move``, ``link``
(symbolic link to the absolute source path) and ``direct`` (no transfer: the dataset URI is
the file itself). Ingest is idempotent: a file whose datasets are already registered with the
same checksum is reported as existing and not transferred again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import IsrflowError, RegistryError
from .datastore import dataset_uri, path_to_uri, uri_to_path
from .ids import dataset_id, normalize_data_id, raw_collection
from .models import DatasetRef

Transfer = Literal["copy", "move", "link", "direct"]
TRANSFERS = ("copy", "move", "link", "direct")


@dataclass
class IngestResult:
    """Datasets newly registered, already registered, and files skipped with the reason."""

    ingested: list[DatasetRef] = field(default_factory=list)
    existing: list[DatasetRef] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.skipped


def file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def _transfer(src: Path, dst: Path, mode: str, size: int, sha: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        if mode == "link" and dst.is_symlink() and Path(os.readlink(dst)) == src.absolute():
            return
        if dst.exists() and file_digest(dst) == (size, sha):
            if mode == "move" and src.absolute() != dst.absolute():
                src.unlink()
            return
        raise RegistryError(f"{dst} already exists with different content")
    if mode == "link":
        os.symlink(src.absolute(), dst)
        return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        if mode == "copy":
            shutil.copyfile(src, tmp)
        else:
            shutil.move(str(src), tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def ingest(
    registry,
    files: Iterable[str | Path],
    transfer: Transfer = "copy",
    *,  # type: ignore[no-untyped-def]
    run: str | None = None,
    camera: str | None = None,
) -> IngestResult:
    """Ingest raw files into a registry (see the module docstring).

    ``camera`` forces a camera (hsc, lsstcam, decam, generic) instead of detecting it from
    INSTRUME. Files that are not raws of a known camera, or conflict with what is registered,
    are listed in ``skipped``; nothing is raised for them.
    """
    from ..messages import DatasetMessage, dimension_records
    from ..rawio import read_observations

    if transfer not in TRANSFERS:
        raise RegistryError(f"unknown transfer mode {transfer!r}; use one of {', '.join(TRANSFERS)}")
    result = IngestResult()
    for name in files:
        path = Path(name)
        if not path.is_file():
            result.skipped.append((str(name), "no such file"))
            continue
        try:
            observations = read_observations(path, str(path), camera=camera)
            if not observations:
                raise RegistryError(f"{path}: holds no detectors")
            first = observations[0]
            if any((o.instrument, o.exposure) != (first.instrument, first.exposure) for o in observations):
                raise RegistryError(f"{path}: holds detectors of several exposures")
            target_run = run or raw_collection(first.instrument)
            data_ids = [normalize_data_id("raw", o.data_id) for o in observations]
            refs = [registry.get_dataset(dataset_id("raw", target_run, did)) for did in data_ids]
            size, sha = file_digest(path)
            if all(r is not None and r.sha256 == sha for r in refs):
                result.existing.extend(r for r in refs if r is not None)
                continue
            if transfer == "direct":
                uri = path_to_uri(path.absolute())
            else:
                if registry.datastore_root is None or not registry.datastore_root.startswith("file://"):
                    raise RegistryError(
                        f"transfer {transfer!r} needs a local file:// datastore "
                        f"(this one is {registry.datastore_root}); use --transfer direct"
                    )
                key = (
                    data_ids[0]
                    if len(observations) == 1
                    else {"instrument": first.instrument, "exposure": first.exposure}
                )
                uri = dataset_uri(registry.datastore_root, target_run, "raw", key)
                _transfer(path, uri_to_path(uri), transfer, size, sha)
            messages = []
            seen: set[str] = set()
            for obs in observations:
                for rec in dimension_records(obs, camera):
                    k = rec.model_dump_json(exclude={"message_id"})
                    if k not in seen:
                        seen.add(k)
                        messages.append(rec)
            datasets = [
                DatasetMessage(
                    dataset_type="raw", run=target_run, data_id=did, uri=uri, size=size, sha256=sha
                )
                for did in data_ids
            ]
            registry.apply(messages + datasets)
            result.ingested.extend(
                DatasetRef(
                    id=m.id,
                    dataset_type="raw",
                    run=target_run,
                    data_id=m.data_id,
                    uri=uri,
                    size=size,
                    sha256=sha,
                )
                for m in datasets
            )
        except IsrflowError as exc:
            result.skipped.append((str(path), str(exc)))
    return result
