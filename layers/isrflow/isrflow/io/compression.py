"""How isrflow's image products are compressed on disk: one policy, one setting.

The setting is ``ISRFLOW_COMPRESSION`` (:func:`isrflow.infra.settings.compression_mode`, read at call
time by the CLI, the local runtime and the Lambda/Fargate handlers alike):

- ``quantized`` (default): float planes (IMAGE, VARIANCE) are quantized and RICE_1-coded,
  integer planes (MASK, NINPUTS) RICE_1-coded losslessly;
- ``lossless``: float planes GZIP_2 (bit-exact, about 1.4x smaller), integer planes RICE_1;
- ``none``: plain IMAGE extensions, the layout before compression.

Quantized floats (:mod:`isrflow.io.tiled` has the encoding): per tile of ``TILE_ROWS`` rows the
step is ``sigma / q``, ``sigma`` the tile's noise, with subtractive dither
(``SUBTRACTIVE_DITHER_1``: NaN stays NaN; zeros are quantized like any value, see
:mod:`isrflow.io.tiled` for why not ``SUBTRACTIVE_DITHER_2``) seeded with the fixed
``DITHER_SEED``, so the same pixels always give the same bytes (a retried worker writes the
same sha256). The error is uniform, unbiased and independent of the signal, of variance
``step^2 / 12 = sigma^2 / (12 q^2)``:

- IMAGE (and any other float plane): q = ``QUANTIZE_LEVEL`` = 16, adding 0.033% to a pixel's
  noise variance, +0.016% to the standard deviation of residuals against the truth (measured:
  +0.0002 on an HSC detector). A master calibration's own noise grows by the same fraction, so
  what it adds to a science frame is smaller still.
- VARIANCE: q = ``VARIANCE_QUANTIZE_LEVEL`` = 4: the variance plane's "noise" is the image's
  (variance ~ signal), so a step of a quarter of it is a relative error of ~0.2% rms of each
  pixel's variance, which moves residual statistics by < 0.001 (measured) and saves 2 bits a
  pixel against q = 16.

Tested against the simulator's truth in ``tests/science/test_compression.py``: chi mean within
0.05 of 0 and standard deviation 1 +- 0.05, as uncompressed, and against the same frames
uncompressed the chi mean moves by < 0.002 and the standard deviation by < 0.002.

What is compressed: everything written through :func:`isrflow.io.exposure_io.write_exposure` /
:func:`~isrflow.io.exposure_io.exposure_to_bytes` (ISR outputs: ``postISRCCD`` and the ISR'd
calibration inputs) and the masters :func:`isrflow.calibration.combine.combine_files` writes.
Never quantized: the simulator's truth (its noiseless signals are written ``lossless``,
bit-exact, its true calibrations uncompressed). Not compressed: raws, defects tables. Readers
need no setting: :class:`isrflow.io.mef.MefReader` reads whole planes (``read_exposure``) or
bands of either kind, astropy reads what it does not (and any other reader can), and older
uncompressed files are read as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from isrflow.io import formats
from isrflow.io.tiled import Codec, encode_image

MODES = ("quantized", "lossless", "none")
DEFAULT_MODE = "quantized"
#: Noise sigma per quantization step of float planes (the cfitsio/fpack default is 4) ...
QUANTIZE_LEVEL = 16.0
#: ... and of VARIANCE planes.
VARIANCE_QUANTIZE_LEVEL = 4.0
#: ZDITHER0 of every quantized plane (fixed: reproducible bytes).
DITHER_SEED = 1
#: Image rows per compressed tile (a band of rows is read by whole tiles).
TILE_ROWS = 16


def current_mode() -> str:
    """The mode the environment names (``ISRFLOW_COMPRESSION``)."""
    from isrflow.infra.settings import compression_mode

    return compression_mode()


def resolve(mode: str | None) -> str:
    """``mode``, checked, or the current mode when None."""
    mode = current_mode() if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"unknown compression mode {mode!r} (use one of {', '.join(MODES)})")
    return mode


def codec_for(dtype: np.dtype | str, mode: str | None = None, name: str = "") -> Codec | None:
    """The codec of a plane ``name`` of ``dtype`` under ``mode`` (default: the current one); None = uncompressed."""
    mode = resolve(mode)
    if mode == "none":
        return None
    if np.dtype(dtype).kind != "f":
        return Codec("RICE_1", None, DITHER_SEED, TILE_ROWS)
    if mode == "lossless":
        return Codec("GZIP_2", None, DITHER_SEED, TILE_ROWS)
    level = VARIANCE_QUANTIZE_LEVEL if name == formats.EXT_VARIANCE else QUANTIZE_LEVEL
    return Codec("RICE_1", level, DITHER_SEED, TILE_ROWS)


def plane_bytes(
    name: str, data: np.ndarray, mode: str, cards: list[tuple[str, Any, str]] | None = None
) -> bytes:
    """One plane as a compressed HDU (header, table and heap; padded). ``mode`` must not be ``none``."""
    codec = codec_for(data.dtype, mode, name)
    if codec is None:
        raise ValueError("plane_bytes writes compressed planes only")
    return encode_image(name, data, codec, cards)
