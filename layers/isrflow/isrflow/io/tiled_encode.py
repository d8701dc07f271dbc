"""Writing tile-compressed images (:mod:`isrflow.io.tiled` describes the format): a plane's rows in
order, quantized (floats, lossy) or not, RICE_1 or GZIP_2 coded, into a heap and its table."""

from __future__ import annotations

import gzip
import io
import math
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
from astropy.io import fits

from isrflow.io.tiled_common import N_RANDOM, ZBLANK, dither, padded, rice_codec

#: A quantized tile's integers must span less than this (else the tile is stored losslessly).
_MAX_LEVELS = 2**30
#: Tiles spanning fewer quantization steps than this are quantized in float32 (see _quantize).
_FLOAT32_LEVELS = 2**16
#: Noise is estimated on at most this many neighbour differences per tile.
_NOISE_SAMPLES = 2048
_GZIP_LEVEL = 1
_RICE_BLOCK = 32
_BITPIX = {np.dtype(np.float32): -32, np.dtype(np.int32): 32, np.dtype(np.int16): 16}


def _shuffle(data: np.ndarray) -> bytes:
    """GZIP_2's byte shuffle: all most significant bytes first (big-endian values)."""
    itemsize = data.dtype.itemsize
    return (
        data.astype(data.dtype.newbyteorder(">"), copy=False).view(np.uint8).reshape(-1, itemsize).T.tobytes()
    )


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
    return float(1.4826 * _median(diff[usable] if not usable.all() else diff) / math.sqrt(2.0))


def _median(values: np.ndarray) -> float:
    """``np.median`` of a 1-D float64 array (the same value), by one partition: numpy's median
    costs a tile more in overheads than the partition itself."""
    n = values.size
    half = n // 2
    if n % 2:
        return float(np.partition(values, half)[half])
    part = np.partition(values, (half - 1, half))
    return float((part[half - 1] + part[half]) / 2.0)


def _quantize(tile: np.ndarray, index: int, codec: Codec) -> tuple[np.ndarray, float, float] | None:
    """(integers, ZSCALE, ZZERO) of a float tile, or None where it must be stored losslessly.

    A tile spanning fewer than ``_FLOAT32_LEVELS`` steps (every noise-dominated tile: sky, stars,
    variance) is scaled in float32, whose rounding moves a value by < 2^-6 of a step; wider ones
    in float64. Either way the integers decode with the standard's formula."""
    sigma = _noise(tile)
    if not (sigma > 0 and math.isfinite(sigma)):
        return None
    lo, hi = float(tile.min()), float(tile.max())  # NaN propagates: both finite = every value is
    every = math.isfinite(lo) and math.isfinite(hi)
    valid: np.ndarray | None = None
    if not every:
        valid = np.isfinite(tile)
        if not valid.any():
            return None
        lo = float(np.min(tile, where=valid, initial=np.inf))
        hi = float(np.max(tile, where=valid, initial=-np.inf))
    scale = sigma / float(codec.quantize_level)  # type: ignore[arg-type]  # None only when not quantized
    levels = (hi - lo) / scale
    if levels >= _MAX_LEVELS:
        return None
    wide = levels >= _FLOAT32_LEVELS
    work = np.float64 if wide else np.float32
    shifted = np.subtract(tile, work(lo), dtype=work)
    if valid is not None:
        shifted[~valid] = 0.0  # coded below; keeps the cast to int32 defined
    if wide:
        shifted /= scale
    else:
        shifted *= np.float32(1.0 / scale)
    shifted += dither(index, codec.dither_seed, tile.size).reshape(tile.shape)
    ints = np.floor(shifted, out=shifted).astype(np.int32)
    if valid is not None:
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
        self._rice = rice_codec()

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
            longest = max([s for s, z in zip(t.sizes, t.lossless, strict=True) if not z], default=0)
            longest_gzip = max([s for s, z in zip(t.sizes, t.lossless, strict=True) if z], default=0)
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
        level = self.codec.quantize_level
        if self.quantized and level is not None:  # quantized: a float plane with a level
            h["ZNAME3"], h["ZVAL3"] = (
                ("NOISEBIT", "quantization level q"),
                (float(level), "noise sigma / quantization step"),
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
    return text + body + b"\0" * (padded(len(body)) - len(body))


def encode_image(
    name: str, data: np.ndarray, codec: Codec, cards: list[tuple[str, Any, str]] | None = None
) -> bytes:
    """A whole 2-D array as one tile-compressed HDU (bytes, padded)."""
    heap = io.BytesIO()
    encoder = PlaneEncoder(name, data.dtype, data.shape, codec, heap, cards)
    encoder.add_rows(0, data)
    return hdu_bytes(encoder.header(), encoder.table(), heap.getvalue())
