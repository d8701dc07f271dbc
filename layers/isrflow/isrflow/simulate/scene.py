"""What falls on the detector: sky + stars (science), uniform illumination (flat), cosmic rays.

All images are in electrons per pixel, assembled orientation. The *truth* of a frame is the
noiseless expected signal before the flat response, i.e. what ISR should recover.
"""

from __future__ import annotations

import numpy as np

PSF_SIGMA_PX = 1.6
STAR_STAMP_HALF = 12


def science_truth(
    shape: tuple[int, int],
    rng: np.random.Generator,
    sky: float,
    n_stars: int,
    bright_fraction: float = 0.01,
    peak_max: float = 4.0e5,
) -> np.ndarray:
    """Sky (e-) plus Gaussian stars with a power-law peak distribution; a few saturate."""
    rows, cols = shape
    image = np.full(shape, sky, dtype=np.float32)
    if n_stars <= 0:
        return image
    peaks = 200.0 * (1.0 - rng.random(n_stars)) ** -1.2
    n_bright = max(1, int(bright_fraction * n_stars))
    peaks[:n_bright] = rng.uniform(0.5 * peak_max, peak_max, n_bright)
    ys = rng.uniform(0, rows, n_stars)
    xs = rng.uniform(0, cols, n_stars)
    grid = np.arange(-STAR_STAMP_HALF, STAR_STAMP_HALF + 1, dtype=np.float32)
    for peak, yc, xc in zip(peaks, ys, xs, strict=False):
        iy, ix = int(yc), int(xc)
        y0, y1 = max(0, iy - STAR_STAMP_HALF), min(rows, iy + STAR_STAMP_HALF + 1)
        x0, x1 = max(0, ix - STAR_STAMP_HALF), min(cols, ix + STAR_STAMP_HALF + 1)
        gy = np.exp(-0.5 * ((grid + iy - yc) / PSF_SIGMA_PX) ** 2)[
            (y0 - iy + STAR_STAMP_HALF) : (y1 - iy + STAR_STAMP_HALF)
        ]
        gx = np.exp(-0.5 * ((grid + ix - xc) / PSF_SIGMA_PX) ** 2)[
            (x0 - ix + STAR_STAMP_HALF) : (x1 - ix + STAR_STAMP_HALF)
        ]
        image[y0:y1, x0:x1] += np.float32(peak) * np.outer(gy, gx).astype(np.float32)
    return image


def cosmic_rays(shape: tuple[int, int], rng: np.random.Generator, count: int) -> np.ndarray:
    """Sharp cosmic-ray tracks (e-): 1-8 pixel segments carrying 800-8000 e- each."""
    rows, cols = shape
    deposit = np.zeros(shape, dtype=np.float32)
    for _ in range(count):
        length = int(rng.integers(1, 9))
        angle = rng.uniform(0, np.pi)
        y0, x0 = rng.uniform(0, rows), rng.uniform(0, cols)
        steps = np.arange(length)
        ys = np.clip((y0 + steps * np.sin(angle)).astype(int), 0, rows - 1)
        xs = np.clip((x0 + steps * np.cos(angle)).astype(int), 0, cols - 1)
        charge = rng.uniform(800.0, 8000.0)
        np.add.at(deposit, (ys, xs), np.float32(charge / length))
    return deposit


def cosmic_ray_count(
    shape: tuple[int, int], pixel_um: float, darktime: float, rate: float, rng: np.random.Generator
) -> int:
    """Poisson number of cosmic rays for a detector area (cm^2) over darktime (s); rate per cm^2 per minute."""
    area_cm2 = shape[0] * shape[1] * (pixel_um * 1e-4) ** 2
    return int(rng.poisson(rate * area_cm2 * darktime / 60.0))


def bleed(electrons: np.ndarray, full_well: np.ndarray) -> np.ndarray:
    """Move charge above the full well (e-) along columns, filling neighbours to full well.

    Returns a boolean map of the pixels at full well afterwards (they read as saturated).
    """
    over = electrons > full_well
    if not over.any():
        return over
    rows = electrons.shape[0]
    for col in np.flatnonzero(over.any(axis=0)):
        column = electrons[:, col]
        well = full_well[:, col]
        hot = np.flatnonzero(column > well)
        # group contiguous over-full rows into runs and spill each run's excess both ways
        breaks = np.flatnonzero(np.diff(hot) > 1)
        for run in np.split(hot, breaks + 1):
            excess = float(np.sum(column[run] - well[run]))
            column[run] = well[run]
            up, down = int(run[-1]) + 1, int(run[0]) - 1
            half = [excess / 2.0, excess / 2.0]
            for side, step in ((0, 1), (1, -1)):
                pos = up if step == 1 else down
                while half[side] > 0 and 0 <= pos < rows:
                    room = float(well[pos] - column[pos])
                    if room > 0:
                        take = min(room, half[side])
                        column[pos] += take
                        half[side] -= take
                    pos += step
        electrons[:, col] = column
    return electrons >= full_well
