"""Calibrations read once per warm worker: a bounded cache in memory and on local disk.

A ProcessVisit or BuildCalibration ISR worker needs the bias, dark, flat and defects of its
detector for every quantum. Read from the datastore each time, that is most of the worker's
S3 traffic. :class:`CalibrationCache` is the one place where a worker reads a registered
calibration, checks it against the registry's sha256 and decodes it, with two tiers in front
of the datastore:

- **memory**: decoded calibrations (their numpy arrays, made read-only; a master's mask only when
  it holds BAD pixels, the only mask bits ISR uses), least recently used
  evicted first once their bytes pass ``ISRFLOW_CALIB_CACHE_MEMORY_BYTES`` (on Lambda at most a
  quarter of the function's memory);
- **disk**: the verified file bytes under ``ISRFLOW_CALIB_CACHE_DIR`` (on Lambda a directory
  in ``/tmp``, which lives as long as the warm execution environment; locally one directory
  under the repository shared by every process of the pool), least recently used evicted
  first once their bytes pass ``ISRFLOW_CALIB_CACHE_BYTES``.

Without those variables a tier is off (the budget is 0 and no directory is used), so a bare
handler call behaves as before: one verified datastore read per calibration per cluster.

Keys are (dataset id, registered sha256): a recertified calibration (a new dataset, or new
content with a new checksum) is a new key and can never be answered with an older copy. A
calibration registered without a checksum is read and used, never cached.

The sha256 is verified once per cached copy, when the copy enters a tier: bytes read from
the datastore before they are decoded and written to disk; bytes read back from disk before
they are decoded into memory (a disk copy that no longer matches is deleted and the datastore
read instead; it is never used). A memory hit costs no hashing at all.

Several processes may share one directory: a copy is written under a unique temporary name
and renamed into place, and eviction runs under an advisory lock on ``.lock`` in the
directory. A reader that loses a file to another process's eviction reads the datastore.
For a ``file://`` datastore on the same file system the disk copy is a hard link to the
(immutable) registered file, so a local repository does not store its calibrations twice.

Units: every size and budget is in bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from isrflow.io.filemode import honour_umask
from isrflow.io.storage import storage_for
from isrflow.model.errors import ChecksumMismatchError, ConfigError

if TYPE_CHECKING:
    from isrflow.isr.pipeline import CalibrationInput
    from isrflow.model.datasets import DatasetRef

#: Directory of the disk tier (unset or empty: no disk tier).
ENV_CACHE_DIR = "ISRFLOW_CALIB_CACHE_DIR"
#: Disk tier budget, bytes (template: the ISR function's EphemeralStorage less headroom).
ENV_CACHE_BYTES = "ISRFLOW_CALIB_CACHE_BYTES"
#: Memory tier budget, bytes of decoded arrays (unset: 0, no memory tier across clusters); on
#: Lambda at most a quarter of the function's memory, whatever the variable says.
ENV_MEMORY_BYTES = "ISRFLOW_CALIB_CACHE_MEMORY_BYTES"
#: Set by Lambda: the function's memory, MB.
ENV_LAMBDA_MEMORY_MB = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"

#: Temporary files older than this (s) are left-overs of a killed writer and are removed.
STALE_TEMP_S = 900.0
_SUFFIX = ".calib"
_TEMP_PREFIX = ".tmp-"

Source = Literal["memory", "disk", "datastore"]
Key = tuple[str, str]

logger = logging.getLogger("isrflow.io.calib_cache")


@dataclass(frozen=True)
class Fetched:
    """One calibration as the cache served it: the decoded calibration, the tier that answered
    and the bytes this lookup read from the datastore (0 unless ``source == "datastore"``)."""

    item: CalibrationInput
    source: Source
    datastore_bytes: int = 0


@dataclass
class CacheCounters:
    """Cumulative counts of one cache (the process's, for a warm worker: since it started)."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    datastore_bytes: int = 0
    corrupt_copies: int = 0
    memory_evictions: int = 0
    disk_evictions: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CacheConfig:
    """Budgets in bytes; ``directory`` None turns the disk tier off."""

    directory: Path | None = None
    disk_bytes: int = 0
    memory_bytes: int = 0

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> CacheConfig:
        env = os.environ if environ is None else environ
        directory = env.get(ENV_CACHE_DIR) or None
        memory = _bytes(env, ENV_MEMORY_BYTES)
        function_mb = (env.get(ENV_LAMBDA_MEMORY_MB) or "").strip()
        if function_mb.isdigit():  # on Lambda: never more than a quarter of the function's memory
            memory = min(memory, int(function_mb) * 2**20 // 4)
        return cls(
            directory=Path(directory) if directory else None,
            disk_bytes=_bytes(env, ENV_CACHE_BYTES),
            memory_bytes=memory,
        )


def _bytes(env, name: str) -> int:
    text = (env.get(name) or "0").strip()
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number of bytes") from None
    if value < 0:
        raise ConfigError(f"{name}={value} is negative")
    return value


# --------------------------------------------------------------------------- memory tier


@dataclass
class _Entry:
    item: CalibrationInput
    nbytes: int


class MemoryTier:
    """Decoded calibrations, least recently used first out, within ``budget`` bytes."""

    def __init__(self, budget: int):
        self.budget = budget
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0

    @property
    def used(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def keys(self) -> list[Key]:
        with self._lock:
            return list(self._entries)

    def get(self, key: Key) -> CalibrationInput | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry.item

    def put(self, key: Key, item: CalibrationInput, nbytes: int) -> None:
        if nbytes > self.budget:
            return
        with self._lock:
            self._entries.pop(key, None)
            self._evict(self.budget - nbytes)
            self._entries[key] = _Entry(item, nbytes)

    def _evict(self, limit: int) -> None:
        used = sum(e.nbytes for e in self._entries.values())
        while self._entries and used > max(0, limit):
            _, entry = self._entries.popitem(last=False)
            used -= entry.nbytes
            self.evictions += 1


# --------------------------------------------------------------------------- disk tier


class DiskTier:
    """Verified calibration files in one directory, least recently used (file mtime, touched on
    every hit) first out, within ``budget`` bytes; safe with several processes sharing it."""

    def __init__(self, directory: Path, budget: int, clock: Callable[[], float] = time.time):
        self.directory = Path(directory)
        self.budget = budget
        self.clock = clock
        self.evictions = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"{ENV_CACHE_DIR}={self.directory}: cannot create the cache directory ({exc.strerror})"
            ) from None

    def path(self, key: Key) -> Path:
        dataset_id, sha256 = key
        return self.directory / f"{dataset_id}-{sha256}{_SUFFIX}"

    def read(self, key: Key) -> bytes | None:
        """The cached bytes (not yet verified), or None; a hit becomes the most recently used."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("calibration cache: %s unreadable (%s), reading the datastore", path, exc.strerror)
            return None
        now = self.clock()
        with contextlib.suppress(
            OSError
        ):  # evicted meanwhile by another process: the bytes read are still whole
            os.utime(path, (now, now))
        return data

    def discard(self, key: Key) -> None:
        self.path(key).unlink(missing_ok=True)

    def entries(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every cached file, oldest first."""
        out = []
        for entry in os.scandir(self.directory):
            if entry.name.endswith(_SUFFIX) and not entry.name.startswith("."):
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                out.append((st.st_mtime, st.st_size, Path(entry.path)))
        return sorted(out)

    @property
    def used(self) -> int:
        return sum(size for _, size, _ in self.entries())

    def store(self, key: Key, data: bytes, link_from: Path | None = None) -> bool:
        """Put verified ``data`` in place (a hard link to ``link_from`` when possible); False when
        it cannot fit the budget or the disk refuses it (the cache is an optimisation: never fatal)."""
        size = len(data)
        if size > self.budget:
            return False
        target = self.path(key)
        temp = self.directory / f"{_TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
        try:
            with self._locked():
                self._evict(size, keep=target)
                self._write(temp, data, link_from)
                now = self.clock()
                os.utime(temp, (now, now))
                os.replace(temp, target)
            return True
        except OSError as exc:
            temp.unlink(missing_ok=True)
            logger.warning("calibration cache: %s not stored (%s)", target.name, exc.strerror)
            return False

    @staticmethod
    def _write(temp: Path, data: bytes, link_from: Path | None) -> None:
        if link_from is not None:
            try:
                os.link(link_from, temp)
                if temp.stat().st_size == len(data):
                    return
                temp.unlink()  # the source changed since it was read: store the verified bytes instead
            except OSError:
                pass  # another file system, or links not allowed: copy
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        honour_umask(fd)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    def _evict(self, incoming: int, keep: Path) -> None:
        """Remove least recently used files until ``incoming`` more bytes fit; stale temporaries too."""
        now = self.clock()
        for entry in os.scandir(self.directory):
            if entry.name.startswith(_TEMP_PREFIX):
                try:
                    if now - entry.stat().st_mtime > STALE_TEMP_S:
                        os.unlink(entry.path)
                except FileNotFoundError:
                    pass
        entries = [e for e in self.entries() if e[2] != keep]
        used = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if used + incoming <= self.budget:
                break
            path.unlink(missing_ok=True)
            used -= size
            self.evictions += 1

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


# --------------------------------------------------------------------------- the cache


def _decoded_size(item: CalibrationInput, file_bytes: int) -> int:
    exposure = item.exposure
    if exposure is None:
        return file_bytes
    return sum(a.nbytes for a in (exposure.image, exposure.mask, exposure.variance) if a is not None)


def _slim(item: CalibrationInput) -> None:
    """Keep of the mask only what ISR uses: its BAD pixels (ORed into each output's mask). A
    master whose mask has none (the usual case) drops the plane: 4 bytes a pixel less in memory
    (65 MB of an LSSTCam detector's master), the same ISR output."""
    import numpy as np  # not at import time: this module is also imported where numpy is not

    from isrflow.io import formats

    exposure = item.exposure
    if (
        exposure is not None
        and exposure.mask is not None
        and not np.bitwise_and(exposure.mask, formats.BAD).any()
    ):
        exposure.mask = None


def _freeze(item: CalibrationInput) -> None:
    """Shared between quanta (and clusters): make the arrays read-only so no step can alter them."""
    exposure = item.exposure
    if exposure is not None:
        for array in (exposure.image, exposure.mask, exposure.variance):
            if array is not None:
                array.flags.writeable = False


def _local_file(uri: str) -> Path | None:
    if uri.startswith("s3://"):
        return None
    from isrflow.io.datastore import uri_to_path

    return uri_to_path(uri) if uri.startswith("file://") else Path(uri)


@dataclass
class CalibrationCache:
    """Read, verify and decode registered calibrations, through the memory and disk tiers."""

    config: CacheConfig = field(default_factory=CacheConfig)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.memory = MemoryTier(self.config.memory_bytes)
        self.disk: DiskTier | None = None
        if self.config.directory is not None and self.config.disk_bytes > 0:
            try:
                self.disk = DiskTier(self.config.directory, self.config.disk_bytes, self.clock)
            except ConfigError as exc:  # an optimisation: without its directory, read the datastore
                logger.warning("calibration cache: no disk tier: %s", exc)
        self.counters = CacheCounters()
        self._count_lock = threading.Lock()
        self._key_locks = [threading.Lock() for _ in range(32)]

    def get(self, kind: str, ref: DatasetRef) -> Fetched:
        """The calibration of ``kind`` (bias, dark, flat, defects) registered as ``ref``.

        Raises ChecksumMismatchError when the datastore's bytes no longer match the registered
        sha256, and the reader's errors (CalibrationError, StorageError) as a direct read would."""
        if not ref.sha256:  # no registered checksum: nothing to key a copy on safely
            data = self._read_datastore(ref)
            return self._count(Fetched(self._decode(kind, data, ref, None), "datastore", len(data)))
        key: Key = (str(ref.id), ref.sha256)
        with self._key_locks[hash(key) % len(self._key_locks)]:  # one reader per key in this process
            item = self.memory.get(key)
            if item is not None:
                return self._count(Fetched(item, "memory"))
            item = self._from_disk(kind, ref, key)
            if item is not None:
                return self._count(Fetched(item, "disk"))
            data = self._read_datastore(ref)
            item = self._decode(kind, data, ref, ref.sha256)  # verifies: ChecksumMismatchError propagates
            if self.disk is not None:
                self.disk.store(key, data, link_from=_local_file(ref.uri))
            self.memory.put(key, item, _decoded_size(item, len(data)))
            return self._count(Fetched(item, "datastore", len(data)))

    def _from_disk(self, kind: str, ref: DatasetRef, key: Key) -> CalibrationInput | None:
        if self.disk is None:
            return None
        data = self.disk.read(key)
        if data is None:
            return None
        try:
            item = self._decode(kind, data, ref, ref.sha256)
        except ChecksumMismatchError:
            self.disk.discard(key)
            with self._count_lock:
                self.counters.corrupt_copies += 1
            logger.warning(
                "calibration cache: the cached copy of %s no longer matches its sha256; "
                "deleted, reading the datastore",
                ref.uri,
            )
            return None
        self.memory.put(key, item, _decoded_size(item, len(data)))
        return item

    @staticmethod
    def _read_datastore(ref: DatasetRef) -> bytes:
        return storage_for(ref.uri).read_bytes(ref.uri)

    @staticmethod
    def _decode(kind: str, data: bytes, ref: DatasetRef, sha256: str | None) -> CalibrationInput:
        from isrflow.isr.pipeline import calibration_from_bytes

        item = calibration_from_bytes(kind, data, ref.uri, expected_sha256=sha256)
        _slim(item)
        _freeze(item)
        return item

    def _count(self, fetched: Fetched) -> Fetched:
        with self._count_lock:
            c = self.counters
            if fetched.source == "memory":
                c.memory_hits += 1
            elif fetched.source == "disk":
                c.disk_hits += 1
            else:
                c.misses += 1
                c.datastore_bytes += fetched.datastore_bytes
            c.memory_evictions = self.memory.evictions
            c.disk_evictions = self.disk.evictions if self.disk is not None else 0
        return fetched


_CACHE: CalibrationCache | None = None
_CACHE_LOCK = threading.Lock()


def calibration_cache() -> CalibrationCache:
    """This process's cache, configured from the environment; made again when the environment's
    configuration changes (the local pool runs several functions in one process)."""
    global _CACHE
    config = CacheConfig.from_env()
    with _CACHE_LOCK:
        if _CACHE is None or _CACHE.config != config:
            _CACHE = CalibrationCache(config)
        return _CACHE


__all__ = [
    "ENV_CACHE_BYTES",
    "ENV_CACHE_DIR",
    "ENV_MEMORY_BYTES",
    "CacheConfig",
    "CacheCounters",
    "CalibrationCache",
    "DiskTier",
    "Fetched",
    "MemoryTier",
    "calibration_cache",
]
