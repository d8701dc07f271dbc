"""Defect 6 of issue 10: bad input ends in one line ``error: <TypedError>: <file>: <what>`` and
exit 1 (or, for ``isrflow ingest``, one ``skipped`` line naming the typed error), never in a
traceback or a silent success, and leaves no output or temporary file behind.

Each case edits a copy of a small simulated frame or calibration (``small_night``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from isrflow.cli import cli
from isrflow.registry import open_repo

# --- helpers ---------------------------------------------------------------------------------


def _science(night) -> Path:
    """The detector-0 science raw of the small night (filter r)."""
    return next(Path(r.path) for r in night.raws_of("science") if r.detectors == [0])


def _calib(night, kind: str) -> Path:
    files = night.calibrations[0]
    return Path(files.flat["r"] if kind == "flat" else getattr(files, kind))


def _edited(src: Path, dst: Path, edit) -> Path:
    """A copy of ``src`` at ``dst`` after ``edit(hdulist)``."""
    with fits.open(src) as hdul:
        copy = fits.HDUList([hdu.copy() for hdu in hdul])
    edit(copy)
    dst.parent.mkdir(parents=True, exist_ok=True)
    copy.writeto(dst)
    return dst


def _set(key: str, value, hdu: int = 0):
    def edit(hdul):
        hdul[hdu].header[key] = value

    return edit


def _invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def _one_error_line(code: int, output: str, error: str, where: str) -> str:
    """Exit 1 and exactly one line ``error: <error>: <where>...``; returns the line."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, output
    assert lines[0].startswith(f"error: {error}: "), lines[0]
    assert where in lines[0] and "Traceback" not in output, lines[0]
    return lines[0]


def _isr_fails(tmp_path: Path, raw: Path, error: str, where: str, *options) -> str:
    """``isrflow isr`` fails with one typed line and writes nothing into its output folder."""
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    code, output = _invoke("isr", raw, "--out", out_dir / "frame.fits", *options)
    line = _one_error_line(code, output, error, where)
    assert list(out_dir.iterdir()) == [], "no output or temporary file left behind"
    return line


@pytest.fixture(scope="module")
def repo(small_night, tmp_path_factory) -> Path:
    """A repository holding the small night's raws."""
    root = tmp_path_factory.mktemp("bad_input") / "repo"
    assert _invoke("repo", "create", root)[0] == 0
    code, output = _invoke("ingest", "--repo", root, *(r.path for r in small_night.raws))
    assert code == 0, output
    return root


def _datastore_files(root: Path, under: str) -> list[Path]:
    base = root / under
    return sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []


# --- raw headers -----------------------------------------------------------------------------


def test_negative_exptime(small_night, tmp_path, repo):
    raw = _edited(_science(small_night), tmp_path / "neg_exptime.fits", _set("EXPTIME", -5.0))
    line = _isr_fails(tmp_path, raw, "MissingHeaderKeywordError", str(raw))
    assert "exptime = -5.0" in line
    # ingest lists it with the typed error and registers nothing
    code, output = _invoke("ingest", "--repo", repo, "--run", "bad/exptime", raw)
    assert code != 0 and "Traceback" not in output
    assert f"skipped {raw}: MissingHeaderKeywordError: " in output
    assert _datastore_files(repo, "bad") == []


def test_zero_gain(small_night, tmp_path):
    raw = _edited(_science(small_night), tmp_path / "zero_gain.fits", _set("GAIN", 0.0, hdu=1))
    line = _isr_fails(tmp_path, raw, "MissingHeaderKeywordError", f"{raw}[AMP1]")
    assert "gain = 0.0" in line


def test_missing_datasec(small_night, tmp_path):
    def drop(hdul):
        del hdul[2].header["DATASEC"]

    raw = _edited(_science(small_night), tmp_path / "no_datasec.fits", drop)
    line = _isr_fails(tmp_path, raw, "MissingHeaderKeywordError", f"{raw}[AMP2]")
    assert "DATASEC is missing" in line


