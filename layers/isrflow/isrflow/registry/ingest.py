"""Ingest raw files: read their headers, place them in the datastore, register them.

For each file: :func:`isrflow.io.rawio.read_observations` gives one observation per detector
(imported lazily: the registry itself never needs numpy/astropy). The file is staged beside
its target under a hidden temporary name, its instrument, detector, exposure and raw dataset
records are written in one transaction into ``<INSTRUMENT>/raw/all`` (or ``run``), and only
once that committed is the file renamed into place (and, for ``move``, the source removed); a
refused registration removes the staged file and leaves the source as it was. A file holding
several detectors (a DECam exposure) is stored once and every detector's dataset points at it.

One bad file never stops the others: it is listed in ``skipped`` with a one-line reason
(only an unreachable database, RegistryUnavailableError, ends the ingest). An invalid ``run``
is refused before any file is read.

Transfer modes: ``copy`` (default; atomic write via a temporary file), ``move``, ``link``
(symbolic link to the absolute source path) and ``direct`` (no transfer: the dataset URI is
the file itself). Ingest is idempotent: a file whose datasets are already registered with the
same checksum is reported as existing and not transferred again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from isrflow.io.datastore import dataset_uri, path_to_uri, uri_to_path
from isrflow.model.datasets import DatasetRef
from isrflow.model.errors import RegistryError, RegistryUnavailableError
from isrflow.model.ids import check_collection_name, dataset_id, normalize_data_id, raw_collection

if TYPE_CHECKING:
    from isrflow.registry.core import Registry

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


@dataclass
class _Staged:
    """A transfer prepared before the registry commit and finished after it.

    ``tmp`` is the new file (or link) beside ``dst`` under a hidden temporary name, or None when
    ``dst`` already holds the file. :meth:`publish` renames it into place and, for ``move``,
    removes the source; :meth:`discard` removes it. So nothing appears in the datastore and no
    source disappears unless the file's rows committed.
    """

    src: Path
    dst: Path
    mode: str
    tmp: Path | None
    created: list[Path] = field(default_factory=list)  # directories made for it, deepest first

    def publish(self) -> None:
        if self.tmp is not None:
            os.replace(self.tmp, self.dst)
        if self.mode == "move" and self.src.absolute() != self.dst.absolute():
            self.src.unlink(missing_ok=True)

    def discard(self) -> None:
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
        for directory in self.created:
            try:
                directory.rmdir()
            except OSError:  # not empty (another file arrived meanwhile): kept
                break


def _stage(src: Path, dst: Path, mode: str, size: int, sha: str) -> _Staged:
    """Prepare the transfer of ``src`` to ``dst`` (see :class:`_Staged`); the source is left in place."""
    if dst.exists() or dst.is_symlink():
        if mode == "link" and dst.is_symlink() and Path(os.readlink(dst)) == src.absolute():
            return _Staged(src, dst, mode, None)
        if dst.exists() and file_digest(dst) == (size, sha):
            return _Staged(src, dst, mode, None)
        raise RegistryError(f"{dst} already exists with different content")
    created = [p for p in (dst.parent, *dst.parent.parents) if not p.exists()]
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    staged = _Staged(src, dst, mode, tmp, created)
    try:
        if mode == "link":
            os.symlink(src.absolute(), tmp)
        elif mode == "move":
            try:
                os.link(src, tmp)  # same file system: the move is a rename after the commit
            except OSError:
                shutil.copyfile(src, tmp)
        else:
            shutil.copyfile(src, tmp)
    except BaseException:
        staged.discard()
        raise
    return staged


def _one_line(exc: BaseException) -> str:
    """A skipped file's reason on one line: ``Type: message`` (the typed isrflow error's class name first)."""
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


def ingest(
    registry: Registry,
    files: Iterable[str | Path],
    transfer: Transfer = "copy",
    *,
    run: str | None = None,
    camera: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> IngestResult:
    """Ingest raw files into a registry (see the module docstring).

    ``camera`` forces a camera (hsc, lsstcam, decam, generic) instead of detecting it from
    INSTRUME. Files that are not raws of a known camera, or conflict with what is registered,
    are listed in ``skipped``; nothing is raised for them. ``progress(done, total)`` is called
    after each file.
    """
    from isrflow.io.rawio import read_observations
    from isrflow.model.messages import DatasetMessage, dimension_records

    if transfer not in TRANSFERS:
        raise RegistryError(f"unknown transfer mode {transfer!r}; use one of {', '.join(TRANSFERS)}")
    if run is not None:
        check_collection_name(run)  # before any file is read or transferred
    result = IngestResult()
    files = list(files)
    for done, name in enumerate(files, 1):
        if progress is not None and done > 1:
            progress(done - 1, len(files))
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
            if all(r is not None and r.sha256 == sha and _present(r.uri) for r in refs):
                result.existing.extend(r for r in refs if r is not None)
                continue
            staged = None
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
            if transfer != "direct":
                staged = _stage(path, uri_to_path(uri), transfer, size, sha)
            try:
                registry.apply([*messages, *datasets])
            except BaseException:
                if staged is not None:
                    staged.discard()
                raise
            if staged is not None:
                staged.publish()
            result.ingested.extend(
                DatasetRef(
                    id=m.dataset_id,
                    dataset_type="raw",
                    run=target_run,
                    data_id=m.data_id,
                    uri=uri,
                    size=size,
                    sha256=sha,
                )
                for m in datasets
            )
        except RegistryUnavailableError:
            raise  # the database is down: every later file would fail the same way
        except Exception as exc:
            result.skipped.append((str(path), _one_line(exc)))
    if progress is not None and files:
        progress(len(files), len(files))
    return result


def _present(uri: str) -> bool:
    """Whether a registered dataset's file is there (always true for a non-local URI)."""
    return not uri.startswith("file://") or uri_to_path(uri).exists()
