"""Built-in camera geometry and translators checked against REAL raw headers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from isrflow.camera import load_camera
from isrflow.camera.geometry import format_section, parse_section
from isrflow.camera.model import Camera
from isrflow.camera.translators import translate
from isrflow.model.errors import CameraError, MissingHeaderKeywordError


class _AnyTagLoader(yaml.SafeLoader):
    pass


_AnyTagLoader.add_multi_constructor(
    "",
    lambda loader, suffix, node: (
        loader.construct_sequence(node, deep=True)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node, deep=True)
    ),
)


def load_header(path) -> dict:
    """Read a header dump: plain YAML mapping, or an lsst PropertyList ([KEY, Type, value, comment] rows)."""
    data = yaml.load(path.read_text(), Loader=_AnyTagLoader)
    if isinstance(data, dict):
        return data
    return {row[0]: row[2] for row in data if isinstance(row, list) and isinstance(row[0], str)}


@pytest.fixture(scope="module")
def headers(reference_dir):
    d = reference_dir / "headers"
    return {
        "hsc": load_header(d / "hsc-raw-det50.yaml"),
        "decam": load_header(d / "decam-raw-S1-ccd25.yaml"),
        "itl": load_header(d / "lsstcam-raw-R01_S01-itl-segment10.yaml"),
        "e2v": load_header(d / "lsstcam-raw-R12_S10-e2v.yaml"),
    }


def test_detector_counts_and_ids():
    assert len(load_camera("hsc").detectors) == 112
    assert sum(d.kind == "science" for d in load_camera("hsc").detectors) == 104
    lsst = load_camera("lsstcam")
    assert sorted(d.id for d in lsst.detectors) == list(range(189))
    assert lsst.detector("R22_S11").id == 94 and lsst.detector("R01_S00").id == 0
    decam = load_camera("decam")
    assert sorted(d.id for d in decam.detectors) == list(range(1, 63))
    assert decam.detector(25).name == "S1" and decam.detector(62).name == "N31"
    hsc = load_camera("hsc")
    assert hsc.detector(0).name == "1_53" and {hsc.detector(i).name for i in range(104, 112)} == {
        "0_48",
        "0_51",
        "0_52",
        "0_57",
        "1_48",
        "1_51",
        "1_52",
        "1_57",
    }


@pytest.mark.parametrize(("name", "shape"), [("hsc", (4176, 2048)), ("decam", (4096, 2048))])
def test_trimmed_sizes(name, shape):
    cam = load_camera(name)
    assert cam.assembled_shape(cam.detectors[0]) == shape


def test_lsstcam_trimmed_sizes():
    cam = load_camera("lsstcam")
    assert cam.assembled_shape("R22_S11") == (4004, 4096)  # e2v
    assert cam.assembled_shape("R01_S01") == (4000, 4072)  # ITL


def test_hsc_channels_match_real_header(headers):
    h = headers["hsc"]
    amps = load_camera("hsc").amplifiers(50)
    assert (h["NAXIS1"], h["NAXIS2"]) == (max(a.raw_box.x1 for a in amps), max(a.raw_box.y1 for a in amps))
    for ch, amp in enumerate(amps, start=1):
        assert (h[f"T_EFMN{ch}1"] - 1, h[f"T_EFMX{ch}1"]) == (amp.data.x0, amp.data.x1), (
            f"channel {ch} data x"
        )
        assert (h[f"T_EFMN{ch}2"] - 1, h[f"T_EFMX{ch}2"]) == (amp.data.y0, amp.data.y1), (
            f"channel {ch} data y"
        )
        assert (h[f"T_OSMN{ch}1"] - 1, h[f"T_OSMX{ch}1"]) == (amp.serial_overscan.x0, amp.serial_overscan.x1)
        assert (h[f"T_OSMN{ch}2"] - 1, h[f"T_OSMX{ch}2"]) == (
            amp.parallel_overscan.y0,
            amp.parallel_overscan.y1,
        )
        assert h[f"T_GAIN{ch}"] == pytest.approx(amp.gain)


def test_decam_sections_match_real_header(headers):
    h = headers["decam"]
    cam = load_camera("decam")
    det = cam.detector(h["CCDNUM"])
    assert det.name == h["DETPOS"] == "S1"
    amps = {a.name: a for a in cam.amplifiers(det)}
    for tag in "AB":
        amp = amps[tag]
        assert parse_section(h[f"DATASEC{tag}"])[0] == amp.data
        assert parse_section(h[f"BIASSEC{tag}"])[0] == amp.serial_overscan
        assert parse_section(h[f"PRESEC{tag}"])[0] == amp.serial_prescan
        assert parse_section(h[f"POSTSEC{tag}"])[0] == amp.parallel_overscan
        assert parse_section(h[f"CCDSEC{tag}"])[0] == amp.assembled
        assert h[f"GAIN{tag}"] == pytest.approx(amp.gain, rel=1e-3)
    assert (h["ZNAXIS1"], h["ZNAXIS2"]) == (
        max(a.raw_box.x1 for a in amps.values()),
        max(a.raw_box.y1 for a in amps.values()),
    )


@pytest.mark.parametrize(("key", "detector"), [("itl", "R01_S01"), ("e2v", "R12_S10")])
def test_lsstcam_segment_matches_real_header(headers, key, detector):
    h = headers[key]
    cam = load_camera("lsstcam")
    assert f"{h['RAFTBAY']}_{h['CCDSLOT']}" == detector
    amp = next(a for a in cam.amplifiers(detector) if a.hdu == h["EXTNAME"])
    assert parse_section(h["DATASEC"])[0] == amp.data
    box, fx, fy = parse_section(h["DETSEC"])
    assert (box, fx, fy) == (amp.assembled, amp.flip_x, amp.flip_y)
    assert format_section(amp.assembled, amp.flip_x, amp.flip_y) == h["DETSEC"]
    assert h["DETSIZE"] == f"[1:{cam.assembled_shape(detector)[1]},1:{cam.assembled_shape(detector)[0]}]"
    assert (h["ZNAXIS1"], h["ZNAXIS2"]) == (amp.raw_box.width, amp.raw_box.height)
    assert h["CCD_MANU"].lower() == cam.detector(detector).layout


def test_translate_real_hsc(headers):
    obs = translate("hsc", headers["hsc"], "hsc-raw-det50")
    assert (obs.instrument, obs.detector, obs.exposure) == ("HSC", 50, 904024)
    # the raw's original file name (object055_1_12.fits) carries the CCD name
    assert obs.detector_name == "1_12" and headers["hsc"]["T_UFNAME"].endswith(f"_{obs.detector_name}.fits")
    assert (obs.obs_type, obs.physical_filter, obs.band) == ("science", "HSC-i", "i")
    assert obs.exptime == obs.darktime == 30.0
    assert obs.begin == datetime(2013, 11, 2, 6, 15, 55, 927000, tzinfo=UTC)
    assert obs.end == datetime(2013, 11, 2, 6, 16, 27, 928000, tzinfo=UTC)


def test_translate_real_decam(headers):
    obs = translate("decam", headers["decam"], "decam S1")
    assert (obs.instrument, obs.detector, obs.detector_name, obs.exposure) == ("DECam", 25, "S1", 177764)
    assert (obs.obs_type, obs.band) == ("science", "g")
    assert obs.physical_filter == "g DECam SDSS c0001 4720.0 1520.0"
    assert obs.darktime == pytest.approx(31.1290202)
    assert obs.begin == datetime(2013, 2, 13, 9, 1, 40, 966998, tzinfo=UTC)


def test_translate_real_lsstcam(headers):
    itl = translate("lsstcam", headers["itl"], "itl")
    assert (itl.detector, itl.detector_name, itl.exposure) == (1, "R01_S01", 2025041500060)
    assert (itl.physical_filter, itl.band, itl.darktime, itl.day_obs) == ("i_39", "i", 15.9548, 20250415)
    # DATE-BEG is TAI: UTC is 37 s earlier in 2025
    assert itl.begin == datetime(2025, 4, 16, 0, 52, 36, 573000, tzinfo=UTC)
    e2v = translate("lsstcam", headers["e2v"], "e2v")
    assert (e2v.detector, e2v.obs_type, e2v.exposure, e2v.physical_filter) == (
        48,
        "flat",
        2023112500600,
        "NONE",
    )


def test_missing_keyword_names_it(headers):
    header = dict(headers["decam"])
    del header["EXPNUM"]
    with pytest.raises(MissingHeaderKeywordError, match="EXPNUM"):
        translate("decam", header, "decam.fits")


def test_invalid_camera_description_is_rejected():
    data = load_camera("decam").model_dump()
    data["detectors"][1]["id"] = data["detectors"][0]["id"]
    with pytest.raises(ValueError, match="duplicate detector ids"):
        Camera.model_validate(data)
    data = load_camera("decam").model_dump()
    data["layouts"]["N"][1]["assembled"] = data["layouts"]["N"][0]["assembled"]
    with pytest.raises(ValueError, match="overlap"):
        Camera.model_validate(data)
    with pytest.raises(CameraError):
        load_camera("nope")
