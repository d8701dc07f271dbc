"""ISR of one detector, composing the step modules in a fixed order.

Order (each step switchable in :class:`IsrConfig`; steps without their calibration are
skipped and recorded as not applied):

1. SAT / SUSPECT flags on the raw ADU (pedestal included);
2. serial (and optional parallel) overscan per amplifier -> assembled, trimmed ADU image;
3. linearity per amplifier (polynomial in overscan-subtracted ADU);
4. crosstalk between amplifiers in readout order;
5. (trim and assemble happen while placing each amplifier in step 2);
6. gain -> electrons; variance = max(image, 0) + read_noise^2 (e-^2);
7. bias (e-), dark (e-/s x dark time), flat;
8. defects (BAD), non-finite pixels (BAD), EDGE, saturation trail widening and growth,
   optional cosmic rays (CR); interpolation along rows over the configured planes (INTRP).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from isrflow import __version__
from isrflow.camera.model import Box
from isrflow.io import formats
from isrflow.io.exposure_io import Exposure, check_calibration, read_defects, read_exposure, read_file_sha256
from isrflow.io.rawio import RawDetector
from isrflow.isr import masking
from isrflow.isr.amp_corrections import apply_crosstalk, apply_linearity
from isrflow.isr.assembly import flip
from isrflow.isr.calibrate import check_calibration_pixels, check_flat_filter
from isrflow.isr.config import IsrConfig
from isrflow.isr.electron_steps import ElectronSteps
from isrflow.isr.interpolate import interpolate_rows
from isrflow.isr.overscan import parallel_levels, serial_levels
from isrflow.model.errors import ConfigError

STEP_NAMES = (
    "SATURATION",
    "OVERSCAN",
    "LINEARITY",
    "CROSSTALK",
    "ASSEMBLE",
    "GAIN",
    "VARIANCE",
    "BIAS",
    "DARK",
    "FLAT",
    "DEFECTS",
    "NANMASK",
    "EDGE",
    "CRMASK",
    "INTERP",
)


@dataclass
class CalibrationInput:
    """One calibration as used: its data, a label (file name) and the sha256 of its bytes."""

    label: str
    sha256: str
    exposure: Exposure | None = None
    defects: list[Box] | None = None
    header: dict[str, Any] = field(default_factory=dict)
    #: Set by the first ISR that uses it (a cached calibration serves many quanta): its pixels
    #: passed :func:`check_calibration_pixels`, and where its mask has BAD (the only plane ISR
    #: ORs into the output's mask): ``bad_pixels``, the sorted flat indices, when they are few
    #: (ORed one by one: no pass over the planes), else None and ``has_bad`` (a whole-plane OR).
    pixels_checked: bool = False
    has_bad: bool = True
    bad_pixels: np.ndarray | None = None
    #: Also set once checked: every pixel is usable (finite; and > 0 for a flat, so ISR need not
    #: look for pixels to mask in each frame).
    all_usable: bool = False


CALIBRATION_KINDS = ("bias", "dark", "flat", "defects")


@dataclass
class Calibrations:
    bias: CalibrationInput | None = None
    dark: CalibrationInput | None = None
    flat: CalibrationInput | None = None
    defects: CalibrationInput | None = None


def _read_bytes(
    source: str | os.PathLike[str] | bytes, label: str
) -> tuple[bytes | memoryview, str, str | None]:
    """The calibration's bytes, its label and, for a file, its sha256 (hashed as it is read):
    a copy of bytes given (never changed), a file read into a fresh buffer that the calibration
    may take over (``consume``)."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), label or "<bytes>", None
    from isrflow.model.errors import CalibrationError

    try:
        data, sha = read_file_sha256(source)
    except OSError as exc:
        raise CalibrationError(f"{label or source}: cannot read calibration ({exc.strerror})") from None
    return data, label or str(source), sha


def calibration_from_bytes(
    kind: str,
    data: bytes | memoryview,
    label: str,
    expected_sha256: str | None = None,
    consume: bool = False,
    sha256: str | None = None,
) -> CalibrationInput:
    """Parse one calibration (``bias``, ``dark``, ``flat`` or ``defects``) from its file bytes.

    With ``expected_sha256`` (the registered checksum) bytes that no longer match it raise
    ChecksumMismatchError: a registered calibration altered on disk is never used. With
    ``consume`` (bytes the caller gives up) its planes may be made of ``data`` itself, checked
    first (:func:`isrflow.io.exposure_io.read_exposure`). ``sha256``: the digest of ``data``
    where the caller computed it as it read them (:func:`isrflow.io.exposure_io.read_file_sha256`).
    """
    if kind not in CALIBRATION_KINDS:
        raise ConfigError(f"unknown calibration type {kind!r}")
    sha = sha256 or hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and sha != expected_sha256:
        from isrflow.model.errors import ChecksumMismatchError

        raise ChecksumMismatchError(
            f"{label}: {kind} sha256 is {sha[:16]}..., the registry recorded "
            f"{expected_sha256[:16]}... (the file changed after registration)"
        )
    if kind == "defects":
        boxes, header = read_defects(data, label)
        return CalibrationInput(label=label, sha256=sha, defects=boxes, header=header)
    exposure = read_exposure(data, label, consume=consume)
    return CalibrationInput(label=label, sha256=sha, exposure=exposure, header=exposure.header)


