"""Defects: hot pixels from the master dark, cold pixels from the master flat(s).

After cp_pipe's ``cpDefects`` (combined-image route, STDEV thresholds; reference section 2.3),
with a local background instead of a per-amplifier mean, so that vignetting, amplifier glow
and amplifier-to-amplifier steps never look like defects:

1. background: the median of each pixel's 8 neighbours (fewer at the border), computed in
   row bands with the combine kernel;
2. noise: the robust standard deviation (0.7413 x IQR) of the residual ``image - background``
   in blocks of ``BLOCK x BLOCK`` pixels;
3. a pixel is hot when its dark residual exceeds ``N_SIGMA_HOT`` (4.8) of its block's noise,
   cold when its flat residual is below ``-N_SIGMA_COLD`` (5.0); pixels flagged BAD in a
   master (no usable input) are defects too;
4. columns: a column with at least ``COLUMN_MIN_BAD`` (50) defective pixels is filled between
   its first and last, except across good gaps of ``COLUMN_MAX_GAP`` (30) pixels or more;
5. boxes: vertical runs of defective pixels, ``Box(x, y0, 1, length)`` in assembled
   (0-based) coordinates, written as the DEFECTS table.
"""

from __future__ import annotations

import numpy as np

from isrflow.calibration.kernel import IQR_TO_SIGMA, combine_stack
from isrflow.camera.model import Box
from isrflow.io import formats
from isrflow.model.errors import CalibrationError

N_SIGMA_HOT = 4.8
N_SIGMA_COLD = 5.0
BLOCK = 64
COLUMN_MIN_BAD = 50
COLUMN_MAX_GAP = 30
_BAND_ROWS = 256


def neighbour_median(image: np.ndarray, usable: np.ndarray | None = None) -> np.ndarray:
    """Per pixel, the median of its usable 8 neighbours (NaN if none), float32."""
    rows, cols = image.shape
    padded = np.full((rows + 2, cols + 2), np.nan, dtype=np.float32)
    padded[1:-1, 1:-1] = image
    if usable is not None:
        padded[1:-1, 1:-1][~usable] = np.nan
    out = np.empty((rows, cols), dtype=np.float32)
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    for y0 in range(0, rows, _BAND_ROWS):
        y1 = min(rows, y0 + _BAND_ROWS)
        stack = np.empty((8, (y1 - y0) * cols), dtype=np.float32)
        for i, (dy, dx) in enumerate(shifts):
            stack[i] = padded[1 + y0 + dy : 1 + y1 + dy, 1 + dx : 1 + dx + cols].ravel()
        out[y0:y1] = combine_stack(stack, None, "median").image.reshape(y1 - y0, cols)
    return out


def block_sigma(residual: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Per pixel, the robust standard deviation (0.7413 x IQR) of the finite residuals of its
    ``block x block`` block."""
    rows, cols = residual.shape
    by, bx = -(-rows // block), -(-cols // block)
    padded = np.full((by * block, bx * block), np.nan, dtype=np.float32)
    padded[:rows, :cols] = residual
    blocks = padded.reshape(by, block, bx, block).transpose(0, 2, 1, 3).reshape(by * bx, block * block)
    blocks = np.sort(blocks, axis=1)  # NaN last
    n = np.isfinite(blocks).sum(axis=1)

    def quantile(q: float) -> np.ndarray:
        pos = q * np.maximum(n - 1, 0)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        rows_idx = np.arange(blocks.shape[0])
        low, high = blocks[rows_idx, lo], blocks[rows_idx, hi]
        return low + (pos - lo) * (high - low)

    with np.errstate(invalid="ignore"):
        sigma = IQR_TO_SIGMA * (quantile(0.75) - quantile(0.25))
    sigma = np.where(n >= 16, sigma, np.nan).astype(np.float32).reshape(by, bx)
    return np.repeat(np.repeat(sigma, block, axis=0), block, axis=1)[:rows, :cols]


def _outliers(image: np.ndarray, mask: np.ndarray | None, n_sigma: float, sign: int) -> np.ndarray:
    usable = np.isfinite(image)
    if mask is not None:
        usable &= (mask & formats.BAD) == 0
    residual = image - neighbour_median(image, usable)
    residual[~usable] = np.nan
    sigma = block_sigma(residual)
    with np.errstate(invalid="ignore"):
        found = (sign * residual) > n_sigma * sigma
    found[~usable] = False
    return found


def hot_pixels(dark: np.ndarray, mask: np.ndarray | None = None, n_sigma: float = N_SIGMA_HOT) -> np.ndarray:
    """Pixels of a master dark (e-/s) brighter than their neighbours by ``n_sigma``."""
    return _outliers(dark, mask, n_sigma, +1)


def cold_pixels(
    flat: np.ndarray, mask: np.ndarray | None = None, n_sigma: float = N_SIGMA_COLD
) -> np.ndarray:
    """Pixels of a master flat fainter than their neighbours by ``n_sigma``."""
    return _outliers(flat, mask, n_sigma, -1)


def fill_columns(
    defects: np.ndarray, min_bad: int = COLUMN_MIN_BAD, max_gap: int = COLUMN_MAX_GAP
) -> np.ndarray:
    """cp_pipe's column rule: fill a column with >= ``min_bad`` defects between its first and last
    defect, except across good gaps of ``max_gap`` pixels or more (in place; returned)."""
    for col in np.flatnonzero(defects.sum(axis=0) >= min_bad):
        rows = np.flatnonzero(defects[:, col])
        gaps = np.flatnonzero(np.diff(rows) - 1 >= max_gap)
        for segment in np.split(rows, gaps + 1):
            defects[segment[0] : segment[-1] + 1, col] = True
    return defects


def boxes_of(defects: np.ndarray) -> list[Box]:
    """Vertical runs of True as 1-pixel-wide boxes, ordered by column then row."""
    padded = np.zeros((defects.shape[0] + 2, defects.shape[1]), dtype=np.int8)
    padded[1:-1] = defects
    edges = np.diff(padded, axis=0)
    # np.nonzero on the transpose walks column by column, rows ascending: starts and ends pair up
    start_cols, start_rows = np.nonzero(edges.T == 1)
    _, end_rows = np.nonzero(edges.T == -1)
    return [
        Box.of(int(c), int(y0), 1, int(y1 - y0))
        for c, y0, y1 in zip(start_cols, start_rows, end_rows, strict=True)
    ]


def find_defects(
    dark: tuple[np.ndarray, np.ndarray | None] | None, flats: list[tuple[np.ndarray, np.ndarray | None]]
) -> tuple[np.ndarray, dict[str, int]]:
    """The defect map of one detector from its master dark and master flat(s) (image, mask),
    and counts by kind (hot, cold, no_data, total)."""
    images = ([dark] if dark is not None else []) + list(flats)
    if not images:
        raise CalibrationError("defects need a master dark or a master flat")
    shape = images[0][0].shape
    for image, _ in images:
        if image.shape != shape:
            raise CalibrationError(f"defects: master shapes differ ({image.shape} vs {shape})")
    hot = hot_pixels(*dark) if dark is not None else np.zeros(shape, dtype=bool)
    cold = np.zeros(shape, dtype=bool)
    for flat in flats:
        cold |= cold_pixels(*flat)
    no_data = np.zeros(shape, dtype=bool)
    for _image, mask in images:
        if mask is not None:
            no_data |= (mask & formats.BAD) != 0
    defects = fill_columns(hot | cold | no_data)
    counts = {
        "hot": int(hot.sum()),
        "cold": int(cold.sum()),
        "no_data": int(no_data.sum()),
        "total": int(defects.sum()),
    }
    return defects, counts
