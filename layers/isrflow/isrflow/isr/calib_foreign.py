"""Calibrations made by other tools, for ``isrflow isr`` on one detector.

isrflow's own calibrations are MEFs with IMAGE (and MASK, VARIANCE) extensions whose header
names the detector (``DETECTOR``), so the ISR refuses a calibration of another detector. A
master bias, dark or flat from another pipeline is often a plain FITS image: the pixels in the
primary HDU (or the first image extension) and no ``DETECTOR`` keyword. :func:`load_foreign`
reads such a file as well as isrflow's, and says in warnings what could not be checked (which
detector it is for) and what is missing (no variance: its noise is not propagated). Units are
the caller's to get right: bias in electrons (e-), dark in e-/s, flat dimensionless.

The state machines do not use this module: registered calibrations keep every check.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from isrflow.io import formats
from isrflow.io.exposure_io import Exposure
from isrflow.isr.pipeline import CALIBRATION_KINDS, CalibrationInput, Calibrations, calibration_from_bytes
from isrflow.model.errors import CalibrationError


def _plain_image(data: bytes, label: str) -> Exposure:
    """The first 2-D image of a FITS file (primary HDU or extension), as an Exposure without mask or
    variance; its header is the primary header updated with the image HDU's."""
    from astropy.io import fits

    try:
        with fits.open(io.BytesIO(data), memmap=False) as hdul:
            for hdu in hdul:
                if hdu.is_image and hdu.data is not None and np.ndim(hdu.data) == 2:
                    header = {k: v for k, v in hdul[0].header.items() if k not in ("COMMENT", "HISTORY", "")}
                    header.update(
                        {k: v for k, v in hdu.header.items() if k not in ("COMMENT", "HISTORY", "")}
                    )
                    return Exposure(image=np.asarray(hdu.data, dtype=np.float32), header=header)
    except Exception as exc:
        raise CalibrationError(f"{label}: not a readable FITS file ({type(exc).__name__}: {exc})") from None
    raise CalibrationError(
        f"{label}: holds no 2-D image (neither an isrflow calibration nor a plain FITS image)"
    )


def load_foreign(kind: str, path: str | Path, detector: int) -> tuple[CalibrationInput, list[str]]:
    """Read calibration ``kind`` (bias, dark, flat, defects) from ``path`` for native detector
    ``detector``; returns it and the warnings to show. An isrflow calibration is read as usual;
    a plain FITS image (no IMAGE extension) is accepted for bias, dark and flat. A header with no
    ``DETECTOR`` keyword gets ``detector`` (with a warning that it cannot be checked)."""
    label = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CalibrationError(f"{label}: cannot read calibration ({exc.strerror})") from None
    warnings: list[str] = []
    try:
        item = calibration_from_bytes(kind, data, label)
    except CalibrationError as exc:
        if kind == "defects" or f"no {formats.EXT_IMAGE} extension" not in str(exc):
            raise
        exposure = _plain_image(data, label)
        item = CalibrationInput(
            label=label, sha256=hashlib.sha256(data).hexdigest(), exposure=exposure, header=exposure.header
        )
        warnings.append(
            f"{label}: a plain FITS image, not an isrflow calibration: no mask or variance planes "
            f"(its noise is not propagated); read as a {kind} in isrflow's units"
        )
    if item.header.get(formats.KW_DETECTOR) is None:
        item.header[formats.KW_DETECTOR] = int(detector)
        warnings.append(
            f"{label}: no {formats.KW_DETECTOR} keyword, so it cannot be checked that this {kind} is "
            f"for detector {detector}; used as given"
        )
    return item, warnings


def load_foreign_calibrations(detector: int, **paths: str | Path | None) -> tuple[Calibrations, list[str]]:
    """:func:`load_foreign` for each of ``bias=``, ``dark=``, ``flat=``, ``defects=`` given."""
    calibs, warnings = Calibrations(), []
    for kind, path in paths.items():
        if kind not in CALIBRATION_KINDS:
            raise CalibrationError(f"unknown calibration type {kind!r}")
        if path is not None:
            item, found = load_foreign(kind, path, detector)
            setattr(calibs, kind, item)
            warnings += found
    return calibs, warnings


__all__ = ["load_foreign", "load_foreign_calibrations"]
