"""FITS tile-compressed images (FITS standard 4.0, section 10), encoded and decoded by bands of rows.

An image of ``rows x columns`` pixels is stored as a binary table (``ZIMAGE = T``) with one
table row per tile of ``tile_rows`` whole image rows (``ZTILE1 = columns``), the compressed
bytes of each tile in the table's heap, in tile order. A band of image rows is therefore a run
of consecutive table rows and one contiguous stretch of the heap: :class:`PlaneEncoder` writes
a plane strip by strip (rows in order) without holding it, and :class:`TiledImage` reads any
band back with one ranged read of the heap (the table, a few kB, is read once). Any FITS
reader (astropy's ``CompImageHDU``, cfitsio and ``funpack``) reads what is written here.

Written (:class:`Codec`):

- integers: ``RICE_1``, lossless;
- floats, lossless: ``GZIP_2`` (the bytes of each value shuffled by significance, then gzip);
- floats, quantized: ``RICE_1`` of the integers ``I = floor((x - ZZERO) / ZSCALE + R)`` with
  the standard's subtractive dither ``R`` (``SUBTRACTIVE_DITHER_1``, seed ``ZDITHER0``), decoded
  as ``(I - R + 0.5) ZSCALE + ZZERO``: the error is uniform in ``[-ZSCALE/2, ZSCALE/2]``,
  unbiased and independent of the value. Per tile ``ZSCALE = sigma / q``, ``sigma`` the tile's
  noise (robust: 1.4826 x the median absolute difference of neighbouring pixels, / sqrt 2) and
  ``q`` the quantization level, so the added noise is ``sigma / (q sqrt 12)``. NaN (and any
  non-finite value) is ``ZBLANK`` and reads back as NaN. Zeros are quantized like any value:
  ``SUBTRACTIVE_DITHER_2`` would keep them exact, but ISR'd bias frames and master biases are
  full of exact zeros (overscan-subtracted integers) and its reserved zero code costs Rice
  ~60 bits each, tripling their size. A tile with no measurable noise (constant, mostly
  constant, or not finite) or whose range does not fit 30 bits is stored losslessly instead
  (gzip of its float32 values in ``GZIP_COMPRESSED_DATA``), as cfitsio does.

Decoded: ``RICE_1``, ``GZIP_1``, ``GZIP_2`` and ``NOCOMPRESS`` tiles of whole rows, quantized
or not, any dither method, with the lossless fallback columns. Other algorithms (``PLIO_1``,
``HCOMPRESS_1``) or tiles narrower than a row raise :class:`~isrflow.model.errors.CalibrationError`.

The RICE_1 bit coder is astropy's (C); quantization, dithering and the table are done here with
numpy, about five times faster than astropy's quantizer, which estimates the noise by sorting.
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
from astropy.io import fits

from isrflow.model.errors import CalibrationError

BLOCK = 2880
#: Length of the standard's table of dither values; the sequence must never change.
N_RANDOM = 10000
#: Quantized-integer codes of the standard: NaN (also written as the ZBLANK keyword) and, with
#: SUBTRACTIVE_DITHER_2, an exact zero.
ZBLANK = -(2**31)
ZERO_VALUE = -(2**31) + 2
DITHER_METHODS = {"NO_DITHER": -1, "SUBTRACTIVE_DITHER_1": 1, "SUBTRACTIVE_DITHER_2": 2}
#: A quantized tile's integers must span less than this (else the tile is stored losslessly).
_MAX_LEVELS = 2**30
#: Noise is estimated on at most this many neighbour differences per tile.
_NOISE_SAMPLES = 2048
_GZIP_LEVEL = 1
_RICE_BLOCK = 32
_BITPIX = {np.dtype(np.float32): -32, np.dtype(np.int32): 32, np.dtype(np.int16): 16}
_DTYPE = {-32: ">f4", -64: ">f8", 8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8"}
_TFORM = re.compile(r"^\s*(\d*)([LXBIJKAEDCMPQ])([A-Z]?)")
_COLUMN_DTYPES = {"B": ">u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


def _padded(n: int) -> int:
    return (n + BLOCK - 1) // BLOCK * BLOCK


# --------------------------------------------------------------------------- shared parts

_RANDOMS: np.ndarray | None = None


def randoms() -> np.ndarray:
    """The standard's 10000 dither values in [0, 1) (float32), from its Park-Miller generator."""
    global _RANDOMS
    if _RANDOMS is None:
        a, m, seed = 16807.0, 2147483647.0, 1.0
        values = np.empty(N_RANDOM, dtype=np.float32)
        for i in range(N_RANDOM):
            temp = a * seed
            seed = temp - m * int(temp / m)
            values[i] = seed / m
        if int(seed) != 1043618065:  # the check value the standard gives
            raise RuntimeError("the FITS dither sequence came out wrong")
        _RANDOMS = values
    return _RANDOMS


