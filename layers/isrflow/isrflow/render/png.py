"""A small PNG encoder: 8-bit RGB or grey from numpy, compressed with zlib.

PNG (ISO/IEC 15948): the 8-byte signature, then chunks ``length | type | data | CRC-32``:
IHDR (width, height, bit depth 8, colour type 2 = RGB or 0 = grey, deflate, adaptive
filtering, no interlace), one IDAT with the zlib stream of the filtered rows, IEND. Each row
is filtered with "Up" (type 2: the difference to the row above), which suits smooth sky
images, and prefixed by its filter byte. No dependency beyond numpy and zlib, so the ISR image
needs no imaging library.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILTER_UP = 2


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(pixels: np.ndarray, level: int = 6) -> bytes:
    """PNG bytes of a ``(rows, cols, 3)`` RGB or ``(rows, cols)`` grey uint8 array (row 0 = top)."""
    image = np.asarray(pixels)
    if image.dtype != np.uint8:
        raise ValueError(f"PNG pixels must be uint8, got {image.dtype}")
    if image.ndim == 2:
        colour_type, channels = 0, 1
    elif image.ndim == 3 and image.shape[2] == 3:
        colour_type, channels = 2, 3
    else:
        raise ValueError(f"PNG pixels must be (rows, cols) or (rows, cols, 3), got {image.shape}")
    rows, cols = image.shape[:2]
    if rows == 0 or cols == 0:
        raise ValueError("an empty image cannot be a PNG")
    flat = image.reshape(rows, cols * channels)
    filtered = np.empty((rows, cols * channels + 1), dtype=np.uint8)
    filtered[:, 0] = _FILTER_UP
    filtered[0, 1:] = flat[0]
    filtered[1:, 1:] = flat[1:] - flat[:-1]  # uint8 arithmetic wraps modulo 256, as the filter wants
    header = struct.pack(">IIBBBBB", cols, rows, 8, colour_type, 0, 0, 0)
    return (
        SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(filtered.tobytes(), level))
        + _chunk(b"IEND", b"")
    )


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR."""
    if data[:8] != SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


__all__ = ["encode_png", "png_size"]
