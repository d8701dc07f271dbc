"""Bad input: the typed error, a non-zero one-line CLI exit, and no output file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from isrflow.cli import cli
from isrflow.io.rawio import read_raw
from isrflow.isr import load_calibrations, run_isr
from isrflow.model.errors import CalibrationMismatchError, IsrInputError, MissingHeaderKeywordError


def _run_cli(args):
    return CliRunner().invoke(cli, args)


def _assert_cli_fails(tmp_path, args, error_name):
    out = tmp_path / "out.fits"
    result = _run_cli(["isr", *args, "--out", str(out)])
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line]
    assert len(lines) == 1 and error_name in lines[0], result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not list(tmp_path.glob(".out.fits*")), "no temporary file left behind"


def test_truncated_file(small_night, tmp_path):
    raw = small_night.raws_of("science")[0]
    data = Path(raw.path).read_bytes()
    cut = tmp_path / "truncated.fits"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(IsrInputError, match=r"truncated\.fits"):
        read_raw(cut)
    with pytest.raises(IsrInputError):
        read_raw(data[:2000], name="s3://bucket/raw.fits")
    _assert_cli_fails(tmp_path, [str(cut)], "IsrInputError")


def test_not_fits(tmp_path):
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"this is not FITS" * 100)
    with pytest.raises(IsrInputError, match=r"junk\.fits"):
        read_raw(junk)
    _assert_cli_fails(tmp_path, [str(junk)], "IsrInputError")


def test_wrong_shape_for_camera(tmp_path):
    header = fits.Header()
    for key, value in {
        "INSTRUME": "Hyper Suprime-Cam",
        "DET-ID": 50,
        "EXP-ID": "HSCA90402400",
        "DATA-TYP": "OBJECT",
        "FILTER01": "HSC-i",
        "EXPTIME": 30.0,
        "DATE-OBS": "2013-11-02",
        "UT": "06:15:55.927",
    }.items():
        header[key] = value
    path = tmp_path / "small_hsc.fits"
    fits.PrimaryHDU(np.zeros((100, 200), dtype=np.uint16), header=header).writeto(path)
    with pytest.raises(IsrInputError, match=r"shape \(100, 200\).*\(4241, 2144\)"):
        read_raw(path)
    _assert_cli_fails(tmp_path, [str(path)], "IsrInputError")


def test_missing_keyword(small_night, tmp_path):
    raw = small_night.raws_of("science")[0]
    path = tmp_path / "no_exptime.fits"
    with fits.open(raw.path) as hdul:
        del hdul[0].header["EXPTIME"]
        hdul.writeto(path)
    with pytest.raises(MissingHeaderKeywordError, match="EXPTIME"):
        read_raw(path)
    _assert_cli_fails(tmp_path, [str(path)], "MissingHeaderKeywordError")


def test_calibration_of_another_detector(small_night, tmp_path):
    raw = next(r for r in small_night.raws_of("science") if r.detectors == [0])
    other = small_night.calibrations[1]
    with pytest.raises(CalibrationMismatchError, match="detector 1, not detector 0"):
        run_isr(read_raw(raw.path), load_calibrations(bias=other.bias))
    _assert_cli_fails(tmp_path, [raw.path, "--bias", other.bias], "CalibrationMismatchError")
    with pytest.raises(CalibrationMismatchError, match="is a dark calibration, not a bias"):
        run_isr(read_raw(raw.path), load_calibrations(bias=small_night.calibrations[0].dark))


def test_cli_success_writes_output(small_night, tmp_path):
    raw = small_night.raws_of("science")[0]
    cal = small_night.calibrations[raw.detectors[0]]
    out = tmp_path / "post.fits"
    config = tmp_path / "isr.yaml"
    config.write_text("cosmic_rays:\n  enabled: true\n")
    result = _run_cli(
        [
            "isr",
            raw.path,
            "--camera",
            "generic",
            "--bias",
            cal.bias,
            "--flat",
            cal.flat[raw.physical_filter],
            "--config",
            str(config),
            "--out",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.output
    with fits.open(out) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]
        assert hdul["MASK"].header["MP_SAT"] == 1 and hdul["MASK"].header["MP_NO_DATA"] == 8
        assert hdul[0].header["HIERARCH ISR DARK"] is False and hdul[0].header["HIERARCH ISR FLAT"] is True
        assert hdul["IMAGE"].data.dtype.kind == "f" and hdul["MASK"].data.dtype.kind == "i"


def test_bad_config_is_a_clear_error(small_night, tmp_path):
    raw = small_night.raws_of("science")[0]
    config = tmp_path / "isr.yaml"
    config.write_text("overscan:\n  fit_type: SPLINE\n")
    _assert_cli_fails(tmp_path, [raw.path, "--config", str(config)], "ConfigError")


@pytest.mark.parametrize(
    ("kind", "fill", "fraction", "usable"),
    [
        ("bias", np.nan, 0.4, True),
        ("bias", np.nan, 0.6, False),
        ("dark", np.inf, 0.6, False),
        ("bias", "inf-pair", 0.1, True),  # +inf and -inf: the float64 sum is NaN, the count decides
        ("flat", 0.0, 0.4, True),
        ("flat", 0.0, 0.6, False),
        ("flat", -1.0, 0.6, False),
        ("flat", np.inf, 0.6, False),
        ("flat", np.nan, 0.0, True),  # every pixel finite and > 0
    ],
)
def test_calibration_pixels_usable_only_when_half_or_more_are(kind, fill, fraction, usable):
    from isrflow.io.exposure_io import Exposure
    from isrflow.isr.calibrate import check_calibration_pixels
    from isrflow.model.errors import CalibrationError

    image = np.full((40, 50), 1.5 if kind == "flat" else 300.0, np.float32)
    flat = image.reshape(-1)
    n = int(fraction * flat.size)
    if fill == "inf-pair":
        flat[: n // 2], flat[n // 2 : n] = np.inf, -np.inf
    else:
        flat[:n] = fill
    if usable:
        check_calibration_pixels("c.fits", kind, Exposure(image))
    else:
        with pytest.raises(CalibrationError, match=r"c\.fits: only 40\.0% of the"):
            check_calibration_pixels("c.fits", kind, Exposure(image))
