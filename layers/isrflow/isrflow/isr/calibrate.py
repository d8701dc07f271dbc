"""Electron-level corrections on the assembled image: gain, variance, bias, dark, flat.

Units: the image enters in overscan-subtracted ADU and leaves in electrons (e-); variance
is in e-^2. Calibrations are in assembled detector orientation: bias in e-, dark in e- per
second of dark time, flat dimensionless (normalised to ~1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from isrflow.camera.model import Amplifier
from isrflow.io import formats
from isrflow.io.exposure_io import Exposure
from isrflow.isr.masking import all_finite
from isrflow.model.errors import CalibrationError, CalibrationMismatchError

Region = tuple[tuple[slice, slice], Amplifier]


def amp_regions(amps: Sequence[Amplifier], rows: slice) -> list[Region]:
    """Each amplifier's part of a band of rows, as (index relative to the band, amp)."""
    out: list[Region] = []
    for amp in amps:
        box = amp.assembled
        lo, hi = max(box.y0, rows.start), min(box.y1, rows.stop)
        if lo < hi:
            out.append(((slice(lo - rows.start, hi - rows.start), slice(box.x0, box.x1)), amp))
    return out


def apply_gain(image: np.ndarray, regions: Sequence[Region]) -> None:
    """ADU -> e- in place, per amplifier (gain in e-/ADU)."""
    for index, amp in regions:
        image[index] *= np.float32(amp.gain)


def initial_variance(
    image: np.ndarray, regions: Sequence[Region], out: np.ndarray | None = None
) -> np.ndarray:
    """Variance (e-^2) = max(image, 0) + read_noise^2 per amplifier."""
    variance = np.maximum(image, np.float32(0.0), out=out)
    for index, amp in regions:
        variance[index] += np.float32(amp.read_noise**2)
    return variance


def subtract_bias(image: np.ndarray, variance: np.ndarray | None, mask: np.ndarray, bias: Exposure) -> None:
    """image -= bias (e-); adds the bias variance and ORs its mask."""
    image -= bias.image
    if variance is not None and bias.variance is not None:
        variance += bias.variance
    if bias.mask is not None:
        mask |= bias.mask & formats.BAD


def subtract_dark(
    image: np.ndarray,
    variance: np.ndarray | None,
    mask: np.ndarray,
    dark: Exposure,
    darktime: float,
    scratch: np.ndarray | None = None,
) -> None:
    """image -= dark_rate (e-/s) * darktime (s); variance += darktime^2 * dark variance."""
    scale = np.float32(darktime)
    tmp = np.multiply(dark.image, scale, out=scratch)
    image -= tmp
    if variance is not None and dark.variance is not None:
        np.multiply(dark.variance, scale * scale, out=tmp)
        variance += tmp
    if dark.mask is not None:
        mask |= dark.mask & formats.BAD


def divide_flat(
    image: np.ndarray,
    variance: np.ndarray | None,
    mask: np.ndarray,
    flat: Exposure,
    scratch: np.ndarray | None = None,
    positive: bool = False,
) -> None:
    """image /= flat; variance /= flat^2 (+ image^2 var_flat / flat^2); ORs the flat's BAD
    pixels, as bias and dark do. Non-positive or non-finite flat pixels are masked BAD and their
    image set to 0; ``positive=True`` says the flat has none (checked once per calibration:
    :func:`check_calibration_pixels`), which skips looking for them."""
    if flat.mask is not None:
        mask |= flat.mask & formats.BAD
    response = flat.image
    if not positive and not (response.min() > 0):  # also catches NaN
        bad = ~(response > 0)
        response = np.where(bad, np.float32(1.0), response)
        mask[bad] |= formats.BAD
        image[bad] = 0.0
    image /= response
    if variance is not None:  # (variance + image^2 var_flat) / flat^2, image already divided
        square = scratch if scratch is not None else np.empty(image.shape, dtype=np.float32)
        if flat.variance is not None:
            np.multiply(image, image, out=square)
            square *= flat.variance
            variance += square
        np.multiply(response, response, out=square)
        variance /= square


def check_calibration_pixels(label: str, kind: str, exposure: Exposure) -> bool:
    """Refuse a calibration image that would silently ruin the frame: a bias or dark that is more
    than half NaN/inf, or a flat with more than half of its pixels not finite and > 0 (an all-zero
    flat would mask every pixel). Returns whether every pixel is usable (finite, and > 0 for a
    flat)."""
    image = exposure.image
    if kind not in ("bias", "dark", "flat") or image.size == 0:
        return False
    if all_finite(image) and (kind != "flat" or float(image.min()) > 0.0):
        return True  # two reductions, no temporary planes: the usual, fully usable calibration
    usable = np.isfinite(image) if kind != "flat" else (image > 0) & np.isfinite(image)
    fraction = float(np.count_nonzero(usable)) / image.size
    if fraction < 0.5:
        what = "finite and > 0" if kind == "flat" else "finite"
        raise CalibrationError(
            f"{label}: only {fraction:.1%} of the {kind}'s pixels are {what}; it is not usable"
        )
    return False


def check_flat_filter(label: str, header: dict, physical_filter: str) -> None:
    """A flat whose FILTER keyword names another physical filter than the frame's is refused."""
    flat_filter = header.get(formats.KW_FILTER)
    if flat_filter is None or not physical_filter:
        return
    if str(flat_filter).strip() != str(physical_filter).strip():
        raise CalibrationMismatchError(
            f"{label}: is a flat for filter {str(flat_filter).strip()!r}, but the frame was taken in {physical_filter!r}"
        )