@pytest.mark.parametrize("byte", [0x07, 0x1B], ids=["bell", "escape"])
def test_non_printable_header_bytes(small_night, tmp_path, byte):
    data = bytearray(_science(small_night).read_bytes())
    at = data.index(b"FILTER  = 'r")
    data[at + 11] = byte  # the filter name's character becomes a control byte
    raw = tmp_path / "control.fits"
    raw.write_bytes(bytes(data))
    line = _isr_fails(tmp_path, raw, "MissingHeaderKeywordError", str(raw))
    assert "FILTER" in line


@pytest.mark.parametrize(
    ("keyword", "value", "hdu", "error"),
    [
        ("DARKTIME", -1.0, 0, "MissingHeaderKeywordError"),
        ("EXPTIME", 1e300, 0, "MissingHeaderKeywordError"),  # OverflowError in timedelta
        ("EXPNUM", 10**30, 0, "MissingHeaderKeywordError"),  # was a silent success (exposure 10^30)
        ("RDNOISE", -4.0, 1, "MissingHeaderKeywordError"),
        ("CCDNUM", -5, 0, "IsrInputError"),
    ],
    ids=["darktime", "exptime-huge", "expnum-huge", "rdnoise", "ccdnum"],
)
def test_other_bad_header_values(small_night, tmp_path, keyword, value, hdu, error):
    raw = _edited(_science(small_night), tmp_path / "bad_value.fits", _set(keyword, value, hdu))
    _isr_fails(tmp_path, raw, error, str(raw))


# --- calibrations ----------------------------------------------------------------------------


def test_calibration_detector_not_a_number(small_night, tmp_path, repo):
    bias = _edited(_calib(small_night, "bias"), tmp_path / "abc_bias.fits", _set("DETECTOR", "abc"))
    line = _isr_fails(tmp_path, _science(small_night), "CalibrationError", str(bias), "--bias", bias)
    assert "'abc'" in line
    code, output = _invoke("calib", "import", "--repo", repo, "--run", "bad/abc", bias)
    _one_error_line(code, output, "CalibrationError", str(bias))
    assert _datastore_files(repo, "bad/abc") == []


# --- outputs ---------------------------------------------------------------------------------


def test_unwritable_out(small_night, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = blocker / "frame.fits"
    code, output = _invoke("isr", _science(small_night), "--out", out)
    _one_error_line(code, output, "OutputWriteError", str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


# --- --where ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("detector = \u00b2", "QuerySyntaxError"),  # isdigit() but not \d: was an AssertionError
        ("detector_n\u00e9me = 'x'", "QuerySyntaxError"),  # isalpha() but not [A-Za-z]: AssertionError
        ("detector = 99999999999999999999999999", "QueryTypeError"),  # OverflowError in SQLite
        ("detector = 9223372036854775808", "QueryTypeError"),  # one past the 64-bit range
        ("detector IN (0..99999999999999999999)", "QueryTypeError"),
        ("exposure = " + "9" * 5000, "QueryTypeError"),  # int() refuses > 4300 digits (ValueError)
        ("exptime > 1e400", "QueryTypeError"),  # inf
        ("(" * 3000 + "detector = 0" + ")" * 3000, "QuerySyntaxError"),  # RecursionError
        ("NOT " * 3000 + "detector = 0", "QuerySyntaxError"),  # RecursionError
        (" AND ".join(["detector = 0"] * 3000), "QuerySyntaxError"),  # RecursionError / SQLite depth
        ("detector IN (" + ",".join(["1..2"] * 2000) + ")", "QuerySyntaxError"),
    ],
    ids=[
        "superscript",
        "accented",
        "huge-int",
        "int64+1",
        "huge-range",
        "5000-digits",
        "inf",
        "parens",
        "nots",
        "ands",
        "ranges",
    ],
)
def test_where_bad_input(repo, query, error):
    code, output = _invoke("datasets", "--repo", repo, "--where", query)
    _one_error_line(code, output, error, "at position")


