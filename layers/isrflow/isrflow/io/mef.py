"""Row strips of multi-extension FITS files, read without holding whole images.

:class:`MefReader` finds every HDU's header and data offset with a few small range reads
(``file://``: ``pread`` on an open descriptor; ``s3://``: ranged GETs; bytes already in memory,
:meth:`MefReader.from_bytes`: slices of them, no copy), then reads any band of
rows of an image extension as one contiguous byte range (FITS images are stored row by row,
big-endian), converting to native float32/int32 while copying into the caller's buffer. A
tile-compressed image extension (:mod:`isrflow.io.tiled`: tiles of whole rows) is read the same
way: its small tile table once, then per band one range of the heap, decoded tile by tile into
the caller's buffer. Offsets and sizes are in bytes, FITS blocks of :data:`BLOCK` bytes.

Writing is :mod:`isrflow.calibration.mef_writer`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from isrflow.io.datastore import uri_to_path
from isrflow.io.storage import split_s3, storage_for
from isrflow.io.tiled import BLOCK, TiledImage, is_tiled, padded, scale_into
from isrflow.model.errors import CalibrationError, TruncatedCalibrationError

_HEADER_READ = 16 * BLOCK
_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


class _Source:
    """Byte ranges of one object: ``file://`` (or a plain path) or ``s3://``."""

    _fd: int | None

    def __init__(self, uri: str):
        self.uri = uri
        self._fd: int | None = None
        if uri.startswith("s3://"):
            self._bucket, self._key = split_s3(uri)
            self._client = storage_for(uri).client  # type: ignore[attr-defined]
        else:
            path = uri_to_path(uri) if uri.startswith("file://") else Path(uri)
            try:
                self._fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise CalibrationError(f"{uri}: no such file") from None
            except OSError as exc:
                raise CalibrationError(f"{uri}: cannot open ({exc.strerror})") from None

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        if self._fd is not None:
            data = os.pread(self._fd, length, offset)
            while len(data) < length:  # pread may return short reads; stop at end of file
                more = os.pread(self._fd, length - len(data), offset + len(data))
                if not more:
                    break
                data += more
            return data
        reply = self._client.get_object(
            Bucket=self._bucket, Key=self._key, Range=f"bytes={offset}-{offset + length - 1}"
        )
        return reply["Body"].read()

    def read_into(self, offset: int, buffer: memoryview) -> int:
        """Fill ``buffer`` (a writable byte view) from ``offset``; returns the bytes read (fewer
        only at the end of the object). ``file://`` reads straight into the buffer (``preadv``):
        no intermediate bytes object, so no fresh pages to fault in per read."""
        length = len(buffer)
        if self._fd is None:
            data = self.read(offset, length)
            buffer[: len(data)] = data
            return len(data)
        got = 0
        while got < length:  # preadv may return short reads; stop at end of file
            n = os.preadv(self._fd, [buffer[got:]], offset + got)
            if not n:
                break
            got += n
        return got

    def size(self) -> int:
        if self._fd is not None:
            return os.fstat(self._fd).st_size
        return int(self._client.head_object(Bucket=self._bucket, Key=self._key)["ContentLength"])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _MemorySource(_Source):
    """Byte ranges of an object already in memory (an S3 GET's body, a calibration's bytes):
    zero-copy slices."""

    def __init__(self, data: bytes | bytearray | memoryview, label: str):
        self.uri = label
        self._fd = None
        view = memoryview(data).cast("B")
        #: The bytes themselves where they may be changed (a bytearray, a buffer read into), for
        #: :meth:`MefReader.adopt`; None for immutable bytes.
        self.writable: memoryview | None = None if view.readonly else view
        self._data = view.toreadonly()

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + max(length, 0)]  # type: ignore[return-value]  # a view reads as bytes

    def read_into(self, offset: int, buffer: memoryview) -> int:
        chunk = self._data[offset : offset + len(buffer)]
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def size(self) -> int:
        return len(self._data)

    def close(self) -> None:
        self._data.release()
        if self.writable is not None:
            self.writable.release()