def dither(tile: int, seed: int, size: int) -> np.ndarray:
    """The dither values of the ``size`` pixels of tile ``tile`` (0-based) with ``ZDITHER0 = seed``."""
    values = randoms()
    start = (tile + seed - 1) % N_RANDOM
    position = int(np.float32(values[start]) * np.float32(500))
    parts, remaining = [], size
    while remaining > 0:
        take = min(remaining, N_RANDOM - position)
        parts.append(values[position : position + take])
        remaining -= take
        start = (start + 1) % N_RANDOM
        position = int(np.float32(values[start]) * np.float32(500))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _rice():
    """astropy's RICE_1 codec class (its location moved between astropy versions)."""
    try:
        from astropy.io.fits.hdu.compressed._codecs import Rice1
    except ImportError:  # astropy 6.0
        from astropy.io.fits._tiled_compression.codecs import Rice1  # type: ignore[no-redef]
    return Rice1


def _shuffle(data: np.ndarray) -> bytes:
    """GZIP_2's byte shuffle: all most significant bytes first (big-endian values)."""
    itemsize = data.dtype.itemsize
    return (
        data.astype(data.dtype.newbyteorder(">"), copy=False).view(np.uint8).reshape(-1, itemsize).T.tobytes()
    )


def _unshuffle(raw: bytes, itemsize: int) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint8).reshape(itemsize, -1).T.copy().reshape(-1)


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class Codec:
    """How one plane is compressed: ``RICE_1`` or ``GZIP_2``; ``quantize_level`` q (noise sigma
    per quantization step) for quantized floats, None for lossless; ``ZDITHER0``; tile height."""

    algorithm: str = "RICE_1"
    quantize_level: float | None = None
    dither_seed: int = 1
    tile_rows: int = 16

    def __post_init__(self) -> None:
        if self.algorithm not in ("RICE_1", "GZIP_2"):
            raise ValueError(f"unsupported tile compression {self.algorithm!r} (RICE_1 or GZIP_2)")
        if self.quantize_level is not None and not self.quantize_level > 0:
            raise ValueError(f"quantize_level must be > 0, got {self.quantize_level}")
        if not 1 <= self.dither_seed <= N_RANDOM:
            raise ValueError(f"dither_seed must be in 1..{N_RANDOM}, got {self.dither_seed}")
        if self.tile_rows < 1:
            raise ValueError(f"tile_rows must be >= 1, got {self.tile_rows}")


