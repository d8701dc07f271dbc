"""Raw FITS in each camera's real on-disk layout, with headers shaped like the real dumps."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time

from isrflow.camera.geometry import format_section
from isrflow.camera.model import Camera, Detector
from isrflow.io.exposure_io import atomic_write_bytes
from isrflow.model.observation import ObservationInfo

_HSC_TYPES = {"bias": "BIAS", "dark": "DARK", "flat": "DOMEFLAT", "science": "OBJECT"}
_DECAM_TYPES = {"bias": "zero", "dark": "dark", "flat": "dome flat", "science": "object"}
_LSST_TYPES = {"bias": "BIAS", "dark": "DARK", "flat": "FLAT", "science": "SCIENCE"}
_GENERIC_TYPES = {"bias": "BIAS", "dark": "DARK", "flat": "FLAT", "science": "OBJECT"}


def _write(path: Path, hdus: list) -> Path:
    hdul = fits.HDUList(hdus)
    return atomic_write_bytes(path, lambda handle: hdul.writeto(handle))


def hsc_frame_id(exposure: int, detector: int) -> str:
    """HSC FRAMEID: 'HSCA' + 8 digits = exposure * 100 + a CCD counter."""
    return f"HSCA{exposure * 100 + detector % 100:08d}"


def write_hsc(path: Path, camera: Camera, det: Detector, obs: ObservationInfo, pixels) -> Path:
    header = fits.Header()
    header["INSTRUME"] = "Hyper Suprime-Cam"
    header["TELESCOP"] = "Subaru"
    header["DATE-OBS"] = obs.begin.strftime("%Y-%m-%d")
    header["UT"] = obs.begin.strftime("%H:%M:%S.%f")[:12]
    header["UT-END"] = obs.end.strftime("%H:%M:%S.%f")[:12]
    header["MJD"] = Time(obs.begin).mjd
    header["EXP-ID"] = (f"HSCA{obs.exposure * 100:08d}", "First frame ID")
    header["EXPTIME"] = (obs.exptime, "Exposure time")
    header["OBJECT"] = "SIMULATED" if obs.obs_type == "science" else obs.obs_type.upper()
    header["DATA-TYP"] = (_HSC_TYPES[obs.obs_type], "Characteristics of this data")
    header["FILTER01"] = (obs.physical_filter, "Filter barcode")
    header["FRAMEID"] = hsc_frame_id(obs.exposure, det.id)
    header["DET-ID"] = (det.id, "Sequential number assigned for the entire CCDs")
    header["T_CCDID"] = det.name
    for i, amp in enumerate(camera.amplifiers(det), start=1):
        header[f"T_GAIN{i}"] = (amp.gain, f"Gain for channel {i}")
    for i, amp in enumerate(camera.amplifiers(det), start=1):
        so, d, po = amp.serial_overscan, amp.data, amp.parallel_overscan
        header[f"T_OSMN{i}1"], header[f"T_OSMX{i}1"] = so.x0 + 1, so.x1
        header[f"T_EFMN{i}1"], header[f"T_EFMX{i}1"] = d.x0 + 1, d.x1
        if po is not None:
            header[f"T_OSMN{i}2"], header[f"T_OSMX{i}2"] = po.y0 + 1, po.y1
        header[f"T_EFMN{i}2"], header[f"T_EFMX{i}2"] = d.y0 + 1, d.y1
    return _write(path, [fits.PrimaryHDU(pixels[None], header=header)])


def _decam_primary(obs: ObservationInfo, n_ext: int) -> fits.Header:
    header = fits.Header()
    header["NEXTEND"] = n_ext
    header["PROCTYPE"] = "RAW"
    header["TELESCOP"] = "CTIO 4.0-m telescope"
    header["OBSERVAT"] = "CTIO"
    header["INSTRUME"] = "DECam"
    header["EXPTIME"] = obs.exptime
    header["DARKTIME"] = obs.darktime
    header["DATE-OBS"] = obs.begin.strftime("%Y-%m-%dT%H:%M:%S.%f")
    header["TIME-OBS"] = obs.begin.strftime("%H:%M:%S.%f")
    header["MJD-OBS"] = Time(obs.begin).mjd
    header["TIMESYS"] = "UTC"
    header["EXPNUM"] = obs.exposure
    header["OBSTYPE"] = _DECAM_TYPES[obs.obs_type]
    header["FILTER"] = obs.physical_filter
    return header


def write_decam(path: Path, camera: Camera, dets: list[tuple[Detector, ObservationInfo, dict]]) -> Path:
    primary = fits.PrimaryHDU(header=_decam_primary(dets[0][1], len(dets)))
    hdus: list = [primary]
    for det, _obs, pixels in dets:
        header = fits.Header()
        amps = {a.name: a for a in camera.amplifiers(det)}
        a, b = amps["A"], amps["B"]
        left, right = (b, a) if a.data.x0 > b.data.x0 else (a, b)
        header["CCDNUM"] = det.id
        header["DETPOS"] = det.name
        header["EXTNAME"] = det.name
        header["BUNIT"] = "adu"
        data_all = format_section(_union(left.data, right.data))
        header["DATASEC"] = data_all
        header["TRIMSEC"] = data_all
        for tag, amp in (("A", a), ("B", b)):
            header[f"TRIMSEC{tag}"] = format_section(amp.data)
            header[f"DATASEC{tag}"] = format_section(amp.data)
            header[f"BIASSEC{tag}"] = format_section(amp.serial_overscan)
            if amp.serial_prescan is not None:
                header[f"PRESEC{tag}"] = format_section(amp.serial_prescan)
            if amp.parallel_overscan is not None:
                header[f"POSTSEC{tag}"] = format_section(amp.parallel_overscan)
            header[f"CCDSEC{tag}"] = format_section(amp.assembled)
        for tag, amp in (("A", a), ("B", b)):
            header[f"GAIN{tag}"] = amp.gain
            header[f"RDNOISE{tag}"] = amp.read_noise
            header[f"SATURAT{tag}"] = amp.saturation
        hdus.append(fits.ImageHDU(pixels[None], header=header))
    return _write(path, hdus)


def _union(a, b):
    from isrflow.camera.model import Box

    x0, y0 = min(a.x0, b.x0), min(a.y0, b.y0)
    return Box.of(x0, y0, max(a.x1, b.x1) - x0, max(a.y1, b.y1) - y0)


def write_lsstcam(path: Path, camera: Camera, det: Detector, obs: ObservationInfo, pixels) -> Path:
    raft, slot = det.name.split("_")
    tai = lambda t: Time(t, scale="utc").tai.datetime.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23]  # noqa: E731
    header = fits.Header()
    header["INSTRUME"] = "lsstCam"
    header["TELESCOP"] = "Simonyi Survey Telescope"
    header["IMGTYPE"] = _LSST_TYPES[obs.obs_type]
    header["DATE-OBS"] = tai(obs.begin)
    header["DATE-BEG"] = tai(obs.begin)
    header["DATE-END"] = tai(obs.end)
    header["MJD-OBS"] = Time(obs.begin).tai.mjd
    header["TIMESYS"] = "TAI"
    header["OBSID"] = f"MC_O_{obs.day_obs}_{obs.exposure % 100000:06d}"
    header["DAYOBS"] = str(obs.day_obs)
    header["SEQNUM"] = obs.exposure % 100000
    header["CCD_MANU"] = "ITL" if det.layout == "itl" else "E2V"
    header["CCD_TYPE"] = "3800C" if det.layout == "itl" else "CCD250"
    header["CCDSLOT"] = slot
    header["RAFTBAY"] = raft
    header["FILTBAND"] = obs.band
    header["FILTER"] = obs.physical_filter
    header["EXPTIME"] = obs.exptime
    header["DARKTIME"] = obs.darktime
    hdus: list = [fits.PrimaryHDU(header=header)]
    amps = camera.amplifiers(det)
    rows, cols = camera.assembled_shape(det)
    for channel, amp in enumerate(amps, start=1):
        ext = fits.Header()
        ext["CHANNEL"] = channel
        ext["EXTNAME"] = amp.hdu
        ext["DATASEC"] = format_section(amp.data)
        ext["BIASSEC"] = format_section(amp.serial_overscan)
        ext["DETSEC"] = format_section(amp.assembled, amp.flip_x, amp.flip_y)
        ext["DETSIZE"] = f"[1:{cols},1:{rows}]"
        hdus.append(fits.ImageHDU(pixels[amp.hdu], header=ext))
    return _write(path, hdus)


def write_generic(path: Path, camera: Camera, det: Detector, obs: ObservationInfo, pixels) -> Path:
    header = fits.Header()
    header["INSTRUME"] = obs.instrument
    header["DETECTOR"] = det.name
    header["CCDNUM"] = det.id
    header["EXPNUM"] = obs.exposure
    header["IMAGETYP"] = _GENERIC_TYPES[obs.obs_type]
    header["FILTER"] = obs.physical_filter
    header["EXPTIME"] = obs.exptime
    header["DARKTIME"] = obs.darktime
    header["DATE-OBS"] = obs.begin.strftime("%Y-%m-%dT%H:%M:%S.%f")
    hdus: list = [fits.PrimaryHDU(header=header)]
    for amp in camera.amplifiers(det):
        ext = fits.Header()
        ext["EXTNAME"] = amp.hdu
        ext["AMPNAME"] = amp.name
        ext["DATASEC"] = format_section(amp.data)
        ext["BIASSEC"] = format_section(amp.serial_overscan)
        ext["DETSEC"] = format_section(amp.assembled, amp.flip_x, amp.flip_y)
        ext["GAIN"] = (amp.gain, "e-/ADU")
        ext["RDNOISE"] = (amp.read_noise, "e-")
        ext["SATURATE"] = (amp.saturation, "ADU")
        hdus.append(fits.ImageHDU(pixels[amp.hdu], header=ext))
    return _write(path, hdus)


def end_time(obs_begin, exptime: float):
    return obs_begin + timedelta(seconds=exptime)


def as_uint16(array: np.ndarray) -> np.ndarray:
    return array.astype(np.uint16)
