"""Row-wise linear interpolation over masked pixels (ip_isr's legacy algorithm, 1-D along rows)."""

from __future__ import annotations

import numpy as np


def _runs(bad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row-major runs of bad pixels: (row, first column, end column exclusive) per run, plus the
    pixels' (row, column) and each pixel's run index. Beyond one scan of ``bad``, work is
    proportional to the bad pixels (a flat scan: ``np.nonzero`` of a 2-D plane is ~10x slower)."""
    ys, xs = np.divmod(np.flatnonzero(bad), bad.shape[1])
    if ys.size == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, empty, ys, xs
    new_run = np.ones(ys.size, dtype=bool)
    new_run[1:] = (ys[1:] != ys[:-1]) | (xs[1:] != xs[:-1] + 1)
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], ys.size)
    return ys[starts], xs[starts], xs[ends - 1] + 1, ys, xs


def interpolate_rows(
    image: np.ndarray,
    bad: np.ndarray,
    variance: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    flag: int = 0,
) -> int:
    """Replace ``bad`` pixels in place by linear interpolation between the good pixels bounding
    each bad run in its row (one-sided at the row ends; the median of good pixels where a
    whole row is bad). The variance plane, if given, is interpolated the same way; ``flag`` is
    ORed into ``mask`` at every interpolated pixel. Returns the number of interpolated pixels."""
    run_row, run_x0, run_x1, ys, xs = _runs(bad)
    if ys.size == 0:
        return 0
    width = image.shape[1]
    lengths = run_x1 - run_x0
    pix_run = np.repeat(np.arange(run_row.size), lengths)
    has_l = run_x0 > 0
    has_r = run_x1 < width
    left_x = np.where(has_l, run_x0 - 1, 0)
    right_x = np.where(has_r, run_x1, width - 1)
    frac = ((xs - left_x[pix_run]) / (right_x - left_x)[pix_run].clip(min=1)).astype(np.float32)
    planes = [image] if variance is None else [image, variance]
    for plane in planes:
        vl = plane[run_row, left_x]
        vr = plane[run_row, right_x]
        value = np.where(has_l & has_r, np.nan, np.where(has_l, vl, vr)).astype(np.float32)
        both = has_l & has_r
        if (~has_l & ~has_r).any():
            value[~has_l & ~has_r] = np.median(plane[~bad]) if (~bad).any() else 0.0
        vl_p, vr_p = vl[pix_run], vr[pix_run]
        filled = np.where(both[pix_run], vl_p + (vr_p - vl_p) * frac, value[pix_run])
        plane[ys, xs] = filled
    if mask is not None and flag:
        mask[ys, xs] |= flag
    return int(ys.size)
