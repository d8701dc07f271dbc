"""Reading tile-compressed images (:mod:`isrflow.io.tiled` describes the format) by bands of rows:
the table once, then one ranged read of the heap per band, one tile decoded at a time."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.io import fits

from isrflow.io.tiled_common import DITHER_METHODS, ZERO_VALUE, dither, rice_codec, scale_into
from isrflow.model.errors import CalibrationError, TruncatedCalibrationError

_DTYPE = {-32: ">f4", -64: ">f8", 8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8"}
_TFORM = re.compile(r"^\s*(\d*)([LXBIJKAEDCMPQ])([A-Z]?)")
_COLUMN_DTYPES = {"B": ">u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


def _unshuffle(raw: bytes, itemsize: int) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint8).reshape(itemsize, -1).T.copy().reshape(-1)


def is_tiled(header: fits.Header | dict) -> bool:
    """Whether an extension header is a tile-compressed image."""
    return str(header.get("XTENSION", "")).strip().upper() == "BINTABLE" and header.get("ZIMAGE") is True


def _table_dtype(header: fits.Header | dict, label: str) -> tuple[np.dtype, dict[str, str]]:
    """The numpy dtype of one table row, and the element type code of each descriptor column."""
    fields: list[tuple] = []
    elements: dict[str, str] = {}
    for i in range(1, int(header.get("TFIELDS", 0)) + 1):
        form = str(header.get(f"TFORM{i}", ""))
        name = str(header.get(f"TTYPE{i}", f"COL{i}")).strip().upper()
        match = _TFORM.match(form)
        if match is None:
            raise CalibrationError(f"{label}: column {name} has an unreadable TFORM {form!r}")
        repeat, code = int(match.group(1) or 1), match.group(2)
        if code in "PQ":  # a heap descriptor: (element count, byte offset)
            fields.append((name, ">i4" if code == "P" else ">i8", (2,)))
            elements[name] = match.group(3) or "B"
        elif code in _COLUMN_DTYPES:
            fields.append(
                (name, _COLUMN_DTYPES[code], (repeat,)) if repeat > 1 else (name, _COLUMN_DTYPES[code])
            )
        else:
            raise CalibrationError(f"{label}: column {name} has unsupported format {form!r}")
    dtype = np.dtype(fields)
    if dtype.itemsize != int(header.get("NAXIS1", 0)):
        raise CalibrationError(
            f"{label}: table row of {dtype.itemsize} bytes, NAXIS1 says {header.get('NAXIS1')}"
        )
    return dtype, elements


@dataclass
class TiledImage:
    """A tile-compressed image extension of a file: where its table and heap are, and how to decode it.

    ``read(offset, length)`` (given to :meth:`read_rows`) returns bytes of the file.
    """

    name: str
    label: str
    header: dict[str, Any]
    shape: tuple[int, int]  # (rows, columns)
    dtype: np.dtype  # decoded (native) dtype
    table_offset: int  # byte offset of the table in the file
    heap_offset: int  # byte offset of the heap
    row_dtype: np.dtype
    tile_rows: int
    algorithm: str
    elements: dict[str, str] = field(default_factory=dict)  # descriptor column -> element code
    bzero: float = 0.0
    bscale: float = 1.0
    _table: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_header(cls, header: fits.Header | dict, data_offset: int, label: str) -> TiledImage:
        name = str(header.get("EXTNAME", "")).strip().upper()
        where = f"{label}: {name or 'compressed image'}"
        if int(header.get("ZNAXIS", 0)) != 2:
            raise CalibrationError(f"{where} is not a 2-D compressed image (ZNAXIS={header.get('ZNAXIS')})")
        rows, cols = int(header["ZNAXIS2"]), int(header["ZNAXIS1"])
        if int(header.get("ZTILE1", cols)) != cols:
            raise CalibrationError(
                f"{where}: tiles of {header.get('ZTILE1')} columns; only whole-row tiles are read "
                f"by bands (the image has {cols} columns)"
            )
        algorithm = str(header.get("ZCMPTYPE", "")).strip().upper()
        if algorithm == "RICE_ONE":
            algorithm = "RICE_1"
        if algorithm not in ("RICE_1", "GZIP_1", "GZIP_2", "NOCOMPRESS"):
            raise CalibrationError(
                f"{where}: compression {algorithm!r} is not supported for reading by bands "
                "(RICE_1, GZIP_1, GZIP_2, NOCOMPRESS)"
            )
        zbitpix = int(header["ZBITPIX"])
        if zbitpix not in _DTYPE:
            raise CalibrationError(f"{where}: unsupported ZBITPIX {zbitpix}")
        row_dtype, elements = _table_dtype(header, where)
        table_bytes = int(header["NAXIS1"]) * int(header["NAXIS2"])
        tile_rows = int(header.get("ZTILE2", 1))
        if int(header["NAXIS2"]) != -(-rows // tile_rows):
            raise CalibrationError(
                f"{where}: {header['NAXIS2']} tiles do not cover {rows} rows of {tile_rows}"
            )
        return cls(
            name=name,
            label=where,
            header=dict(header),
            shape=(rows, cols),
            dtype=np.dtype(_DTYPE[zbitpix]).newbyteorder("="),
            table_offset=data_offset,
            heap_offset=data_offset + int(header.get("THEAP", table_bytes)),
            row_dtype=row_dtype,
            tile_rows=tile_rows,
            algorithm=algorithm,
            elements=elements,
            bzero=float(header.get("BZERO", 0.0)),
            bscale=float(header.get("BSCALE", 1.0)),
        )

    @property
    def quantized(self) -> bool:
        return "ZSCALE" in (self.row_dtype.names or ())

    def _settings(self, key: str, default: int) -> int:
        for i in range(1, 10):
            if str(self.header.get(f"ZNAME{i}", "")).strip().upper() == key:
                return int(self.header[f"ZVAL{i}"])
        return default

    def table(self, read: Callable[[int, int], bytes]) -> np.ndarray:
        if self._table is None:
            length = self.row_dtype.itemsize * -(-self.shape[0] // self.tile_rows)
            data = read(self.table_offset, length)
            if len(data) != length:
                raise TruncatedCalibrationError(f"{self.label}: table is truncated")
            self._table = np.frombuffer(data, dtype=self.row_dtype)
        return self._table

    def read_rows(self, read: Callable[[int, int], bytes], y0: int, y1: int, out: np.ndarray) -> np.ndarray:
        """Decode rows ``[y0, y1)`` into ``out`` (shape ``(y1 - y0, columns)``, any numeric dtype),
        BSCALE/BZERO applied; one read of the heap for the band, one tile decoded at a time."""
        rows, cols = self.shape
        if not 0 <= y0 <= y1 <= rows:
            raise ValueError(f"{self.label}: rows [{y0}, {y1}) outside {self.shape}")
        if out.shape != (y1 - y0, cols):
            raise ValueError(f"{self.label}: rows [{y0}, {y1}) into {out.shape} do not fit {self.shape}")
        if y0 == y1:
            return out
        table = self.table(read)
        first, last = y0 // self.tile_rows, (y1 - 1) // self.tile_rows
        spans = [
            self._span(table[tile], column)
            for tile in range(first, last + 1)
            for column in ("COMPRESSED_DATA", "GZIP_COMPRESSED_DATA", "UNCOMPRESSED_DATA")
        ]
        spans = [(offset, offset + size) for size, offset in spans if size]
        lo = min((a for a, _ in spans), default=0)
        hi = max((b for _, b in spans), default=0)
        heap = read(self.heap_offset + lo, hi - lo) if hi > lo else b""
        if len(heap) != hi - lo:
            raise TruncatedCalibrationError(f"{self.label}: heap is truncated (tiles {first}-{last})")
        for tile in range(first, last + 1):
            t0 = tile * self.tile_rows
            t1 = min(rows, t0 + self.tile_rows)
            values = self._decode(table[tile], tile, heap, lo, (t1 - t0) * cols).reshape(t1 - t0, cols)
            a, b = max(y0, t0), min(y1, t1)
            part = values[a - t0 : b - t0]
            scale_into(out[a - y0 : b - y0], part, self.bscale, self.bzero)
        return out

    def _span(self, row: np.void, column: str) -> tuple[int, int]:
        """(byte length, heap offset) of a descriptor column of one table row; (0, 0) if absent."""
        if column not in (self.row_dtype.names or ()):
            return 0, 0
        count, offset = (int(v) for v in row[column])
        width = np.dtype(_COLUMN_DTYPES.get(self.elements.get(column, "B"), ">u1")).itemsize
        return count * width, offset

    def _decode(self, row: np.void, tile: int, heap: bytes, base: int, npix: int) -> np.ndarray:
        """The values of one tile (native byte order)."""
        try:
            size, offset = self._span(row, "COMPRESSED_DATA")
            if size:
                ints = self._decompress(bytes(heap[offset - base : offset - base + size]), npix)
                if not self.quantized:
                    return ints
                return self._dequantize(ints, tile, float(row["ZSCALE"]), float(row["ZZERO"]))
            size, offset = self._span(row, "GZIP_COMPRESSED_DATA")  # a tile stored losslessly
            if size:
                raw = zlib.decompress(heap[offset - base : offset - base + size], 31)
            else:
                size, offset = self._span(row, "UNCOMPRESSED_DATA")
                if not size:
                    raise CalibrationError(f"{self.label}: tile {tile} has no data")
                raw = heap[offset - base : offset - base + size]
        except (zlib.error, ValueError, OSError) as exc:
            raise CalibrationError(f"{self.label}: tile {tile} cannot be decompressed ({exc})") from None
        kind = "f" if self.dtype.kind == "f" else "i"
        return np.frombuffer(raw, dtype=f">{kind}{len(raw) // npix}").astype(self.dtype)

    def _decompress(self, data: bytes, npix: int) -> np.ndarray:
        """Integers (quantized) or values (lossless) of one tile, native byte order."""
        stored = np.dtype(np.int32) if self.quantized else self.dtype
        if self.algorithm == "RICE_1":
            bytepix = self._settings("BYTEPIX", 4)
            ints = rice_codec()(
                blocksize=self._settings("BLOCKSIZE", 32), bytepix=bytepix, tilesize=npix
            ).decode(np.frombuffer(data, dtype=np.uint8))
            return np.asarray(ints[:npix]).astype(stored)
        raw = data if self.algorithm == "NOCOMPRESS" else zlib.decompress(data, 31)  # gzip: a gzip stream
        width = len(raw) // npix
        if self.algorithm == "GZIP_2":
            raw = _unshuffle(raw, width).tobytes()
        if self.dtype.kind == "f" and not self.quantized:
            return np.frombuffer(raw, dtype=f">f{width}").astype(self.dtype)
        return np.frombuffer(raw, dtype=f">i{width}").astype(stored)

    def _dequantize(self, ints: np.ndarray, tile: int, scale: float, zero: float) -> np.ndarray:
        method = DITHER_METHODS.get(str(self.header.get("ZQUANTIZ", "NO_DITHER")).strip().upper(), -1)
        zblank = self.header.get("ZBLANK", self.header.get("BLANK"))
        values = ints.astype(np.float64)
        if method == -1:
            values *= scale
            values += zero
        else:
            values -= dither(tile, int(self.header.get("ZDITHER0", 1)), ints.size)
            values += 0.5
            values *= scale
            values += zero
        result = values.astype(self.dtype)
        if method == 2:
            result[ints == ZERO_VALUE] = 0.0
        if zblank is not None:
            result[ints == int(zblank)] = np.nan
        return result
