"""Header translators: each camera's own keywords -> one :class:`ObservationInfo`.

A translator receives the *merged* header of one detector (primary header plus the
detector's image extension header, extension keywords winning), as ingest and ISR see it.

Camera rules (see the real dumps in ``shared/reference/headers``):

- HSC: DET-ID, EXP-ID (``HSCA90402400`` -> exposure 904024), DATA-TYP, FILTER01, EXPTIME;
  no DARKTIME (dark time = EXPTIME); DATE-OBS is a date only, the time is in UT / UT-END.
- DECam: CCDNUM, DETPOS, EXPNUM, OBSTYPE, FILTER (the full filter string is the physical
  filter, its first word the band), DATE-OBS (UTC), EXPTIME, DARKTIME.
- LSSTCam: DAYOBS + SEQNUM (exposure = DAYOBS * 100000 + SEQNUM), RAFTBAY + CCDSLOT,
  IMGTYPE, FILTER / FILTBAND, DATE-BEG / DATE-END in TIMESYS (TAI), EXPTIME, DARKTIME.
- generic: INSTRUME, DETECTOR or CCDNAME, EXPTIME, DARKTIME, DATE-OBS, IMAGETYP or OBSTYPE,
  FILTER; optional EXPNUM/EXPID and CCDNUM/DETID.

day_obs is the UTC date 12 hours before the exposure starts (a night keeps one day_obs),
except LSSTCam, whose DAYOBS keyword is used as is.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from isrflow.camera import load_camera
from isrflow.model.errors import CameraError, MissingHeaderKeywordError
from isrflow.model.observation import ObservationInfo, ObsType
from isrflow.model.timescales import tai_to_utc
from isrflow.model.validation import summary

Header = Mapping[str, Any]

_OBS_TYPES: dict[str, ObsType] = {
    "object": "science",
    "science": "science",
    "light": "science",
    "sky": "science",
    "bias": "bias",
    "zero": "bias",
    "dark": "dark",
    "flat": "flat",
    "domeflat": "flat",
    "dome flat": "flat",
    "skyflat": "flat",
    "sky flat": "flat",
    "twilight": "flat",
    "flat field": "flat",
    "flatfield": "flat",
}


def _get(header: Header, key: str, source: str) -> Any:
    value = header.get(key)
    if value is None or (isinstance(value, str) and value.strip() == ""):
        raise MissingHeaderKeywordError(f"{source}: header keyword {key} is missing")
    return value


def _first(header: Header, keys: tuple[str, ...], source: str) -> Any:
    for key in keys:
        value = header.get(key)
        if value is not None and not (isinstance(value, str) and value.strip() == ""):
            return value
    raise MissingHeaderKeywordError(f"{source}: none of the header keywords {', '.join(keys)} is present")


def _float(header: Header, key: str, source: str) -> float:
    value = _get(header, key, source)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MissingHeaderKeywordError(
            f"{source}: header keyword {key} = {value!r} is not a number"
        ) from None


def _time(text: Any, key: str, source: str, scale: str = "utc") -> datetime:
    """Parse an ISO time in the given scale into an aware UTC datetime."""
    try:
        stamp = datetime.fromisoformat(str(text).strip().replace("Z", ""))
    except ValueError:
        raise MissingHeaderKeywordError(
            f"{source}: header keyword {key} = {text!r} is not an ISO time"
        ) from None
    if scale.lower() == "tai":
        try:
            stamp = tai_to_utc(stamp)  # the leap-second table, pure Python (no astropy in the Lambda layer)
        except ValueError as exc:
            raise MissingHeaderKeywordError(f"{source}: header keyword {key} = {text!r}: {exc}") from None
    return stamp.replace(tzinfo=UTC)


def _obs_type(value: Any) -> ObsType:
    return _OBS_TYPES.get(str(value).strip().lower(), "other")


def _day_obs(begin: datetime) -> int:
    return int((begin - timedelta(hours=12)).strftime("%Y%m%d"))


def translate_hsc(header: Header, source: str) -> ObservationInfo:
    camera = load_camera("hsc")
    det = camera.detector(int(_get(header, "DET-ID", source)))
    exp_text = str(_first(header, ("EXP-ID", "FRAMEID"), source)).strip()
    match = re.fullmatch(r"HSC[A-Z](\d+)", exp_text)
    if not match or len(match.group(1)) < 3:
        raise MissingHeaderKeywordError(
            f"{source}: EXP-ID = {exp_text!r} is not an HSC frame id like HSCA90402400"
        )
    exposure = int(match.group(1)[:-2])
    date = str(_get(header, "DATE-OBS", source)).strip()[:10]
    begin = _time(f"{date}T{_get(header, 'UT', source)}", "DATE-OBS/UT", source)
    end_ut = header.get("UT-END")
    exptime = _float(header, "EXPTIME", source)
    end = (
        _time(f"{date}T{end_ut}", "DATE-OBS/UT-END", source) if end_ut else begin + timedelta(seconds=exptime)
    )
    if end < begin:  # UT-END rolled over midnight
        end += timedelta(days=1)
    physical_filter = str(header.get("FILTER01", "NONE")).strip() or "NONE"
    band_match = re.fullmatch(r"HSC-([GRIZY])2?", physical_filter.upper())
    band = (
        band_match.group(1).lower() if band_match else ("" if physical_filter == "NONE" else physical_filter)
    )
    return ObservationInfo(
        instrument="HSC",
        detector=det.id,
        detector_name=det.name,
        exposure=exposure,
        obs_type=_obs_type(_get(header, "DATA-TYP", source)),
        physical_filter=physical_filter,
        band=band,
        exptime=exptime,
        darktime=exptime,
        begin=begin,
        end=end,
        day_obs=_day_obs(begin),
    )


def translate_decam(header: Header, source: str) -> ObservationInfo:
    camera = load_camera("decam")
    det = camera.detector(int(_get(header, "CCDNUM", source)))
    detpos = header.get("DETPOS")
    if detpos is not None and str(detpos).strip() != det.name:
        raise MissingHeaderKeywordError(
            f"{source}: DETPOS {detpos!r} does not match CCDNUM {det.id} ({det.name})"
        )
    begin = _time(_get(header, "DATE-OBS", source), "DATE-OBS", source)
    exptime = _float(header, "EXPTIME", source)
    darktime = float(header.get("DARKTIME", exptime))
    physical_filter = str(header.get("FILTER", "NONE")).strip() or "NONE"
    band = physical_filter.split()[0] if physical_filter != "NONE" else ""
    return ObservationInfo(
        instrument="DECam",
        detector=det.id,
        detector_name=det.name,
        exposure=int(_get(header, "EXPNUM", source)),
        obs_type=_obs_type(_get(header, "OBSTYPE", source)),
        physical_filter=physical_filter,
        band=band,
        exptime=exptime,
        darktime=darktime,
        begin=begin,
        end=begin + timedelta(seconds=exptime),
        day_obs=_day_obs(begin),
    )


def translate_lsstcam(header: Header, source: str) -> ObservationInfo:
    camera = load_camera("lsstcam")
    name = f"{_get(header, 'RAFTBAY', source)}_{_get(header, 'CCDSLOT', source)}"
    try:
        det = camera.detector(name)
    except CameraError:
        raise MissingHeaderKeywordError(
            f"{source}: RAFTBAY/CCDSLOT {name} is not an LSSTCam science detector"
        ) from None
    day_obs = int(str(_get(header, "DAYOBS", source)).strip())
    exposure = day_obs * 100000 + int(_get(header, "SEQNUM", source))
    scale = str(header.get("TIMESYS", "TAI")).strip()
    begin = _time(_first(header, ("DATE-BEG", "DATE-OBS"), source), "DATE-BEG", source, scale)
    exptime = _float(header, "EXPTIME", source)
    end_text = header.get("DATE-END")
    end = _time(end_text, "DATE-END", source, scale) if end_text else begin + timedelta(seconds=exptime)
    physical_filter = str(header.get("FILTER") or "NONE").strip() or "NONE"
    band = str(header.get("FILTBAND") or "").strip()
    imgtype = str(_get(header, "IMGTYPE", source)).strip()
    return ObservationInfo(
        instrument="LSSTCam",
        detector=det.id,
        detector_name=det.name,
        exposure=exposure,
        obs_type=_obs_type(imgtype),
        physical_filter=physical_filter,
        band=band,
        exptime=exptime,
        darktime=float(header.get("DARKTIME") or exptime),
        begin=begin,
        end=end,
        day_obs=day_obs,
    )


def generic_detector_id(header: Header, name: str) -> int:
    """A generic raw's detector id: CCDNUM/DETID if present, else the name's trailing digits."""
    for key in ("CCDNUM", "DETID"):
        if header.get(key) is not None:
            return int(header[key])
    digits = re.search(r"(\d+)$", name)
    return int(digits.group(1)) if digits else zlib.crc32(name.encode()) % 100000


def translate_generic(header: Header, source: str) -> ObservationInfo:
    name = str(_first(header, ("DETECTOR", "CCDNAME"), source)).strip()
    begin = _time(_get(header, "DATE-OBS", source), "DATE-OBS", source)
    exptime = _float(header, "EXPTIME", source)
    darktime = float(header.get("DARKTIME", exptime))
    exp_key = next((k for k in ("EXPNUM", "EXPID") if header.get(k) is not None), None)
    exposure = int(header[exp_key]) if exp_key else int(begin.strftime("%Y%m%d%H%M%S"))
    physical_filter = str(header.get("FILTER") or "NONE").strip() or "NONE"
    obs_type = _obs_type(_first(header, ("IMAGETYP", "OBSTYPE"), source))
    return ObservationInfo(
        instrument=str(_get(header, "INSTRUME", source)).strip(),
        detector=generic_detector_id(header, name),
        detector_name=name,
        exposure=exposure,
        obs_type=obs_type,
        physical_filter=physical_filter,
        band=physical_filter.split()[0].lower() if physical_filter != "NONE" else "",
        exptime=exptime,
        darktime=darktime,
        begin=begin,
        end=begin + timedelta(seconds=exptime),
        day_obs=_day_obs(begin),
    )


TRANSLATORS: dict[str, Callable[[Header, str], ObservationInfo]] = {
    "hsc": translate_hsc,
    "decam": translate_decam,
    "lsstcam": translate_lsstcam,
    "generic": translate_generic,
}


def translate(camera_name: str, header: Header, source: str = "header") -> ObservationInfo:
    """Translate a merged detector header with the named camera's translator."""
    translator = TRANSLATORS.get(camera_name)
    if translator is None:
        raise CameraError(f"no header translator for camera {camera_name!r}")
    try:
        obs = translator(header, source)
    except ValidationError as exc:  # a value the header carries but the model refuses (EXPTIME < 0, ...)
        raise MissingHeaderKeywordError(f"{source}: invalid header value: {summary(exc)}") from None
    except (TypeError, ValueError, OverflowError) as exc:  # int('abc') on CCDNUM/EXPNUM/DET-ID, ...
        raise MissingHeaderKeywordError(
            f"{source}: header value cannot be used ({type(exc).__name__}: {exc})"
        ) from None
    for name in ("exposure", "detector", "day_obs"):  # registry columns are signed 64-bit integers
        if not -(2**63) <= getattr(obs, name) < 2**63:
            raise MissingHeaderKeywordError(
                f"{source}: {name} = {getattr(obs, name)} does not fit a 64-bit integer"
            )
    return obs
