"""Row strips of multi-extension FITS files, written without holding whole images.

:class:`MefWriter` lays out the primary header and every image extension up front in a
temporary file, takes row strips at their final offsets (``pwrite``), and on
:meth:`MefWriter.commit` publishes the file atomically. With compression (``compression=``,
default the configured mode of :mod:`isrflow.io.compression`) each plane's strips, written in row
order, are encoded as they come into a spool file of their own; ``commit`` assembles headers,
tile tables and spools into the temporary file. Either way the file is published atomically:
renamed into place for ``file://``, uploaded (multipart, streamed from disk) for ``s3://``.
Until then nothing is visible at the target; :meth:`MefWriter.abort` (or an exception inside
``with``) removes the temporary file. The layout is the isrflow calibration MEF
(:mod:`isrflow.io.formats`), so :func:`isrflow.io.exposure_io.read_exposure` and
:class:`isrflow.io.mef.MefReader` read the result. Sizes in bytes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from isrflow.io.datastore import uri_to_path
from isrflow.io.filemode import honour_umask
from isrflow.io.storage import split_s3, storage_for
from isrflow.io.tiled import PlaneEncoder, padded

#: Bytes hashed at a time when a written file is checksummed.
HASH_BLOCK = 1 << 18


@dataclass
class PlaneSpec:
    """One image extension to write: name, on-disk dtype (big-endian) and extra header cards."""

    name: str
    dtype: str  # ">f4", ">i4", ">i2"
    cards: list[tuple[str, Any, str]] = field(default_factory=list)


_BITPIX = {">f4": -32, ">i4": 32, ">i2": 16, ">f8": -64}


def temp_file(uri: str) -> tuple[int, Path]:
    """A new temporary file for an object to be published at ``uri``: next to the target for
    ``file://`` (so that publishing is an atomic rename), in the temporary directory for
    ``s3://``. Returns (open descriptor, path)."""
    if uri.startswith("s3://"):
        directory, name = Path(tempfile.gettempdir()), Path(split_s3(uri)[1]).name
    else:
        target = uri_to_path(uri) if uri.startswith("file://") else Path(uri)
        directory, name = target.parent, target.name
        directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    honour_umask(fd)  # mkstemp makes 0600 files; a published file gets what open() would give
    return fd, Path(tmp)


def publish(tmp: Path, uri: str) -> None:
    """Make the finished temporary file ``tmp`` the object at ``uri`` (rename, or a streamed
    multipart upload and removal of ``tmp``)."""
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        try:
            storage_for(uri).client.upload_file(str(tmp), bucket, key)  # type: ignore[attr-defined]
        finally:
            tmp.unlink(missing_ok=True)
    else:
        os.replace(tmp, uri_to_path(uri) if uri.startswith("file://") else Path(uri))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _primary_header(header: dict[str, Any]) -> bytes:
    primary = fits.Header()
    primary["SIMPLE"] = True
    primary["BITPIX"] = 8
    primary["NAXIS"] = 0
    primary["EXTEND"] = True
    for key, value in header.items():
        primary[key] = value
    return primary.tostring().encode("ascii")