def test_where_limits_still_allow_real_queries(repo):
    query = "(" * 10 + " AND ".join(f"detector IN (-{n}..0)" for n in range(1, 100)) + ")" * 10
    code, output = _invoke("datasets", "--repo", repo, "--type", "raw", "--where", f"NOT NOT {query}")
    assert code == 0, output
    assert "detector=0" in output and "detector=1 " not in output
    code, output = _invoke("datasets", "--repo", repo, "--where", "detector IN (0..9223372036854775807)")
    assert code == 0, output


# --- collection names ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bad name!", "x/../y", "", "a" * 300])
def test_invalid_collection_names(small_night, repo, name):
    bias = _calib(small_night, "bias")
    code, output = _invoke("calib", "import", "--repo", repo, "--run", name, bias)
    _one_error_line(code, output, "CollectionError", "invalid collection name")
    code, output = _invoke(
        "calib", "certify", "--repo", repo, "--type", "bias", "--run", "Generic/raw/all", "--collection", name
    )
    _one_error_line(code, output, "CollectionError", "invalid collection name")


def test_nul_byte_in_any_argument_is_refused_before_the_command_runs(small_night, repo):
    bias = _calib(small_night, "bias")
    code, output = _invoke("calib", "import", "--repo", repo, "--run", "a\x00b", bias)
    _one_error_line(code, output, "InvalidArgumentError", "'a<NUL>b'")
    code, output = _invoke("isr", str(bias) + "\x00", "--out", repo / "x.fits")
    _one_error_line(code, output, "InvalidArgumentError", "contains a NUL byte")
    assert not (repo / "x.fits").exists()


# --- silent successes ------------------------------------------------------------------------


def test_all_nan_raw(small_night, tmp_path):
    def nan(hdul):
        for hdu in hdul[1:]:
            hdu.data = np.full(hdu.data.shape, np.nan, dtype=np.float32)

    raw = _edited(_science(small_night), tmp_path / "all_nan.fits", nan)
    line = _isr_fails(tmp_path, raw, "IsrInputError", str(raw))
    assert "NaN" in line


def test_raw_missing_an_amplifier(small_night, tmp_path):
    def drop(hdul):
        del hdul[4]

    raw = _edited(_science(small_night), tmp_path / "three_amps.fits", drop)
    _isr_fails(tmp_path, raw, "IsrInputError", str(raw))


def test_nan_bias(small_night, tmp_path, repo):
    def nan(hdul):
        hdul["IMAGE"].data = np.full(hdul["IMAGE"].data.shape, np.nan, dtype=np.float32)

    bias = _edited(_calib(small_night, "bias"), tmp_path / "nan_bias.fits", nan)
    _isr_fails(tmp_path, _science(small_night), "CalibrationError", str(bias), "--bias", bias)
    code, output = _invoke("calib", "import", "--repo", repo, "--run", "bad/nan", bias)
    _one_error_line(code, output, "CalibrationError", str(bias))
    assert _datastore_files(repo, "bad/nan") == []


def test_zero_flat(small_night, tmp_path):
    def zero(hdul):
        hdul["IMAGE"].data = np.zeros(hdul["IMAGE"].data.shape, dtype=np.float32)

    flat = _edited(_calib(small_night, "flat"), tmp_path / "zero_flat.fits", zero)
    _isr_fails(tmp_path, _science(small_night), "CalibrationError", str(flat), "--flat", flat)


def test_flat_of_another_filter(small_night, tmp_path):
    flat = _edited(_calib(small_night, "flat"), tmp_path / "g_flat.fits", _set("FILTER", "g"))
    line = _isr_fails(tmp_path, _science(small_night), "CalibrationMismatchError", str(flat), "--flat", flat)
    assert "'g'" in line and "'r'" in line


def test_detector_option_names_another_detector(small_night, tmp_path):
    raw = _science(small_night)
    _isr_fails(tmp_path, raw, "IsrInputError", str(raw), "--detector", "7")
    code, output = _invoke("isr", raw, "--out", tmp_path / "ok" / "frame.fits", "--detector", "CCD0")
    assert code == 0, output


