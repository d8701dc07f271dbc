"""Raw headers -> observations, from parsed header cards (no astropy, no pixels).

The same decisions :func:`isrflow.io.rawio.read_observations` makes on an open file, made on
:class:`isrflow.io.fitsheader.HduHeader` lists instead, so the ingest Lambda (registry-only
layer) translates an upload from its header blocks alone:

- camera: INSTRUME (or an HSC frame id in EXP-ID), else ``generic`` when an extension carries
  DATASEC and DETSEC; anything else is not a raw of a known camera;
- HSC (one detector per file): the primary header;
- LSSTCam (one HDU per amplifier): primary + first extension;
- DECam (one extension per detector): every detector extension, found by EXTNAME or CCDNUM;
- generic: primary + first amplifier extension; the amplifier geometry is validated as ISR
  will read it.

A test checks that both paths agree on simulated raws of every camera.
"""

from __future__ import annotations

from isrflow.camera import camera_for_instrument, load_camera
from isrflow.camera.generic import camera_from_headers
from isrflow.camera.translators import translate
from isrflow.io.fitsheader import HduHeader, merged_cards
from isrflow.model.errors import CameraError, IsrInputError
from isrflow.model.observation import ObservationInfo


def detect_camera(hdus: list[HduHeader], name: str) -> str:
    """The camera name of a raw from its headers (see the module docstring)."""
    primary = hdus[0]
    instrume = primary.get("INSTRUME")
    known = camera_for_instrument(instrume) if instrume is not None else None
    if known is None and str(primary.get("EXP-ID", "")).startswith("HSC"):
        known = "hsc"
    if known:
        return known
    if any("DATASEC" in h and "DETSEC" in h for h in hdus[1:]):
        return "generic"
    raise IsrInputError(
        f"{name}: not a raw of a known camera (INSTRUME={instrume!r}, no amplifier HDUs with DATASEC)"
    )


def _generic(hdus: list[HduHeader], name: str) -> ObservationInfo:
    amps = [h for h in hdus[1:] if h.is_image and len(h.shape) == 2]  # each must have DATASEC (checked below)
    obs = translate("generic", merged_cards(hdus[0], amps[0] if amps else None), name)
    entries = []
    for h in amps:
        extname = str(h.get("EXTNAME") or f"HDU{h.index}")
        shape = h.shape
        if len(shape) != 2:
            raise IsrInputError(f"{name}: amplifier HDU {extname} is not a 2-D image")
        entries.append((extname, (shape[0], shape[1]), h.cards))
    camera_from_headers(obs.instrument, obs.detector, obs.detector_name, entries, name)  # validates geometry
    return obs


def _exposure_detectors(hdus: list[HduHeader], camera_name: str, name: str) -> list[ObservationInfo]:
    camera = load_camera(camera_name)
    by_name = {d.name: d for d in camera.detectors}
    found: dict[int, HduHeader] = {}
    for h in hdus[1:]:
        det = by_name.get(str(h.get("EXTNAME", "")).strip())
        if det is None and h.get("CCDNUM") is not None:
            try:
                det = camera.detector(int(h["CCDNUM"]))
            except (CameraError, TypeError, ValueError):
                det = None
        if det is not None and h.is_image:
            found[det.id] = h
    if not found:
        raise IsrInputError(f"{name}: no {camera.instrument} detector extensions found")
    return [translate(camera_name, merged_cards(hdus[0], h), name) for h in found.values()]


def observations_from_headers(hdus: list[HduHeader], name: str) -> tuple[str, list[ObservationInfo]]:
    """(camera name, one ObservationInfo per detector the file holds)."""
    if not hdus:
        raise IsrInputError(f"{name}: no HDUs")
    camera_name = detect_camera(hdus, name)
    if camera_name == "generic":
        return camera_name, [_generic(hdus, name)]
    camera = load_camera(camera_name)
    if camera.raw_format == "exposure_mef":
        return camera_name, _exposure_detectors(hdus, camera_name, name)
    extension = hdus[1] if camera.raw_format == "amp_hdus" and len(hdus) > 1 else None
    return camera_name, [translate(camera_name, merged_cards(hdus[0], extension), name)]


__all__ = ["detect_camera", "observations_from_headers"]