def _noise(tile: np.ndarray) -> float:
    """Robust noise sigma of a float tile from differences of neighbouring pixels (at most
    ``_NOISE_SAMPLES`` pairs spread over the tile; non-finite values ignored)."""
    flat = tile.reshape(-1)
    pairs = flat[: flat.size // 2 * 2].reshape(-1, 2)
    pairs = pairs[:: max(1, pairs.shape[0] // _NOISE_SAMPLES)]
    with np.errstate(invalid="ignore"):  # inf - inf: not usable, dropped below
        diff = np.abs(pairs[:, 1].astype(np.float64) - pairs[:, 0])
    usable = np.isfinite(diff)
    if np.count_nonzero(usable) < 8:
        return 0.0
    return float(1.4826 * np.median(diff[usable] if not usable.all() else diff) / math.sqrt(2.0))


def _quantize(tile: np.ndarray, index: int, codec: Codec) -> tuple[np.ndarray, float, float] | None:
    """(integers, ZSCALE, ZZERO) of a float tile, or None where it must be stored losslessly."""
    sigma = _noise(tile)
    if not (sigma > 0 and math.isfinite(sigma)):
        return None
    valid = np.isfinite(tile)
    every = bool(valid.all())
    if every:
        lo, hi = float(tile.min()), float(tile.max())
    elif valid.any():
        lo, hi = (
            float(np.min(tile, where=valid, initial=np.inf)),
            float(np.max(tile, where=valid, initial=-np.inf)),
        )
    else:
        return None
    scale = sigma / float(codec.quantize_level)  # type: ignore[arg-type]
    if (hi - lo) / scale >= _MAX_LEVELS:
        return None
    shifted = np.subtract(tile, lo, dtype=np.float64)
    if not every:
        shifted[~valid] = 0.0  # coded below; keeps the cast to int32 defined
    shifted /= scale
    shifted += dither(index, codec.dither_seed, tile.size).reshape(tile.shape)
    ints = np.floor(shifted, out=shifted).astype(np.int32)
    if not every:
        ints[~valid] = ZBLANK
    return ints, scale, lo


@dataclass
class _Tiles:
    """The table of the tiles encoded so far."""

    sizes: list[int] = field(default_factory=list)  # compressed bytes of each tile
    lossless: list[bool] = field(default_factory=list)  # stored in GZIP_COMPRESSED_DATA
    scales: list[float] = field(default_factory=list)
    zeros: list[float] = field(default_factory=list)


class PlaneEncoder:
    """Encodes one plane, rows in order (:meth:`add_rows`), into ``heap`` (a binary file object
    the compressed tiles are appended to); :meth:`header` and :meth:`table` describe them once
    every row has been added. Holds at most one partial tile of rows."""

    def __init__(
        self,
        name: str,
        dtype: np.dtype | str,
        shape: tuple[int, int],
        codec: Codec,
        heap: BinaryIO,
        cards: list[tuple[str, Any, str]] | None = None,
    ):
        self.name, self.shape, self.codec, self.heap = name, (int(shape[0]), int(shape[1])), codec, heap
        self.dtype = np.dtype(dtype).newbyteorder("=")
        if self.dtype not in _BITPIX:
            raise ValueError(f"{name}: cannot tile-compress {self.dtype} (float32, int32 or int16)")
        self.quantized = self.dtype.kind == "f" and codec.quantize_level is not None
        if self.dtype.kind != "f" and codec.algorithm != "RICE_1":
            raise ValueError(f"{name}: integer planes are written with RICE_1")
        self.cards = list(cards or [])
        self.tiles = _Tiles()
        self.heap_size = 0
        self.next_row = 0
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._rice = _rice()

    def add_rows(self, y0: int, rows: np.ndarray) -> None:
        """Rows ``[y0, y0 + len(rows))``; ``y0`` must be where the previous call ended."""
        if y0 != self.next_row:
            raise ValueError(
                f"{self.name}: rows must be written in order (expected row {self.next_row}, got {y0})"
            )
        if rows.ndim != 2 or rows.shape[1] != self.shape[1] or y0 + rows.shape[0] > self.shape[0]:
            raise ValueError(f"{self.name}: rows {rows.shape} at {y0} do not fit {self.shape}")
        self.next_row += rows.shape[0]
        height = self.codec.tile_rows
        start = 0
        if self._pending_rows:  # complete the partial tile first
            take = min(height - self._pending_rows, rows.shape[0])
            self._pending.append(np.array(rows[:take], dtype=self.dtype))
            self._pending_rows += take
            start = take
            if self._pending_rows == height or (self.next_row == self.shape[0] and start == rows.shape[0]):
                self._flush_pending()
        while start < rows.shape[0]:
            stop = min(start + height, rows.shape[0])
            if stop - start == height or self.next_row == self.shape[0]:
                self._encode(np.ascontiguousarray(rows[start:stop], dtype=self.dtype))
            else:
                self._pending, self._pending_rows = (
                    [np.array(rows[start:stop], dtype=self.dtype)],
                    stop - start,
                )
            start = stop

    def _flush_pending(self) -> None:
        block = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_rows = [], 0
        self._encode(block)

    def _encode(self, tile: np.ndarray) -> None:
        index = len(self.tiles.sizes)
        scale = zero = 0.0
        lossless = False
        if self.quantized:
            quantized = _quantize(tile, index, self.codec)
            if quantized is None:
                lossless = True
                data = gzip.compress(tile.astype(">f4").tobytes(), compresslevel=_GZIP_LEVEL, mtime=0)
            else:
                ints, scale, zero = quantized
                data = self._rice(blocksize=_RICE_BLOCK, bytepix=4, tilesize=ints.size).encode(ints)
        elif self.codec.algorithm == "RICE_1":
            data = self._rice(blocksize=_RICE_BLOCK, bytepix=self.dtype.itemsize, tilesize=tile.size).encode(
                tile
            )
        else:
            data = gzip.compress(_shuffle(tile), compresslevel=_GZIP_LEVEL, mtime=0)
        self.heap.write(data)
        self.heap_size += len(data)
        self.tiles.sizes.append(len(data))
        self.tiles.lossless.append(lossless)
        self.tiles.scales.append(scale)
        self.tiles.zeros.append(zero)

    def _check_done(self) -> None:
        if self._pending_rows:
            self._flush_pending()
        if self.next_row != self.shape[0]:
            raise ValueError(f"{self.name}: {self.next_row} of {self.shape[0]} rows written")

    def table(self) -> bytes:
        """The binary table's rows (big-endian), heap offsets included."""
        self._check_done()
        t = self.tiles
        sizes = np.asarray(t.sizes, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if sizes.size else sizes
        if self.heap_size >= 2**31:
            raise ValueError(
                f"{self.name}: compressed plane of {self.heap_size} bytes exceeds the 2 GiB heap limit"
            )
        if not self.quantized:
            table = np.zeros(len(sizes), dtype=[("data", ">i4", 2)])
            table["data"][:, 0], table["data"][:, 1] = sizes, offsets
            return table.tobytes()
        table = np.zeros(
            len(sizes), dtype=[("data", ">i4", 2), ("gzip", ">i4", 2), ("scale", ">f8"), ("zero", ">f8")]
        )
        lossless = np.asarray(t.lossless, dtype=bool)
        for column, rows in (("data", ~lossless), ("gzip", lossless)):
            table[column][rows, 0], table[column][rows, 1] = sizes[rows], offsets[rows]
        table["scale"], table["zero"] = t.scales, t.zeros
        return table.tobytes()

    def header(self) -> fits.Header:
        """The binary table's header (after every row is added)."""
        self._check_done()
        t = self.tiles
        h = fits.Header()
        h["XTENSION"] = ("BINTABLE", "binary table extension")
        h["BITPIX"] = 8
        h["NAXIS"] = 2
        h["NAXIS1"] = (32 if self.quantized else 8, "width of table in bytes")
        h["NAXIS2"] = (len(t.sizes), "number of tiles")
        h["PCOUNT"] = (self.heap_size, "heap size in bytes")
        h["GCOUNT"] = 1
        if self.quantized:
            longest = max([s for s, z in zip(t.sizes, t.lossless) if not z], default=0)
            longest_gzip = max([s for s, z in zip(t.sizes, t.lossless) if z], default=0)
            columns = [
                ("COMPRESSED_DATA", f"1PB({longest})"),
                ("GZIP_COMPRESSED_DATA", f"1PB({longest_gzip})"),
                ("ZSCALE", "1D"),
                ("ZZERO", "1D"),
            ]
        else:
            columns = [("COMPRESSED_DATA", f"1PB({max(t.sizes, default=0)})")]
        h["TFIELDS"] = len(columns)
        for i, (name, form) in enumerate(columns, 1):
            h[f"TTYPE{i}"] = name
            h[f"TFORM{i}"] = form
        h["ZIMAGE"] = (True, "extension contains a compressed image")
        h["ZTENSION"] = ("IMAGE", "image extension")
        h["ZBITPIX"] = (_BITPIX[self.dtype], "image data type")
        h["ZNAXIS"] = 2
        h["ZNAXIS1"] = self.shape[1]
        h["ZNAXIS2"] = self.shape[0]
        h["ZPCOUNT"] = 0
        h["ZGCOUNT"] = 1
        h["ZTILE1"] = (self.shape[1], "tile width: whole rows")
        h["ZTILE2"] = (self.codec.tile_rows, "image rows per tile")
        h["ZCMPTYPE"] = (self.codec.algorithm, "compression algorithm")
        if self.codec.algorithm == "RICE_1":
            h["ZNAME1"], h["ZVAL1"] = "BLOCKSIZE", _RICE_BLOCK
            h["ZNAME2"], h["ZVAL2"] = "BYTEPIX", 4 if self.quantized else self.dtype.itemsize
        if self.quantized:
            h["ZNAME3"], h["ZVAL3"] = (
                ("NOISEBIT", "quantization level q"),
                (float(self.codec.quantize_level), "noise sigma / quantization step"),
            )
            h["ZQUANTIZ"] = ("SUBTRACTIVE_DITHER_1", "quantization with subtractive dither")
            h["ZDITHER0"] = (self.codec.dither_seed, "dither seed (fixed: the output is reproducible)")
            h["ZBLANK"] = (ZBLANK, "quantized value of NaN")
        h["EXTNAME"] = self.name
        for key, value, comment in self.cards:
            h[key] = (value, comment)
        return h


def hdu_bytes(header: fits.Header, table: bytes, heap: bytes) -> bytes:
    """One complete HDU: header, table, heap, padded to whole FITS blocks."""
    text = header.tostring().encode("ascii")
    body = table + heap
    return text + body + b"\0" * (_padded(len(body)) - len(body))


def encode_image(
    name: str, data: np.ndarray, codec: Codec, cards: list[tuple[str, Any, str]] | None = None
) -> bytes:
    """A whole 2-D array as one tile-compressed HDU (bytes, padded)."""
    import io

    heap = io.BytesIO()
    encoder = PlaneEncoder(name, data.dtype, data.shape, codec, heap, cards)
    encoder.add_rows(0, data)
    return hdu_bytes(encoder.header(), encoder.table(), heap.getvalue())


# --------------------------------------------------------------------------- reading


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
                raise CalibrationError(f"{self.label}: table is truncated")
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
            raise CalibrationError(f"{self.label}: heap is truncated (tiles {first}-{last})")
        for tile in range(first, last + 1):
            t0 = tile * self.tile_rows
            t1 = min(rows, t0 + self.tile_rows)
            values = self._decode(table[tile], tile, heap, lo, (t1 - t0) * cols).reshape(t1 - t0, cols)
            a, b = max(y0, t0), min(y1, t1)
            part = values[a - t0 : b - t0]
            target = out[a - y0 : b - y0]
            if self.bscale != 1.0 or self.bzero != 0.0:
                np.multiply(part, self.bscale, out=target, casting="unsafe")
                target += np.asarray(self.bzero).astype(target.dtype)
            else:
                np.copyto(target, part, casting="unsafe")
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
            ints = _rice()(blocksize=self._settings("BLOCKSIZE", 32), bytepix=bytepix, tilesize=npix).decode(
                np.frombuffer(data, dtype=np.uint8)
            )
            return np.asarray(ints[:npix]).astype(stored)
        if self.algorithm == "NOCOMPRESS":
            raw = data
        else:
            raw = zlib.decompress(data, 31)  # a gzip stream
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