def test_good_calibrations_still_work(small_night, tmp_path, repo):
    options = ["--bias", _calib(small_night, "bias"), "--flat", _calib(small_night, "flat")]
    code, output = _invoke("isr", _science(small_night), "--out", tmp_path / "frame.fits", *options)
    assert code == 0, output
    registry = open_repo(repo)
    try:
        assert len(registry.query_datasets("raw")) == len(small_night.raws)
    finally:
        registry.close()


# --- the ingest function's header-only reader (no astropy in the Lambda layer) ----------------


def _drop(keyword: str, hdu: int):
    def edit(hdul):
        del hdul[hdu].header[keyword]

    return edit


def _drop_hdu(hdul):
    del hdul[4]


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (_set("EXPTIME", -5.0), "MissingHeaderKeywordError"),
        (_set("GAIN", 0.0, hdu=1), "MissingHeaderKeywordError"),
        (_drop("DATASEC", 2), "MissingHeaderKeywordError"),
        (_drop_hdu, "IsrInputError"),
        (None, "NotFitsError"),  # a control byte in a header card
    ],
    ids=["exptime", "gain", "datasec", "missing-amp", "control-byte"],
)
def test_header_only_reader(small_night, tmp_path, edit, error):
    from isrflow.io.fitsheader import read_hdu_headers
    from isrflow.model.errors import IsrflowError
    from isrflow.prompt.headers import observations_from_headers

    path = tmp_path / "upload.fits"
    if edit is None:
        data = bytearray(_science(small_night).read_bytes())
        data[data.index(b"FILTER  = 'r") + 11] = 0x07
        path.write_bytes(bytes(data))
    else:
        _edited(_science(small_night), path, edit)
    data = path.read_bytes()
    with pytest.raises(IsrflowError) as caught:
        observations_from_headers(
            read_hdu_headers(lambda at, n: data[at : at + n], len(data), path.name), path.name
        )
    assert type(caught.value).__name__ == error and path.name in str(caught.value)


# --- in a run: a recorded per-detector failure -----------------------------------------------


def test_all_nan_raw_in_a_run_is_a_recorded_detector_failure(tmp_path, monkeypatch):
    from one_cluster import plan_and_isr_one

    from isrflow.local.queue import LocalQueue
    from isrflow.registry import create_repo, ingest
    from isrflow.registry.calib_import import import_calibrations
    from isrflow.simulate import SimulationRequest, simulate

    registry = create_repo(tmp_path / "repo")
    night = simulate(
        SimulationRequest(
            camera="generic", small=True, detectors=[0], science=1, seed=5, out=tmp_path / "sim"
        )
    )

    def nan(hdul):
        for hdu in hdul[1:]:
            hdu.data = np.full(hdu.data.shape, np.nan, dtype=np.float32)

    raws = [Path(r.path) for r in night.raws if r.obs_type != "science"]
    raws.append(_edited(Path(night.raws_of("science")[0].path), tmp_path / "nan" / "science.fits", nan))
    assert ingest(registry, raws).ok  # headers are fine; the pixels are not
    (cal,) = night.calibrations.values()
    refs = import_calibrations(
        registry, [cal.bias, cal.dark, cal.defects, *cal.flat.values()], "Generic/calib/truth"
    )
    registry.register_collection("Generic/calib", "CALIBRATION")
    registry.certify([r.id for r in refs], "Generic/calib", None, None)
    queue = LocalQueue(tmp_path / "repo" / "queue.sqlite3", "registry")
    summary, result = plan_and_isr_one(
        registry,
        queue,
        monkeypatch,
        where="instrument = 'Generic' AND obs_type = 'science'",
        calib_collection="Generic/calib",
        output_run="Generic/runs/nan",
        execution_id="exec-all-nan",
    )
    assert (summary["succeeded"], summary["failed"]) == (0, 1)
    assert result.status == "failed" and result.error.startswith("IsrInputError: ") and "NaN" in result.error
    assert _datastore_files(tmp_path / "repo", "Generic/runs/nan") == [], (
        "no output file for the failed detector"
    )
