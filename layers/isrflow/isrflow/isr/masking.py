"""Mask planes: saturation and bleed trails, defects, non-finite pixels, edges, cosmic rays.

Masks are int32 bit planes with the afw bit numbers from :mod:`isrflow.io.formats`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from isrflow.camera.model import Box
from isrflow.io import formats


def set_bits(mask: np.ndarray, where: np.ndarray, bits: int) -> None:
    """``mask[where] |= bits`` for a boolean plane ``where`` of the mask's shape, in one pass
    (no index arrays: about 2x faster on a detector)."""
    np.bitwise_or(mask, bits, out=mask, where=where)


#: Rows :func:`bits_set` takes at a time (its int32 scratch: 512 KiB of an HSC detector's rows).
_BITS_BLOCK_ROWS = 64


def bits_set(mask: np.ndarray, bits: int) -> np.ndarray:
    """``(mask & bits) != 0`` as a boolean plane, a block of rows at a time through one small
    scratch (no mask-sized temporary: about 3x faster on a detector)."""
    out = np.empty(mask.shape, dtype=bool)
    scratch = np.empty((min(_BITS_BLOCK_ROWS, mask.shape[0]), *mask.shape[1:]), dtype=mask.dtype)
    for y0 in range(0, mask.shape[0], _BITS_BLOCK_ROWS):
        block = mask[y0 : y0 + _BITS_BLOCK_ROWS]
        anded = np.bitwise_and(block, bits, out=scratch[: block.shape[0]])
        np.not_equal(anded, 0, out=out[y0 : y0 + _BITS_BLOCK_ROWS])
    return out


def all_finite(*planes: np.ndarray | None) -> bool:
    """Whether every value of the float planes given (None skipped) is finite, by one reduction
    each where they are: a sum in the plane's own type is finite only if every value is (a NaN or
    inf propagates; inf - inf is NaN). A sum that is not finite may be an overflow of finite
    values (float32 above ~3e38 in all), so the planes are then checked value by value."""
    with np.errstate(all="ignore"):
        return all(p is None or bool(np.isfinite(p.sum())) or bool(np.isfinite(p).all()) for p in planes)


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Boolean dilation by ``pixels`` in the 4-neighbourhood (Manhattan distance)."""
    out = mask
    for _ in range(pixels):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _extra_columns(width: np.ndarray) -> np.ndarray:
    """ip_isr trail widening: extra columns each side of a saturated row span of this width."""
    return np.select([width <= 5, width <= 7, width <= 9], [0, 1, 3], default=4)


