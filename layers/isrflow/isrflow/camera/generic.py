"""The generic camera: geometry read from IRAF/NOAO section keywords, one HDU per amplifier.

Every image extension is an amplifier with DATASEC (imaging pixels), BIASSEC (serial
overscan), DETSEC (where the amp lands; a reversed axis means that axis is flipped), GAIN
(e-/ADU), RDNOISE (e-) and SATURATE (ADU). Rows of the HDU above or below DATASEC, over the
data columns, are the parallel overscan. DETSEC may be in mosaic coordinates: the detector
origin is the smallest DETSEC corner among its amps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from isrflow.camera.geometry import parse_section
from isrflow.camera.model import Amplifier, Box, Camera, Detector
from isrflow.model.errors import IsrInputError, MissingHeaderKeywordError
from isrflow.model.validation import summary


def _number(header: Mapping[str, Any], key: str, source: str) -> float:
    value = header.get(key)
    if value is None:
        raise MissingHeaderKeywordError(f"{source}: amplifier header keyword {key} is missing")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MissingHeaderKeywordError(f"{source}: {key} = {value!r} is not a number") from None


def camera_from_headers(
    instrument: str,
    detector_id: int,
    detector_name: str,
    amp_headers: Sequence[tuple[str, tuple[int, int], Mapping[str, Any]]],
    source: str,
) -> Camera:
    """Build a one-detector Camera from ``(extname, (rows, cols), header)`` per amplifier HDU."""
    if not amp_headers:
        raise MissingHeaderKeywordError(f"{source}: no image extensions with DATASEC (not a generic raw)")
    parsed = []
    for extname, shape, header in amp_headers:
        where = f"{source}[{extname}]"
        data, _, _ = parse_section(_require(header, "DATASEC", where), keyword="DATASEC", source=where)
        bias, _, _ = parse_section(_require(header, "BIASSEC", where), keyword="BIASSEC", source=where)
        det, fx, fy = parse_section(_require(header, "DETSEC", where), keyword="DETSEC", source=where)
        parsed.append((extname, shape, header, data, bias, det, fx, fy, where))
    x_origin = min(p[5].x0 for p in parsed)
    y_origin = min(p[5].y0 for p in parsed)
    amps = []
    for extname, (rows, cols), header, data, bias, det, fx, fy, where in parsed:
        raw = Box.of(0, 0, cols, rows)
        if not raw.contains(data) or not raw.contains(bias):
            raise MissingHeaderKeywordError(f"{where}: DATASEC/BIASSEC lie outside the {cols}x{rows} HDU")
        if det.shape != data.shape:
            raise MissingHeaderKeywordError(
                f"{where}: DETSEC size {det.shape} differs from DATASEC size {data.shape}"
            )
        parallel = None
        if data.y1 < rows:
            parallel = Box.of(data.x0, data.y1, data.width, rows - data.y1)
        elif data.y0 > 0:
            parallel = Box.of(data.x0, 0, data.width, data.y0)
        serial = Box.of(bias.x0, data.y0, bias.width, data.height) if bias.height >= data.height else bias
        amps.append(
            _amplifier(
                where,
                {
                    "name": str(header.get("AMPNAME") or extname),
                    "hdu": extname,
                    "raw_box": raw,
                    "data": data,
                    "serial_overscan": serial,
                    "parallel_overscan": parallel,
                    "flip_x": fx,
                    "flip_y": fy,
                    "assembled": Box.of(det.x0 - x_origin, det.y0 - y_origin, det.width, det.height),
                    "readout_corner": "LL",
                    "gain": _number(header, "GAIN", where),
                    "read_noise": _number(header, "RDNOISE", where),
                    "saturation": _number(header, "SATURATE", where),
                },
            )
        )
    try:
        return Camera(
            instrument=instrument,
            translator="generic",
            raw_format="amp_hdus",
            raw_dtype="int32",
            pixel_size_um=10.0,
            layouts={"headers": amps},
            detectors=[Detector(id=detector_id, name=detector_name, layout="headers")],
        )
    except ValidationError as exc:  # e.g. the amps do not tile the detector (an amplifier HDU is missing)
        names = ", ".join(a.name for a in amps)
        raise IsrInputError(
            f"{source}: the headers of amplifiers {names} do not describe a valid detector: {summary(exc, 1)}"
        ) from None


def _amplifier(where: str, fields: dict[str, Any]) -> Amplifier:
    """One Amplifier; a header value the model refuses (GAIN <= 0, ...) is a MissingHeaderKeywordError."""
    try:
        return Amplifier(**fields)
    except ValidationError as exc:
        raise MissingHeaderKeywordError(f"{where}: invalid amplifier header value: {summary(exc)}") from None


def _require(header: Mapping[str, Any], key: str, where: str) -> str:
    value = header.get(key)
    if value is None:
        raise MissingHeaderKeywordError(f"{where}: amplifier header keyword {key} is missing")
    return str(value)
