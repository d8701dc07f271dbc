"""Electrons on the assembled detector -> raw on-disk amplifier pixels (ADU).

Per amplifier: gain (e-/ADU) and Gaussian read noise, optional crosstalk (victim +=
coefficient x source ADU, in readout order, the convention ISR removes), optional
non-linearity (the exact inverse of the camera's polynomial), a pedestal with a
row-to-row drift that the serial overscan also sees, integer quantisation and the
saturation plateau.
"""

from __future__ import annotations

import numpy as np

from isrflow.camera.model import Camera, Detector
from isrflow.isr.amp_corrections import delinearize
from isrflow.isr.assembly import flip, readout_view


def _drift(rows: int, rng: np.random.Generator) -> np.ndarray:
    """Row-to-row pedestal drift (ADU): a slow sine plus a ramp."""
    y = np.arange(rows, dtype=np.float64)
    return (
        2.0 * np.sin(2 * np.pi * y / rng.uniform(300, 900) + rng.uniform(0, 2 * np.pi))
        + rng.uniform(-2, 2) * y / rows
    )


def raw_pixels(
    camera: Camera,
    detector: Detector,
    electrons: np.ndarray,
    saturated: np.ndarray,
    rng: np.random.Generator,
    *,
    crosstalk: bool = False,
    nonlinearity: bool = False,
) -> dict[str | None, np.ndarray]:
    """Build every HDU array of one detector's raw from its assembled electron image."""
    amps = camera.amplifiers(detector)
    adu = np.empty(electrons.shape, dtype=np.float64)
    for amp in amps:
        sl = amp.assembled.slices
        adu[sl] = electrons[sl] / amp.gain + rng.normal(0.0, amp.read_noise / amp.gain, amp.assembled.shape)
    if crosstalk:
        matrix = camera.crosstalk_matrix(detector)
        if matrix is None:
            raise ValueError(f"{camera.instrument} has no crosstalk matrix to inject")
        sources = adu.copy()
        for amp in amps:  # a source saturates at the ADC: clip it the way ISR will see it
            sources[amp.assembled.slices] = np.minimum(
                sources[amp.assembled.slices], amp.saturation - amp.bias_level
            )
        for v, victim in enumerate(amps):
            target = readout_view(adu, victim)
            for s, source in enumerate(amps):
                if s != v and matrix[v][s]:
                    target += matrix[v][s] * readout_view(sources, source)
    if nonlinearity:
        for amp in amps:
            if amp.linearity:
                adu[amp.assembled.slices] = delinearize(adu[amp.assembled.slices], amp.linearity)

    dtype = np.uint16 if camera.raw_dtype == "uint16" else np.int32
    shapes: dict[str | None, tuple[int, int]] = {}
    for amp in amps:
        h, w = shapes.get(amp.hdu, (0, 0))
        shapes[amp.hdu] = (max(h, amp.raw_box.y1), max(w, amp.raw_box.x1))
    hdus = {key: np.zeros(shape, dtype=np.float64) for key, shape in shapes.items()}
    for amp in amps:
        hdu = hdus[amp.hdu]
        rb = amp.raw_box
        pedestal = amp.bias_level + _drift(rb.y1, rng)
        noise_adu = amp.read_noise / amp.gain
        hdu[rb.slices] = pedestal[rb.y0 : rb.y1, None] + rng.normal(0.0, noise_adu, rb.shape)
        signal = flip(adu[amp.assembled.slices], amp.flip_x, amp.flip_y)
        hdu[amp.data.slices] = signal + pedestal[amp.data.y0 : amp.data.y1, None]
        full = flip(saturated[amp.assembled.slices], amp.flip_x, amp.flip_y)
        data = hdu[amp.data.slices]
        np.minimum(data, amp.saturation, out=data)
        data[full] = amp.saturation
    limit = np.iinfo(dtype)
    return {key: np.clip(np.rint(arr), limit.min, limit.max).astype(dtype) for key, arr in hdus.items()}