class MefWriter:
    """Writes a MEF strip by strip; publishes it atomically on :meth:`commit`.

    ``header`` is the primary header (key -> value or (value, comment)); every plane has shape
    ``shape`` (rows, columns). ``compression``: a mode of :mod:`isrflow.io.compression` (default:
    the configured one); compressed planes must be written in row order.
    """

    def __init__(
        self,
        uri: str,
        header: dict[str, Any],
        shape: tuple[int, int],
        planes: list[PlaneSpec],
        compression: str | None = None,
    ):
        from isrflow.io.compression import codec_for, resolve

        self.uri = uri
        self.shape = shape
        mode = resolve(compression)
        fd, self._tmp = temp_file(uri)
        self._fd: int | None = fd
        self._offsets: dict[str, tuple[int, np.dtype]] = {}
        self._encoders: dict[str, PlaneEncoder] = {}
        self._spools: list[Any] = []
        try:
            if mode == "none":
                self._layout(fd, header, planes)
            else:
                self._primary = _primary_header(header)
                for plane in planes:
                    codec = codec_for(plane.dtype, mode, plane.name)
                    assert codec is not None, "a compression mode other than none has a codec for every plane"
                    spool = tempfile.TemporaryFile(dir=self._tmp.parent)  # noqa: SIM115 - closed in abort/commit
                    self._spools.append(spool)
                    self._encoders[plane.name] = PlaneEncoder(
                        plane.name,
                        np.dtype(plane.dtype),
                        shape,
                        codec,
                        spool,
                        plane.cards,
                    )
        except BaseException:
            self.abort()
            raise

    def _layout(self, fd: int, header: dict[str, Any], planes: list[PlaneSpec]) -> None:
        rows, cols = self.shape
        blobs = [_primary_header(header)]
        offset = len(blobs[0])
        for plane in planes:
            dtype = np.dtype(plane.dtype)
            ext = fits.Header()
            ext["XTENSION"] = "IMAGE"
            ext["BITPIX"] = _BITPIX[plane.dtype]
            ext["NAXIS"] = 2
            ext["NAXIS1"] = cols
            ext["NAXIS2"] = rows
            ext["PCOUNT"] = 0
            ext["GCOUNT"] = 1
            ext["EXTNAME"] = plane.name
            for key, value, comment in plane.cards:
                ext[key] = (value, comment)
            text = ext.tostring().encode("ascii")
            os.pwrite(fd, text, offset)
            offset += len(text)
            self._offsets[plane.name] = (offset, dtype)
            offset += padded(rows * cols * dtype.itemsize)
        os.pwrite(fd, blobs[0], 0)
        os.ftruncate(fd, offset)  # data blocks (and their padding) read as zeros until written
        self.size = offset

    def write_rows(self, name: str, y0: int, rows: np.ndarray) -> None:
        """Write ``rows`` (shape ``(k, columns)``) of plane ``name`` starting at row ``y0``."""
        if self._encoders:
            self._encoders[name].add_rows(y0, rows)
            return
        assert self._fd is not None, "already committed or aborted"
        offset, dtype = self._offsets[name]
        if rows.ndim != 2 or rows.shape[1] != self.shape[1] or y0 + rows.shape[0] > self.shape[0]:
            raise ValueError(f"rows {rows.shape} at {y0} do not fit {name} {self.shape}")
        data = np.ascontiguousarray(rows, dtype=dtype)  # the big-endian copy (no second copy below)
        os.pwrite(self._fd, data.data, offset + y0 * self.shape[1] * dtype.itemsize)

    def commit(self) -> tuple[int, str]:
        """Publish the file at the target URI; returns (size in bytes, sha256 hex)."""
        assert self._fd is not None, "already committed or aborted"
        try:
            if self._encoders:
                self._assemble()
            os.fsync(self._fd)
            digest = hashlib.sha256()
            block = bytearray(HASH_BLOCK)
            view = memoryview(block)
            position = 0
            while True:
                got = os.preadv(self._fd, [block], position)
                if not got:
                    break
                digest.update(view[:got])
                position += got
            del view
            os.close(self._fd)
            self._fd = None
            publish(self._tmp, self.uri)
        except BaseException:
            self.abort()
            raise
        return position, digest.hexdigest()

    def _assemble(self) -> None:
        """Write the compressed file: primary header, then each plane's header, table and heap."""
        assert self._fd is not None
        _write_all(self._fd, self._primary)
        for encoder, spool in zip(self._encoders.values(), self._spools, strict=True):
            table = encoder.table()
            _write_all(self._fd, encoder.header().tostring().encode("ascii"))
            _write_all(self._fd, table)
            spool.seek(0)
            while chunk := spool.read(HASH_BLOCK):
                _write_all(self._fd, chunk)
            body = len(table) + encoder.heap_size
            _write_all(self._fd, b"\0" * (padded(body) - body))
            spool.close()
        self._spools = []

    def abort(self) -> None:
        """Drop the temporary file (nothing is published)."""
        for spool in self._spools:
            spool.close()
        self._spools = []
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> MefWriter:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if exc_type is not None:
            self.abort()
