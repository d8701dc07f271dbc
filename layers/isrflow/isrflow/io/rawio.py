"""Reading raw frames: FITS (path or bytes) -> camera, detector, observation and amp pixels.

Three on-disk layouts are understood (``Camera.raw_format``):

- ``single_hdu`` (HSC): one image per detector file, all amplifiers side by side;
- ``amp_hdus`` (LSSTCam, generic): one image extension per amplifier;
- ``exposure_mef`` (DECam): one extension per detector in a whole-exposure file.

Every failure is an :class:`IsrInputError` (or subclass) naming the file and what is wrong.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from isrflow.camera import Camera, Detector, camera_for_instrument, load_camera
from isrflow.camera.generic import camera_from_headers
from isrflow.camera.model import Amplifier
from isrflow.camera.translators import generic_detector_id, translate
from isrflow.model.errors import CameraError, IsrInputError, MissingHeaderKeywordError
from isrflow.model.observation import ObservationInfo

Source = str | os.PathLike[str] | bytes


@dataclass
class RawDetector:
    """One detector of a raw frame, ready for ISR.

    ``pixels`` maps an amplifier's HDU key (its EXTNAME, or None for the detector's own HDU)
    to the on-disk integer array; amplifier boxes index into those arrays.
    """

    source: str
    camera: Camera
    camera_name: str
    detector: Detector
    amplifiers: list[Amplifier]
    pixels: dict[str | None, np.ndarray]
    header: dict[str, Any]
    obs: ObservationInfo

    def amp_pixels(self, amp: Amplifier) -> np.ndarray:
        """The whole HDU array the amplifier lives in."""
        return self.pixels[amp.hdu]


def source_name(source: Source, name: str = "") -> str:
    if name:
        return name
    return "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)


def _open(source: Source, name: str) -> fits.HDUList:
    """Open FITS from a path or bytes; IsrInputError for anything that is not readable FITS."""
    try:
        if isinstance(source, (bytes, bytearray)):
            handle: Any = io.BytesIO(source)
        else:
            path = Path(source)
            if not path.is_file():
                raise IsrInputError(f"{name}: no such file")
            handle = str(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error", AstropyUserWarning)
            hdul = fits.open(handle, memmap=False, lazy_load_hdus=False)
        try:
            _check_headers(hdul, name)
        except BaseException:
            hdul.close()
            raise
        return hdul
    except IsrInputError:
        raise
    except AstropyUserWarning as exc:
        raise IsrInputError(f"{name}: FITS file is damaged or truncated ({exc})") from None
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError... for bad FITS
        raise IsrInputError(f"{name}: not a readable FITS file ({type(exc).__name__}: {exc})") from None


def _check_headers(hdul: fits.HDUList, name: str) -> None:
    """Parse every header card now: an unparsable card or a string value with non-printable
    characters is an IsrInputError naming the HDU and keyword (not an astropy error later)."""
    for index, hdu in enumerate(hdul):
        for card in hdu.header.cards:
            try:
                value = card.value
            except Exception as exc:
                raise MissingHeaderKeywordError(
                    f"{name}: header card {card.keyword or '?'} of HDU {index} cannot be parsed ({exc})"
                ) from None
            if isinstance(value, str) and not (value.isascii() and value.isprintable()):
                raise MissingHeaderKeywordError(
                    f"{name}: header keyword {card.keyword} of HDU {index} holds non-printable characters {value!r}"
                )


def _data(hdu: fits.ImageHDU | fits.PrimaryHDU, name: str) -> np.ndarray:
    """Read one HDU's pixels, refusing truncated data."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", AstropyUserWarning)
            data = hdu.data
    except Exception as exc:
        raise IsrInputError(f"{name}: pixel data of HDU {hdu.name!r} cannot be read ({exc})") from None
    expected = tuple(hdu.header.get(f"NAXIS{i}", 0) for i in range(hdu.header.get("NAXIS", 0), 0, -1))
    if data is None or data.shape != expected:
        got = None if data is None else data.shape
        raise IsrInputError(f"{name}: HDU {hdu.name!r} is truncated (pixels {got}, header says {expected})")
    return data