@dataclass
class ImageHdu:
    """Where one image extension's pixels are and how they are encoded."""

    name: str
    offset: int  # byte offset of the first pixel
    shape: tuple[int, int]  # (rows, columns)
    dtype: np.dtype  # on-disk (big-endian)
    bzero: float = 0.0
    bscale: float = 1.0
    blank: int | None = None  # BLANK: the integer that codes an undefined pixel

    @property
    def row_bytes(self) -> int:
        return self.shape[1] * self.dtype.itemsize


@dataclass
class MefReader:
    """The headers and image extensions of one MEF, read lazily by row bands."""

    uri: str
    primary: dict[str, Any]
    images: dict[str, ImageHdu | TiledImage]
    _source: _Source = field(repr=False)
    #: EXTNAME of every HDU as written (as astropy names them: the primary ``PRIMARY`` and other
    #: HDUs ``""`` when they have none), images or not, the primary first.
    extensions: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, uri: str, label: str = "") -> MefReader:
        """A reader of ``uri`` (``file://``, a path or ``s3://``), named ``label`` (default: the
        URI) in its errors."""
        source = _Source(uri)
        source.uri = label or uri
        return cls._indexed(source)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, label: str) -> MefReader:
        """A reader of a whole file already in memory (``label`` names it in errors); its
        reads are views of ``data``, which must not change while the reader is used."""
        return cls._indexed(_MemorySource(data, label))

    @classmethod
    def _indexed(cls, source: _Source) -> MefReader:
        try:
            primary, images, extensions = _index(source)
        except BaseException:
            source.close()
            raise
        return cls(uri=source.uri, primary=primary, images=images, _source=source, extensions=extensions)

    @property
    def shape(self) -> tuple[int, int]:
        return self.image("IMAGE").shape

    def has(self, name: str) -> bool:
        return name in self.images

    def image(self, name: str) -> ImageHdu | TiledImage:
        hdu = self.images.get(name)
        if hdu is None:
            raise CalibrationError(f"{self.uri}: has no {name} extension (found {sorted(self.images)})")
        return hdu

    def read_rows(self, name: str, y0: int, y1: int, out: np.ndarray) -> np.ndarray:
        """Rows ``[y0, y1)`` of extension ``name`` into ``out`` (shape ``(y1 - y0, columns)``),
        converted to ``out``'s dtype; returns ``out``."""
        hdu = self.image(name)
        if isinstance(hdu, TiledImage):
            return hdu.read_rows(self._source.read, y0, y1, out)
        if out.shape != (y1 - y0, hdu.shape[1]):
            raise ValueError(f"{self.uri}: rows [{y0}, {y1}) into {out.shape} do not fit {name} {hdu.shape}")
        if (
            hdu.bscale == 1.0
            and hdu.bzero == 0.0
            and out.dtype == hdu.dtype.newbyteorder("=")
            and out.flags.c_contiguous
        ):
            return self.raw_rows_into(name, y0, y1, out)
        return scale_into(out, self.raw_rows(name, y0, y1), hdu.bscale, hdu.bzero)

    def raw_rows(self, name: str, y0: int, y1: int) -> np.ndarray:
        """Rows ``[y0, y1)`` of extension ``name`` as stored (big-endian, before BZERO/BSCALE):
        a read-only view of the bytes read; of a compressed extension, the decoded values."""
        hdu = self.image(name)
        if isinstance(hdu, TiledImage):
            return hdu.read_rows(
                self._source.read, y0, y1, np.empty((y1 - y0, hdu.shape[1]), dtype=hdu.dtype)
            )
        rows, cols = hdu.shape
        if not 0 <= y0 <= y1 <= rows:
            raise ValueError(f"{self.uri}: rows [{y0}, {y1}) outside {name} {hdu.shape}")
        length = (y1 - y0) * hdu.row_bytes
        data = self._source.read(hdu.offset + y0 * hdu.row_bytes, length)
        if len(data) != length:
            raise TruncatedCalibrationError(
                f"{self.uri}: {name} is truncated (rows {y0}-{y1} end past the end of the file)"
            )
        return np.frombuffer(data, dtype=hdu.dtype).reshape(y1 - y0, cols)

    def raw_rows_into(self, name: str, y0: int, y1: int, out: np.ndarray) -> np.ndarray:
        """Rows ``[y0, y1)`` of extension ``name`` as stored (before BZERO/BSCALE) into ``out``, a
        C-contiguous ``(y1 - y0, columns)`` array of the plane's type in native byte order: the
        bytes are read straight into ``out`` and swapped in place. Returns ``out``."""
        hdu = self.image(name)
        if isinstance(hdu, TiledImage):
            np.copyto(out, self.raw_rows(name, y0, y1))
            return out
        rows, cols = hdu.shape
        if not 0 <= y0 <= y1 <= rows:
            raise ValueError(f"{self.uri}: rows [{y0}, {y1}) outside {name} {hdu.shape}")
        if (
            out.shape != (y1 - y0, cols)
            or out.dtype != hdu.dtype.newbyteorder("=")
            or not out.flags.c_contiguous
        ):
            raise ValueError(
                f"{self.uri}: rows [{y0}, {y1}) of {name} ({hdu.dtype}) cannot be read into "
                f"{out.dtype} {out.shape}"
            )
        length = (y1 - y0) * hdu.row_bytes
        if isinstance(self._source, _MemorySource) and not hdu.dtype.isnative:
            # bytes in memory: converted while copied, one pass (a copy, then a swap: two)
            np.copyto(out, self.raw_rows(name, y0, y1))
            return out
        with memoryview(out).cast("B") as view:
            got = self._source.read_into(hdu.offset + y0 * hdu.row_bytes, view)
        if got != length:
            raise TruncatedCalibrationError(
                f"{self.uri}: {name} is truncated (rows {y0}-{y1} end past the end of the file)"
            )
        if not hdu.dtype.isnative:
            out.byteswap(inplace=True)  # big-endian on disk -> native: the same values, bit for bit
        return out

    def can_adopt(self, name: str, dtype: np.dtype | type) -> bool:
        """Whether :meth:`adopt` can give extension ``name`` as ``dtype``: bytes in memory that may
        be changed (:meth:`from_bytes` of a bytearray or of a buffer read into) holding the plane
        whole, uncompressed, unscaled and already of ``dtype``."""
        source, hdu = self._source, self.images.get(name)
        if not isinstance(source, _MemorySource) or source.writable is None or not isinstance(hdu, ImageHdu):
            return False
        return not (
            hdu.bscale != 1.0
            or hdu.bzero != 0.0
            or hdu.dtype.newbyteorder("=") != np.dtype(dtype)
            or hdu.offset % hdu.dtype.itemsize
            or hdu.offset + hdu.shape[0] * hdu.row_bytes > len(source.writable)
        )

    def adopt(self, name: str, dtype: np.dtype | type) -> np.ndarray:
        """Extension ``name``'s pixels as a ``dtype`` array made of the reader's own bytes, swapped
        to native order in place: no copy. The caller gives the bytes up: they no longer read as
        the file. ValueError where :meth:`can_adopt` says no."""
        if not self.can_adopt(name, dtype):
            raise ValueError(f"{self.uri}: {name} cannot be adopted as {np.dtype(dtype)}")
        source, hdu = self._source, self.images[name]
        assert isinstance(source, _MemorySource) and source.writable is not None and isinstance(hdu, ImageHdu)
        nbytes = hdu.shape[0] * hdu.row_bytes
        # of a slice: the reader's own views stay releasable while the array lives
        pixels = np.frombuffer(source.writable[hdu.offset : hdu.offset + nbytes], dtype=hdu.dtype)
        if not hdu.dtype.isnative:
            pixels.byteswap(inplace=True)
        return pixels.view(hdu.dtype.newbyteorder("=")).reshape(hdu.shape)

    @property
    def reads_locally(self) -> bool:
        """Whether the bytes come from a local file (``pread``) or memory, which a forked process
        may read as well; S3 reads go through a client whose connections a fork must not share."""
        return isinstance(self._source, _MemorySource) or self._source._fd is not None

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> MefReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _header_at(source: _Source, offset: int, uri: str) -> tuple[fits.Header, int] | None:
    """The header starting at ``offset`` and its padded length; None at the end of the file."""
    text = b""
    while True:
        chunk = source.read(offset + len(text), _HEADER_READ)
        if not chunk:
            if not text:
                return None
            raise TruncatedCalibrationError(
                f"{uri}: header at byte {offset} has no END card (truncated file?)"
            )
        text += chunk
        if offset == 0 and not text.startswith(b"SIMPLE  ="):
            raise CalibrationError(f"{uri}: not a FITS file")
        if offset > 0 and not b"XTENSION=".startswith(bytes(text[:9])):
            return None  # bytes after the last HDU (zeros, an upload's leftovers) are no HDU: as astropy
        for start in range(0, len(text) - 79, 80):
            if text[start : start + 8] == b"END     ":
                length = padded(start + 80)
                try:
                    header = fits.Header.fromstring(text[: start + 80].decode("ascii"))
                except Exception as exc:
                    raise CalibrationError(
                        f"{uri}: unreadable FITS header at byte {offset} ({exc})"
                    ) from None
                return header, length
        if len(text) > 64 * _HEADER_READ:
            raise CalibrationError(f"{uri}: header at byte {offset} is implausibly long")