def _load_one(kind: str, source: str | os.PathLike[str] | bytes) -> CalibrationInput:
    data, label, sha = _read_bytes(source, "" if isinstance(source, (bytes, bytearray)) else str(source))
    return calibration_from_bytes(kind, data, label, consume=True, sha256=sha)  # bytes given were copied


def load_calibrations(**sources: str | os.PathLike[str] | bytes | None) -> Calibrations:
    """Read calibrations given as paths or bytes: ``bias=``, ``dark=``, ``flat=``, ``defects=``."""
    calibs = Calibrations()
    for kind, source in sources.items():
        if kind not in CALIBRATION_KINDS:
            raise ConfigError(f"unknown calibration type {kind!r}")
        if source is not None:
            setattr(calibs, kind, _load_one(kind, source))
    return calibs


def load_calibrations_async(**sources: str | os.PathLike[str] | bytes | None) -> PendingCalibrations:
    """Like :func:`load_calibrations`, in background threads: the result is a Future that
    :func:`run_isr` accepts, resolving it only after the raw's overscan and assembly, so
    reading and checksumming the calibrations overlaps with that work."""
    for kind in sources:
        if kind not in CALIBRATION_KINDS:
            raise ConfigError(f"unknown calibration type {kind!r}")
    return PendingCalibrations(
        {kind: _pool().submit(_load_one, kind, src) for kind, src in sources.items() if src is not None}
    )


class _Resolvable(Protocol):
    """A calibration being read: a Future, or anything whose ``result()`` waits for one."""

    def result(self) -> CalibrationInput: ...


class PendingCalibrations:
    """Calibrations being read in background threads; :meth:`result` waits for them in the
    caller's thread (never in a pool thread, so the pool cannot deadlock on itself)."""

    def __init__(self, parts: Mapping[str, _Resolvable]):
        self.parts = parts

    def result(self) -> Calibrations:
        return Calibrations(**{kind: future.result() for kind, future in self.parts.items()})


def _level(threshold: float, data: np.ndarray) -> float | int:
    """``threshold`` (ADU) for comparing with ``data``: for integer pixels the smallest integer
    >= it (the same pixels pass), so the comparison runs in the pixels' own type, not float64."""
    return math.ceil(threshold) if data.dtype.kind in "iu" and math.isfinite(threshold) else threshold


def _overscan_subtract(
    raw: RawDetector,
    config: IsrConfig,
    image: np.ndarray,
    sat: np.ndarray,
    suspect: np.ndarray,
    stats: dict[str, float],
) -> None:
    """Steps 1, 2 and 5: flag, overscan-correct and place every amplifier."""
    for amp in raw.amplifiers:
        hdu = raw.amp_pixels(amp)
        data = hdu[amp.data.slices]
        source = flip(data, amp.flip_x, amp.flip_y)
        if config.saturation.enabled:  # compared straight into the assembled flag planes
            np.greater_equal(source, _level(amp.saturation, data), out=sat[amp.assembled.slices])
            if config.saturation.suspect and amp.suspect is not None:
                np.greater_equal(source, _level(amp.suspect, data), out=suspect[amp.assembled.slices])
        target = image[amp.assembled.slices]
        if not config.overscan.enabled:
            target[...] = source
            continue
        oscan = hdu[amp.serial_overscan.slices].astype(np.float32)
        oscan[oscan >= amp.saturation] = np.nan
        rows = slice(amp.data.y0 - amp.serial_overscan.y0, amp.data.y1 - amp.serial_overscan.y0)
        levels = serial_levels(oscan[rows], config.overscan)
        stats[amp.name] = float(np.median(levels))
        if amp.flip_y:
            levels = levels[::-1]
        np.subtract(source, levels[:, None], out=target, casting="unsafe")  # convert + subtract in one pass
        if config.overscan.parallel and amp.parallel_overscan is not None:
            po = amp.parallel_overscan
            corner = hdu[po.y0 : po.y1, amp.serial_overscan.x0 : amp.serial_overscan.x1]
            columns = parallel_levels(hdu[po.slices], corner, config.overscan)
            if amp.flip_x:
                columns = columns[::-1]
            target -= columns[None, :]