def _require_finite(pixels: np.ndarray, where: str) -> None:
    """An amplifier's imaging pixels must not be all NaN/inf (integer pixels always pass)."""
    if pixels.dtype.kind == "f" and pixels.size and not np.isfinite(pixels).any():
        raise IsrInputError(f"{where}: every imaging pixel is NaN or infinite")


def _merged(primary: fits.Header, ext: fits.Header | None) -> dict[str, Any]:
    merged = {k: v for k, v in primary.items() if k not in ("COMMENT", "HISTORY", "")}
    if ext is not None:
        merged.update({k: v for k, v in ext.items() if k not in ("COMMENT", "HISTORY", "")})
    return merged


def _image_hdus(hdul: fits.HDUList) -> list[Any]:
    return [h for h in hdul if h.is_image and h.header.get("NAXIS", 0) == 2]


def detect_camera(hdul: fits.HDUList, name: str, camera: str | None = None) -> str:
    """The camera name of an open raw: explicit, or from INSTRUME, or generic if it has DATASECs."""
    if camera:
        load_camera(camera)  # validates the name
        return camera.lower()
    primary = hdul[0].header
    instrume = primary.get("INSTRUME")
    known = camera_for_instrument(instrume) if instrume is not None else None
    if known is None and str(primary.get("EXP-ID", "")).startswith("HSC"):
        known = "hsc"  # some HSC raws carry no INSTRUME; their frame ids say HSC
    if known:
        return known
    if any("DATASEC" in h.header and "DETSEC" in h.header for h in hdul[1:]):
        return "generic"
    raise IsrInputError(
        f"{name}: not a raw of a known camera (INSTRUME={instrume!r}, no amplifier HDUs with DATASEC)"
    )


def _detector_hdus(hdul: fits.HDUList, cam: Camera, name: str) -> dict[int, Any]:
    """exposure_mef: detector id -> its HDU (by EXTNAME, else by CCDNUM)."""
    by_name = {d.name: d for d in cam.detectors}
    found: dict[int, Any] = {}
    for hdu in hdul[1:]:
        det = by_name.get(str(hdu.header.get("EXTNAME", "")).strip())
        if det is None and hdu.header.get("CCDNUM") is not None:
            try:
                det = cam.detector(int(hdu.header["CCDNUM"]))
            except CameraError:
                det = None
        if det is not None and hdu.is_image:
            found[det.id] = hdu
    if not found:
        raise IsrInputError(f"{name}: no {cam.instrument} detector extensions found")
    return found


def _generic_camera(hdul: fits.HDUList, name: str) -> tuple[Camera, dict[str, Any]]:
    amp_hdus = [h for h in hdul[1:] if h.is_image and h.header.get("NAXIS", 0) == 2]  # each must have DATASEC
    primary = hdul[0].header
    first = amp_hdus[0].header if amp_hdus else None
    merged = _merged(primary, first)
    obs = translate("generic", merged, name)
    entries = []
    for h in amp_hdus:
        extname = str(h.header.get("EXTNAME") or f"HDU{hdul.index(h)}")
        shape = (int(h.header["NAXIS2"]), int(h.header["NAXIS1"]))
        entries.append((extname, shape, h.header))
    cam = camera_from_headers(obs.instrument, obs.detector, obs.detector_name, entries, name)
    return cam, merged


def read_observations(source: Source, name: str = "", camera: str | None = None) -> list[ObservationInfo]:
    """Translate the headers of a raw file: one ObservationInfo per detector it holds."""
    name = source_name(source, name)
    with _open(source, name) as hdul:
        cam_name = detect_camera(hdul, name, camera)
        if cam_name == "generic":
            _, merged = _generic_camera(hdul, name)
            return [translate("generic", merged, name)]
        cam = load_camera(cam_name)
        primary = hdul[0].header
        if cam.raw_format == "exposure_mef":
            return [
                translate(cam_name, _merged(primary, h.header), name)
                for h in _detector_hdus(hdul, cam, name).values()
            ]
        ext = hdul[1].header if cam.raw_format == "amp_hdus" and len(hdul) > 1 else None
        return [translate(cam_name, _merged(primary, ext), name)]


