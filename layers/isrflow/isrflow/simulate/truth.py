"""The true instrument signatures of one simulated detector (assembled orientation).

- bias structure in e- (a fixed 2-D pattern on top of the overscan-tracked pedestal);
- dark current rate in e- per second of dark time (uniform + amplifier glow + hot pixels
  and a hot column);
- flat response, dimensionless (vignetting from the focal-plane position x pixel-to-pixel
  x per-amplifier QE; dead pixels near 0);
- defects: the boxes of every hot pixel, dead pixel and bad column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isrflow.camera.model import Box, Camera, Detector

#: Focal-plane radius (mm) at which vignetting reaches its full depth, per instrument.
VIGNETTING_RADIUS_MM = {"HSC": 270.0, "LSSTCam": 320.0, "DECam": 220.0}
VIGNETTING_DEPTH = 0.12


@dataclass
class TrueSignatures:
    bias: np.ndarray  # e-
    dark: np.ndarray  # e-/s
    flat: np.ndarray  # dimensionless
    defects: list[Box]


def make_signatures(camera: Camera, detector: Detector, rng: np.random.Generator) -> TrueSignatures:
    """Draw one detector's signatures; deterministic for a given generator state."""
    rows, cols = camera.assembled_shape(detector)
    amps = camera.amplifiers(detector)
    y = np.linspace(-1.0, 1.0, rows, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, cols, dtype=np.float32)[None, :]

    column_pattern = rng.normal(0.0, 1.5, cols).astype(np.float32)[None, :]
    bias = (2.0 * x + 1.0 * y * y + column_pattern).astype(np.float32)

    dark = np.full((rows, cols), 0.02, dtype=np.float32)
    for amp in amps:  # amplifier glow near each amp's readout corner
        sub = dark[amp.assembled.slices]
        gy = np.exp(-np.arange(sub.shape[0], dtype=np.float32) / 40.0)[:, None]
        if amp.flip_y != (amp.readout_corner in ("UR", "UL")):
            gy = gy[::-1]
        sub += 0.05 * gy

    scale = camera.pixel_size_um / 1000.0
    fx = detector.x_mm + (np.arange(cols, dtype=np.float32) - cols / 2) * scale
    fy = detector.y_mm + (np.arange(rows, dtype=np.float32) - rows / 2) * scale
    r_max = VIGNETTING_RADIUS_MM.get(camera.instrument, 100.0)
    r2 = (fx[None, :] ** 2 + fy[:, None] ** 2) / (r_max * r_max)
    flat = (1.0 - VIGNETTING_DEPTH * np.minimum(r2, 1.5)).astype(np.float32)
    flat *= rng.normal(1.0, 0.01, (rows, cols)).astype(np.float32)
    for amp in amps:
        flat[amp.assembled.slices] *= np.float32(rng.normal(1.0, 0.02))

    n_pixels = rows * cols
    n_hot = max(2, n_pixels // 40000)
    n_dead = max(2, n_pixels // 60000)
    defects: list[Box] = []
    taken: set[tuple[int, int]] = set()

    def _free_pixel() -> tuple[int, int]:
        while True:
            py, px = int(rng.integers(2, rows - 2)), int(rng.integers(2, cols - 2))
            if (py, px) not in taken:
                taken.add((py, px))
                return py, px

    for _ in range(n_hot):
        py, px = _free_pixel()
        dark[py, px] = np.float32(rng.uniform(20.0, 200.0))
        defects.append(Box.of(px, py, 1, 1))
    for _ in range(n_dead):
        py, px = _free_pixel()
        flat[py, px] = np.float32(rng.uniform(0.0, 0.05))
        defects.append(Box.of(px, py, 1, 1))
    col = int(rng.integers(3, cols - 3))
    start = int(rng.integers(0, rows // 2))
    dark[start:, col] += np.float32(5.0)
    defects.append(Box.of(col, start, 1, rows - start))
    return TrueSignatures(bias=bias, dark=dark, flat=flat, defects=defects)