#: Calibrations with BAD on at most this fraction of their pixels OR them in by index.
_FEW_BAD = 1 / 16


_POOL: ThreadPoolExecutor | None = None
_BAND_ROWS = 256


def _threads() -> int:
    """Threads for the per-pixel steps: the CPUs this process may run on, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="isr-band")
    return _POOL


def _bands(rows: int) -> list[slice]:
    """Row bands for the per-pixel steps: one per thread, or one band for small images."""
    n = _threads() if rows >= 2 * _BAND_ROWS else 1
    edges = np.linspace(0, rows, n + 1).astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def _check(label: str, item: CalibrationInput, kind: str, raw: RawDetector, shape: tuple[int, int]) -> None:
    calib_shape = item.exposure.shape if item.exposure is not None else None
    check_calibration(label, item.header, kind, raw.obs.instrument, raw.detector.id, shape, calib_shape)
    if kind == "flat":
        check_flat_filter(label, item.header, raw.obs.physical_filter)
    if item.exposure is not None and not item.pixels_checked:  # once per (cached) calibration
        all_usable = check_calibration_pixels(label, kind, item.exposure)
        mask = item.exposure.mask
        has_bad, bad_pixels = False, None
        if mask is not None:
            bad = np.flatnonzero(np.bitwise_and(mask, formats.BAD))
            has_bad = bad.size > 0
            bad_pixels = bad if bad.size <= mask.size * _FEW_BAD else None
        # set together, once known: a cached calibration may serve another thread's quantum meanwhile
        item.bad_pixels, item.has_bad, item.all_usable = bad_pixels, has_bad, all_usable
        item.pixels_checked = True


def run_isr(
    raw: RawDetector,
    calibs: Calibrations | PendingCalibrations | None = None,
    config: IsrConfig | None = None,
) -> Exposure:
    """Instrument signature removal of one raw detector: the postISRCCD exposure.

    Steps run in the order of :data:`STEP_NAMES` (saturation, overscan, linearity, crosstalk,
    assembly, gain, variance, bias, dark, flat, defects, NaN masking, edges, cosmic rays,
    interpolation); a step whose calibration is not supplied, or that ``config`` turns off, is
    skipped and recorded as not applied in the exposure's metadata.

    Parameters
    ----------
    raw : RawDetector
        One detector's raw amplifiers (ADU) and its camera geometry (:func:`isrflow.io.rawio.read_raw`).
    calibs : Calibrations or PendingCalibrations, optional
        Master bias (e-), dark (e-/s), flat (normalised, unitless) and defects of this detector.
        :class:`PendingCalibrations` (:func:`load_calibrations_async`) are resolved after the
        overscan/assembly stage. Each is checked against the raw (detector, shape, filter for the
        flat) before it is applied.
    config : IsrConfig, optional
        Which steps run and their parameters (default: every step on, the reference defaults).

    Returns
    -------
    Exposure
        IMAGE in electrons (float32), VARIANCE in e-^2 (float32), MASK bit planes (int32,
        :mod:`isrflow.io.formats`), with the steps applied and the overscan statistics in its metadata.

    Raises
    ------
    CalibrationMismatchError
        A calibration is for another detector, shape or filter.
    CalibrationError
        A calibration's pixels are unusable (e.g. a NaN bias or a zero flat).
    """
    config = config or IsrConfig()
    cam, amps = raw.camera, raw.amplifiers
    shape = cam.assembled_shape(raw.detector)
    applied = dict.fromkeys(STEP_NAMES, False)

    image = np.empty(shape, dtype=np.float32)
    mask = np.zeros(shape, dtype=np.int32)
    sat = np.zeros(shape, dtype=bool)
    suspect = np.zeros(shape, dtype=bool)
    overscan_stats: dict[str, float] = {}
    _overscan_subtract(raw, config, image, sat, suspect, overscan_stats)
    if isinstance(calibs, PendingCalibrations):
        calibs = calibs.result()
    calibs = calibs or Calibrations()
    for kind in CALIBRATION_KINDS:
        item = getattr(calibs, kind)
        if item is not None and getattr(config, kind):
            _check(item.label, item, kind, raw, shape)
    applied["SATURATION"] = config.saturation.enabled
    applied["OVERSCAN"] = config.overscan.enabled
    applied["ASSEMBLE"] = True

    if config.linearity.enabled:
        applied["LINEARITY"] = apply_linearity(image, amps, config.linearity.coefficients)
    if config.crosstalk.enabled:
        matrix = config.crosstalk.matrix or cam.crosstalk_matrix(raw.detector)
        if matrix is None:
            raise ConfigError(
                f"{raw.source}: crosstalk is enabled but {cam.instrument} has no crosstalk matrix"
            )
        apply_crosstalk(image, amps, matrix)
        applied["CROSSTALK"] = True

    variance = np.empty(shape, dtype=np.float32) if (config.gain and config.variance) else None
    steps = ElectronSteps(config, calibs, amps, raw.obs.darktime)
    bands = _bands(shape[0])
    if len(bands) == 1:
        steps(image, variance, mask, bands[0])
    else:  # numpy releases the GIL: row bands run on all cores
        list(_pool().map(lambda band: steps(image, variance, mask, band), bands))
    applied.update(steps.applied)

    if config.defects and calibs.defects is not None:
        masking.mask_boxes(mask, calibs.defects.defects or [], formats.BAD)
        applied["DEFECTS"] = True
    n_nan = 0
    if config.nan_masking:  # only the blocks found with non-finite values
        for rows in steps.non_finite:
            n_nan += masking.mask_non_finite(
                image[rows], None if variance is None else variance[rows], mask[rows]
            )
        applied["NANMASK"] = True
    if config.edge_width:
        masking.mask_edges(mask, config.edge_width)
        applied["EDGE"] = True
    if config.saturation.enabled:
        masking.mask_saturation(
            mask, sat, config.saturation.grow, config.saturation.widen_trails, formats.SAT
        )
        if suspect.any():
            masking.set_bits(mask, suspect, formats.SUSPECT)
    if config.cosmic_rays.enabled and variance is not None:
        crs = masking.find_cosmic_rays(
            image,
            variance,
            mask,
            config.cosmic_rays.threshold,
            config.cosmic_rays.sharpness,
            config.cosmic_rays.grow,
        )
        masking.set_bits(mask, crs, formats.CR)
        applied["CRMASK"] = True
    n_interp = 0
    if config.interpolate:
        bits = 0
        for plane in config.interpolate_planes:
            if plane not in formats.MASK_BITS:
                raise ConfigError(f"interpolate_planes: unknown mask plane {plane!r}")
            bits |= 1 << formats.MASK_BITS[plane]
        to_fix = masking.bits_set(mask, bits)
        if n_nan:
            to_fix |= ~np.isfinite(image)
        n_interp = interpolate_rows(image, to_fix, variance, mask=mask, flag=formats.INTRP)
        applied["INTERP"] = True

    header = _output_header(raw, calibs, applied, overscan_stats, n_nan, n_interp)
    return Exposure(image=image, mask=mask, variance=variance, header=header)


def _output_header(
    raw: RawDetector,
    calibs: Calibrations,
    applied: dict[str, bool],
    overscan: dict[str, float],
    n_nan: int,
    n_interp: int,
) -> dict[str, Any]:
    obs = raw.obs
    header: dict[str, Any] = {
        formats.KW_INSTRUMENT: obs.instrument,
        formats.KW_DETECTOR: obs.detector,
        formats.KW_DETNAME: obs.detector_name,
        formats.KW_EXPOSURE: obs.exposure,
        formats.KW_CALIB_TYPE: obs.obs_type,
        formats.KW_FILTER: obs.physical_filter,
        "EXPTIME": obs.exptime,
        formats.KW_DARKTIME: obs.darktime,
        "DATE-BEG": obs.begin.isoformat(),
        "DATE-END": obs.end.isoformat(),
        formats.KW_UNITS: "electron" if applied["GAIN"] else "adu",
        formats.KW_SOFTWARE: (__version__, "isrflow version"),
        "ISRSTEPS": ",".join(k for k, v in applied.items() if v),
        "NUMNANS": (n_nan, "non-finite pixels masked"),
        "NINTERP": (n_interp, "interpolated pixels"),
        "RAWFILE": Path(raw.source).name,
    }
    for step, done in applied.items():
        header[f"HIERARCH ISR {step}"] = done
    for kind, key in (("bias", "BIAS"), ("dark", "DARK"), ("flat", "FLAT"), ("defects", "DEFECTS")):
        item = getattr(calibs, kind)
        if item is not None and applied[key]:
            header[f"{key[:4]}FILE"] = Path(item.label).name
            header[f"{key[:4]}SHA"] = item.sha256
    for amp, level in overscan.items():
        header[f"HIERARCH ISR OSCAN {amp}"] = round(level, 3)
    return header