def read_raw(
    source: Source, camera: str | None = None, detector: int | str | None = None, name: str = ""
) -> RawDetector:
    """Read one detector of a raw file with its pixels and observation metadata.

    ``detector`` is required only for files holding several detectors (DECam exposures).
    """
    name = source_name(source, name)
    with _open(source, name) as hdul:
        cam_name = detect_camera(hdul, name, camera)
        primary = hdul[0].header
        if cam_name == "generic":
            cam, merged = _generic_camera(hdul, name)
            det = cam.detectors[0]
            hdus = {h.header.get("EXTNAME"): h for h in hdul[1:]}
            obs = translate("generic", merged, name)
            if detector is not None and str(detector).strip() not in (str(det.id), det.name):
                raise IsrInputError(f"{name}: holds detector {det.id} ({det.name}), not {detector}")
        else:
            cam = load_camera(cam_name)
            if cam.raw_format == "exposure_mef":
                by_id = _detector_hdus(hdul, cam, name)
                if detector is None:
                    if len(by_id) != 1:
                        raise IsrInputError(
                            f"{name}: holds {len(by_id)} detectors; say which one (--detector)"
                        )
                    det = cam.detector(next(iter(by_id)))
                else:
                    det = cam.detector(detector)
                if det.id not in by_id:
                    raise IsrInputError(
                        f"{name}: has no extension for {cam.instrument} detector {det.id} ({det.name})"
                    )
                hdus = {None: by_id[det.id]}
                merged = _merged(primary, by_id[det.id].header)
            elif cam.raw_format == "single_hdu":
                image = next((h for h in _image_hdus(hdul)), None)
                if image is None:
                    raise IsrInputError(f"{name}: has no 2-D image HDU")
                hdus = {None: image}
                merged = _merged(primary, image.header if image is not hdul[0] else None)
            else:
                hdus = {h.header.get("EXTNAME"): h for h in hdul[1:]}
                first = next(iter(hdus.values()), None)
                merged = _merged(primary, first.header if first is not None else None)
            obs = translate(cam_name, merged, name)
            det = cam.detector(obs.detector) if cam.raw_format != "exposure_mef" else det
            if detector is not None and cam.detector(detector).id != det.id:
                raise IsrInputError(f"{name}: holds detector {det.id} ({det.name}), not {detector}")
        amps = cam.amplifiers(det)
        pixels: dict[str | None, np.ndarray] = {}
        for amp in amps:
            if amp.hdu in pixels:
                continue
            hdu = hdus.get(amp.hdu)
            if hdu is None:
                raise IsrInputError(f"{name}: amplifier {amp.name} needs HDU {amp.hdu!r}, which is missing")
            data = _data(hdu, f"{name}")
            need = (
                max(a.raw_box.y1 for a in amps if a.hdu == amp.hdu),
                max(a.raw_box.x1 for a in amps if a.hdu == amp.hdu),
            )
            if data.shape != need:
                raise IsrInputError(
                    f"{name}: HDU {hdu.name or 0!r} has shape {data.shape}, but {cam.instrument} detector {det.id} "
                    f"needs {need} (rows, columns)"
                )
            pixels[amp.hdu] = data
        for amp in amps:
            _require_finite(pixels[amp.hdu][amp.data.slices], f"{name}: amplifier {amp.name}")
        return RawDetector(
            source=name,
            camera=cam,
            camera_name=cam_name,
            detector=det,
            amplifiers=amps,
            pixels=pixels,
            header=merged,
            obs=obs,
        )


__all__ = [
    "MissingHeaderKeywordError",
    "RawDetector",
    "detect_camera",
    "generic_detector_id",
    "read_observations",
    "read_raw",
]
