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

This module is the format's one import point; the code is in :mod:`.tiled_common` (constants,
dither sequence, codec), :mod:`.tiled_encode` (writing) and :mod:`.tiled_decode` (reading).
"""

from isrflow.io.tiled_common import (
    BLOCK,
    DITHER_METHODS,
    N_RANDOM,
    ZBLANK,
    ZERO_VALUE,
    dither,
    padded,
    randoms,
    rice_codec,
    scale_into,
)
from isrflow.io.tiled_decode import TiledImage, is_tiled
from isrflow.io.tiled_encode import Codec, PlaneEncoder, encode_image, hdu_bytes

__all__ = [
    "BLOCK",
    "DITHER_METHODS",
    "N_RANDOM",
    "ZBLANK",
    "ZERO_VALUE",
    "Codec",
    "PlaneEncoder",
    "TiledImage",
    "dither",
    "encode_image",
    "hdu_bytes",
    "is_tiled",
    "padded",
    "randoms",
    "rice_codec",
    "scale_into",
]
