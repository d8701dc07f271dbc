"""Parts of the tile-compressed image format (:mod:`isrflow.io.tiled`) that both the encoder and
the decoder use: the standard's constants, its dither sequence and the RICE_1 codec; and what
every FITS image reader here shares (blocks, BSCALE/BZERO scaling)."""

from __future__ import annotations

import numpy as np

BLOCK = 2880
#: Length of the standard's table of dither values; the sequence must never change.
N_RANDOM = 10000
#: Quantized-integer codes of the standard: NaN (also written as the ZBLANK keyword) and, with
#: SUBTRACTIVE_DITHER_2, an exact zero.
ZBLANK = -(2**31)
ZERO_VALUE = -(2**31) + 2
DITHER_METHODS = {"NO_DITHER": -1, "SUBTRACTIVE_DITHER_1": 1, "SUBTRACTIVE_DITHER_2": 2}


def padded(n: int) -> int:
    """``n`` bytes rounded up to whole FITS blocks."""
    return (n + BLOCK - 1) // BLOCK * BLOCK


def scale_into(out: np.ndarray, stored: np.ndarray, bscale: float, bzero: float) -> np.ndarray:
    """``stored * bscale + bzero`` (the physical values of stored pixels) into ``out``, converted to
    its dtype; a plain converting copy when the scaling is the identity. Returns ``out``."""
    if bscale != 1.0 or bzero != 0.0:
        np.multiply(stored, bscale, out=out, casting="unsafe")
        out += np.asarray(bzero).astype(out.dtype)
    else:
        np.copyto(out, stored, casting="unsafe")
    return out


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


def rice_codec():
    """astropy's RICE_1 codec class (its location moved between astropy versions)."""
    import importlib

    try:
        codecs = importlib.import_module("astropy.io.fits.hdu.compressed._codecs")
    except ImportError:  # astropy 6.0
        codecs = importlib.import_module("astropy.io.fits._tiled_compression.codecs")
    return codecs.Rice1
