"""Defect 5 of issue 10: `isrflow ingest` of many files registers every good one, lists each bad
one on one line, exits non-zero, and moves or copies no file whose rows did not commit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from click.testing import CliRunner

from isrflow.cli import cli
from isrflow.registry import ingest, open_repo


def _hsc(path: Path, detector: int, fill: int = 0, det_id: object = None) -> Path:
    """A minimal HSC raw (the keywords the translator reads); ``det_id`` overrides DET-ID."""
    header = fits.Header()
    header["INSTRUME"] = "Hyper Suprime-Cam"
    header["DET-ID"] = detector if det_id is None else det_id
    header["EXP-ID"] = "HSCA90333400"
    header["DATE-OBS"] = "2026-11-20"
    header["UT"] = "03:00:00.000"
    header["EXPTIME"] = 30.0
    header["DATA-TYP"] = "OBJECT"
    header["FILTER01"] = "HSC-R"
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.full((4, 4), fill, np.uint16), header).writeto(path)
    return path


def _files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "registry" not in p.name
    )


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    assert CliRunner().invoke(cli, ["repo", "create", str(repo)]).exit_code == 0
    return repo


def test_bad_files_are_listed_and_every_good_file_is_registered(tmp_path):
    repo = _repo(tmp_path)
    src = tmp_path / "in"
    good = [_hsc(src / f"g{d}.fits", d) for d in (49, 50, 51)]
    bad_det = _hsc(src / "bad_det.fits", 52, det_id="abc")  # raised a ValueError traceback before
    empty = src / "empty.fits"
    empty.write_bytes(b"")
    files = [good[0], bad_det, good[1], empty, good[2]]
    result = CliRunner().invoke(cli, ["ingest", "--repo", str(repo), *map(str, files)])
    assert result.exit_code == 3, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    assert [line.split(":")[0] for line in skipped] == [f"skipped {bad_det}", f"skipped {empty}"]
    assert "ValueError" in skipped[0] and "Traceback" not in result.output
    assert "ingested 3 raw dataset(s), 0 already registered, 2 file(s) skipped" in result.stdout
    registry = open_repo(repo)
    try:
        assert sorted(r.data_id["detector"] for r in registry.query_datasets("raw")) == [49, 50, 51]
    finally:
        registry.close()


def test_a_refused_registration_moves_nothing(tmp_path):
    repo = _repo(tmp_path)
    registered = _hsc(tmp_path / "elsewhere" / "g50.fits", 50)
    registry = open_repo(repo)
    try:
        assert ingest(registry, [registered], transfer="direct").ok  # detector 50 registered in place
        before = _files(repo)
        impostor = _hsc(tmp_path / "in" / "g50.fits", 50, fill=7)  # same data id, other bytes
        data = impostor.read_bytes()
        result = ingest(registry, [impostor], transfer="move")
        [(name, reason)] = result.skipped
        assert name == str(impostor) and "different uri/size/checksum" in reason
        assert impostor.read_bytes() == data  # still at its source
        assert _files(repo) == before and not list(repo.rglob("*.tmp"))  # nothing staged left behind
        assert [r.sha256 for r in registry.query_datasets("raw")] == [result_sha(registered)]
    finally:
        registry.close()


def result_sha(path: Path) -> str:
    from isrflow.registry.ingest import file_digest

    return file_digest(path)[1]


def test_an_invalid_run_is_refused_before_any_copy(tmp_path):
    repo = _repo(tmp_path)
    before = _files(repo)
    raw = _hsc(tmp_path / "in" / "g49.fits", 49)
    result = CliRunner().invoke(cli, ["ingest", "--repo", str(repo), "--run", "HSC/../escape", str(raw)])
    assert _files(repo) == before and _files(tmp_path / "in") == ["g49.fits"]  # nothing copied
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: CollectionError: invalid collection name 'HSC/../escape': '.' and '..' components are not allowed"
    ]