def _index(source: _Source) -> tuple[dict[str, Any], dict[str, ImageHdu | TiledImage], list[str]]:
    uri = source.uri
    first = _header_at(source, 0, uri)
    if first is None or first[0].get("SIMPLE") is not True:
        raise CalibrationError(f"{uri}: not a FITS file")
    primary_header, offset = first
    primary = {k: v for k, v in primary_header.items() if k not in ("COMMENT", "HISTORY", "")}
    size = source.size()
    images: dict[str, ImageHdu | TiledImage] = {}
    extensions: list[str] = []
    header = primary_header
    index = 0
    while True:
        naxis = int(header.get("NAXIS", 0))
        dims = [int(header.get(f"NAXIS{i}", 0)) for i in range(1, naxis + 1)]
        count = int(np.prod(dims)) if naxis else 0
        bitpix = int(header.get("BITPIX", 8))
        data_bytes = (
            (abs(bitpix) // 8) * int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0)) + count)
        )
        extensions.append(str(header.get("EXTNAME", "" if index else "PRIMARY")))
        if index > 0 and header.get("XTENSION") == "IMAGE" and naxis == 2:
            name = str(header.get("EXTNAME", f"HDU{index}")).strip().upper()
            if bitpix not in _DTYPES:
                raise CalibrationError(f"{uri}: {name} has unsupported BITPIX {bitpix}")
            images[name] = ImageHdu(
                name=name,
                offset=offset,
                shape=(dims[1], dims[0]),
                dtype=np.dtype(_DTYPES[bitpix]),
                bzero=float(header.get("BZERO", 0.0)),
                bscale=float(header.get("BSCALE", 1.0)),
                blank=int(header["BLANK"]) if "BLANK" in header else None,
            )
        elif index > 0 and is_tiled(header):
            tiled = TiledImage.from_header(header, offset, uri)
            images[tiled.name or f"HDU{index}"] = tiled
        if offset + data_bytes > size:  # the last block's padding may be missing: astropy reads that
            raise TruncatedCalibrationError(
                f"{uri}: truncated (HDU {index} ends at byte {offset + data_bytes}, the file has {size})"
            )
        offset += padded(data_bytes)
        index += 1
        following = _header_at(source, offset, uri) if offset < size else None
        if following is None:
            break
        header, length = following
        offset += length
    return primary, images, extensions


# --------------------------------------------------------------------------- writing
