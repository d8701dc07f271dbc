"""Header-only ingest: the pure-Python FITS header walk and translation agree with astropy's reading
(simulated raws, and files built from REAL raw headers, tile-compressed included), read only header
blocks, refuse non-FITS and truncated objects, and need neither numpy nor astropy."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time
from ops_helpers import fill, header_dump

from isrflow.camera import load_camera
from isrflow.io.fitsheader import BLOCK, parse_cards, read_hdu_headers
from isrflow.io.rawio import read_observations
from isrflow.model.errors import NotFitsError, TruncatedFitsError
from isrflow.model.timescales import tai_to_utc
from isrflow.prompt.headers import observations_from_headers


class Reads:
    """``read(offset, length)`` over bytes, counting what was read."""

    def __init__(self, data: bytes):
        self.data, self.calls, self.bytes = data, 0, 0

    def __call__(self, offset: int, length: int) -> bytes:
        self.calls += 1
        self.bytes += length
        return self.data[offset : offset + length]


def _headers_only(path: Path) -> tuple[str, list, Reads]:
    data = path.read_bytes()
    reads = Reads(data)
    camera, observations = observations_from_headers(read_hdu_headers(reads, len(data), path.name), path.name)
    return camera, observations, reads


def test_simulated_generic_raws_match_astropy(small_night):
    for raw in small_night.raws:
        camera, observations, reads = _headers_only(Path(raw.path))
        assert camera == "generic"
        assert observations == read_observations(raw.path)
        assert reads.bytes < Path(raw.path).stat().st_size / 5  # headers only, never the pixels


def test_real_hsc_header(tmp_path, reference_dir):
    primary, _ = header_dump(reference_dir / "headers" / "hsc-raw-det50.yaml")
    hdu = fits.PrimaryHDU(np.zeros((4241, 2144), dtype=np.uint16))
    fill(hdu.header, primary)
    path = tmp_path / "HSCA90402400.fits"
    hdu.writeto(path)
    camera, observations, reads = _headers_only(path)
    assert camera == "hsc" and observations == read_observations(path)
    assert observations[0].detector == 50 and reads.calls <= 4 and reads.bytes <= 16 * BLOCK


def test_real_decam_tile_compressed_exposure_file(tmp_path, reference_dir):
    primary, ext = header_dump(reference_dir / "headers" / "decam-raw-S1-ccd25.yaml")
    hdus = [fits.PrimaryHDU()]
    fill(hdus[0].header, primary)
    n4 = load_camera("decam").detector("N4")
    for name, ccdnum in (("S1", 25), ("N4", n4.id)):
        hdu = fits.CompImageHDU(np.zeros((32, 48), dtype=np.int16), compression_type="RICE_1")
        fill(hdu.header, [(k, v) for k, v in ext if k not in ("EXTNAME", "CCDNUM", "DETPOS")])
        hdu.header["EXTNAME"], hdu.header["CCDNUM"], hdu.header["DETPOS"] = name, ccdnum, name
        hdus.append(hdu)
    path = tmp_path / "c4d_131013_090140_ori.fits.fz"
    fits.HDUList(hdus).writeto(path)
    camera, observations, _ = _headers_only(path)
    assert camera == "decam" and observations == read_observations(path)
    assert [o.detector for o in observations] == [25, n4.id] and observations[0].exposure == 177764


@pytest.mark.parametrize("dump", ["lsstcam-raw-R01_S01-itl-segment10.yaml", "lsstcam-raw-R12_S10-e2v.yaml"])
def test_real_lsstcam_amplifier_hdus(tmp_path, reference_dir, dump):
    primary, ext = header_dump(reference_dir / "headers" / dump)
    hdus = [fits.PrimaryHDU()]
    fill(hdus[0].header, primary)
    for i, seg in enumerate(
        ["10", "11", "12", "13", "14", "15", "16", "17", "07", "06", "05", "04", "03", "02", "01", "00"]
    ):
        hdu = fits.CompImageHDU(np.full((16, 24), i, dtype=np.int32), compression_type="RICE_1")
        fill(hdu.header, [(k, v) for k, v in ext if k != "EXTNAME"])
        hdu.header["EXTNAME"] = f"Segment{seg}"
        hdus.append(hdu)
    path = tmp_path / "raw.fits"
    fits.HDUList(hdus).writeto(path)
    camera, observations, reads = _headers_only(path)
    assert camera == "lsstcam" and observations == read_observations(path)
    assert reads.calls == 17  # one read per HDU header: the walk proves every byte is there


def test_truncated_and_non_fits_objects_are_refused(small_night):
    data = Path(small_night.raws[0].path).read_bytes()
    for cut in (len(data) - 1, len(data) - BLOCK, BLOCK + 100, 3 * BLOCK):
        with pytest.raises(TruncatedFitsError, match=r"truncat|ends inside"):
            read_hdu_headers(Reads(data[:cut]), cut, "cut.fits")
    with pytest.raises(NotFitsError, match="SIMPLE"):
        read_hdu_headers(Reads(b"# observing log\n" * 400), 6400, "log.txt")
    with pytest.raises(NotFitsError, match="shorter than one FITS block"):
        read_hdu_headers(Reads(data[:100]), 100, "tiny.fits")
    # bytes after the last HDU that do not start an extension are ignored (FITS special records)
    assert len(read_hdu_headers(Reads(data + b"\0" * BLOCK), len(data) + BLOCK, "x")) == 5


def _cards(*cards: str) -> bytes:
    text = "".join(c.ljust(80) for c in (*cards, "END"))
    return text.ljust(-(-len(text) // BLOCK) * BLOCK).encode()


def test_card_values():
    cards, end = parse_cards(
        _cards(
            "SIMPLE  =                    T",
            "NAXIS   =                    0",
            "EXPTIME =              1.5D+01 / s",
            "OBJECT  = 'it''s a field'      / quoted",
            "LONGSTR = 'first part &'",
            "CONTINUE  'second part'",
            "HIERARCH ISR BIAS = F",
            "COMMENT anything",
            "BLANK   = ''",
            "EMPTY   =",
            "DATE-OBS= '2026-11-20T01:00:00'",
        )
    )
    assert end == BLOCK
    assert cards == {
        "SIMPLE": True,
        "NAXIS": 0,
        "EXPTIME": 15.0,
        "OBJECT": "it's a field",
        "LONGSTR": "first part second part",
        "ISR BIAS": False,
        "BLANK": "",
        "EMPTY": None,
        "DATE-OBS": "2026-11-20T01:00:00",
    }


@pytest.mark.parametrize(
    "tai",
    [
        "2026-11-20T03:00:00.123",
        "2017-01-01T00:00:37",
        "2016-12-31T23:59:00",
        "1999-01-01T00:00:32.5",
        "1985-07-01T00:00:23.5",
        "1972-07-01T00:00:11",
    ],
)
def test_tai_to_utc_matches_astropy(tai):
    stamp = datetime.fromisoformat(tai)
    assert tai_to_utc(stamp) == Time(stamp, scale="tai").utc.to_datetime()


_NO_SCIENCE = """
import importlib.abc, json, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"numpy", "scipy", "astropy"}:
            raise ImportError(f"{name} is not in the registry-only layer")
sys.meta_path.insert(0, _Block())
from isrflow.io.fitsheader import read_hdu_headers
from isrflow.prompt.headers import observations_from_headers
import isrflow.prompt.ingest, isrflow.prompt.watch, isrflow.ops.status  # the ingest function's imports, and status
data = open(sys.argv[1], "rb").read()
camera, obs = observations_from_headers(read_hdu_headers(lambda o, n: data[o:o + n], len(data), "x"), "x")
print(json.dumps([o.model_dump(mode="json") for o in obs]))
"""


def test_header_path_needs_no_science_stack(tmp_path, reference_dir):
    """LSSTCam times are TAI: the UTC conversion must not need astropy in the Lambda layer."""
    primary, ext = header_dump(reference_dir / "headers" / "lsstcam-raw-R12_S10-e2v.yaml")
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(np.zeros((8, 8), dtype=np.int32))]
    fill(hdus[0].header, primary)
    fill(hdus[1].header, ext)
    path = tmp_path / "raw.fits"
    fits.HDUList(hdus).writeto(path)
    out = subprocess.run(
        [sys.executable, "-c", _NO_SCIENCE, str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [o.model_dump(mode="json") for o in read_observations(path)]