def widen_trails(sat: np.ndarray) -> np.ndarray:
    """Widen each saturated row span by 0/1/3/4 columns per side for widths <=5/6-7/8-9/>=10."""
    rows = np.flatnonzero(sat.any(axis=1))
    if rows.size == 0:
        return sat
    out = sat.copy()
    sub = sat[rows]
    padded = np.zeros((sub.shape[0], sub.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = sub
    edges = np.diff(padded, axis=1)
    r_start, c_start = np.nonzero(edges == 1)
    _, c_end = np.nonzero(edges == -1)  # exclusive end column
    extra = _extra_columns(c_end - c_start)
    width = sat.shape[1]
    for r, a, b, e in zip(
        r_start[extra > 0], c_start[extra > 0], c_end[extra > 0], extra[extra > 0], strict=True
    ):
        out[rows[r], max(0, a - e) : min(width, b + e)] = True
    return out


def mask_saturation(mask: np.ndarray, sat: np.ndarray, grow_pixels: int, widen: bool, bit: int) -> None:
    """OR ``bit`` into ``mask`` over the final SAT footprint of ``sat`` (saturated pixels):
    trails optionally widened (row by row), then grown by ``grow_pixels``.

    Both steps are local, so the saturated rows are taken in groups (rows more than ``2 grow + 1``
    apart start a new group), each in a window of its rows +- ``grow_pixels``: the work follows
    the saturated rows, not the detector (a few stars' rows, not 4,176)."""
    rows = np.flatnonzero(sat.any(axis=1))
    if rows.size == 0:
        return
    breaks = np.flatnonzero(np.diff(rows) > 2 * grow_pixels + 1)
    firsts = np.concatenate(([rows[0]], rows[breaks + 1]))
    lasts = np.concatenate((rows[breaks], [rows[-1]]))
    for first, last in zip(firsts.tolist(), lasts.tolist(), strict=True):
        lo, hi = max(0, first - grow_pixels), min(sat.shape[0], last + grow_pixels + 1)
        band = sat[lo:hi]
        if widen:
            band = widen_trails(band)
        set_bits(mask[lo:hi], grow(band, grow_pixels), bit)


def mask_boxes(mask: np.ndarray, boxes: Iterable[Box], bit: int) -> None:
    """OR ``bit`` into every box (clipped to the image). Single-pixel boxes, most of a defect
    list, are ORed in one indexed operation."""
    rows, cols = mask.shape
    ys: list[int] = []
    xs: list[int] = []
    for box in boxes:
        y0, y1, x0, x1 = max(0, box.y0), min(rows, box.y1), max(0, box.x0), min(cols, box.x1)
        if y1 - y0 == 1 and x1 - x0 == 1:
            ys.append(y0)
            xs.append(x0)
        elif y0 < y1 and x0 < x1:
            mask[y0:y1, x0:x1] |= bit
    if ys:
        mask[ys, xs] |= bit  # duplicates are harmless: each ORs the same bit


def mask_non_finite(image: np.ndarray, variance: np.ndarray | None, mask: np.ndarray) -> int:
    """Non-finite image or variance pixels -> BAD; returns how many."""
    if all_finite(image, variance):
        return 0  # nothing to mask
    bad = ~np.isfinite(image)
    if variance is not None:
        bad |= ~np.isfinite(variance)
    count = int(np.count_nonzero(bad))
    if count:
        set_bits(mask, bad, formats.BAD)
    return count


def mask_edges(mask: np.ndarray, width: int) -> None:
    if width <= 0:
        return
    mask[:width, :] |= formats.EDGE
    mask[-width:, :] |= formats.EDGE
    mask[:, :width] |= formats.EDGE
    mask[:, -width:] |= formats.EDGE


def _background(image: np.ndarray, block: int = 64, stride: int = 4) -> np.ndarray:
    """A coarse background map (e-): the median of each block x block cell, sampled every
    ``stride`` pixels, expanded back to full size."""
    rows, cols = image.shape
    ny, nx = -(-rows // block), -(-cols // block)
    sampled = image[::stride, ::stride]
    cell = block // stride
    padded = np.full((ny * cell, nx * cell), np.nan, dtype=np.float32)
    padded[: sampled.shape[0], : sampled.shape[1]] = sampled
    cells = padded.reshape(ny, cell, nx, cell).transpose(0, 2, 1, 3).reshape(ny, nx, cell * cell)
    with np.errstate(all="ignore"):
        medians = np.nanmedian(cells, axis=-1).astype(np.float32)
    medians[~np.isfinite(medians)] = np.nanmedian(medians) if np.isfinite(medians).any() else 0.0
    return np.repeat(np.repeat(medians, block, axis=0), block, axis=1)[:rows, :cols]


def find_cosmic_rays(
    image: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray,
    threshold: float,
    sharpness: float,
    grow_pixels: int,
) -> np.ndarray:
    """Cosmic-ray pixels: far above the local background and much sharper than the PSF.

    A candidate exceeds the background by ``threshold`` sigma (sigma from the variance plane)
    and its excess is more than ``sharpness`` times the median excess of its 8 neighbours
    (a well-sampled star's neighbours keep most of its peak). Returns a boolean map, grown.
    """
    usable = mask == 0
    background = _background(image)
    excess = image - background
    with np.errstate(invalid="ignore"):
        candidate = usable & (excess > threshold * np.sqrt(np.maximum(variance, 1e-12)))
    hits = np.zeros(image.shape, dtype=bool)
    offsets = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
    for _ in range(3):  # later passes ignore neighbours already found (clustered hits)
        ys, xs = np.nonzero(candidate & ~hits)
        if ys.size == 0:
            break
        clean = np.where(hits, np.float32(0.0), excess) if hits.any() else excess
        padded = np.pad(clean, 1, mode="edge")  # border pixels see their edge replicated
        neighbours = np.stack([padded[ys + 1 + dy, xs + 1 + dx] for dy, dx in offsets])
        sharp = excess[ys, xs] > sharpness * np.median(neighbours, axis=0)
        if not sharp.any():
            break
        hits[ys[sharp], xs[sharp]] = True
    return grow(hits, grow_pixels) if grow_pixels else hits
