"""Raw ingest (transfer modes, idempotency) and the registry CLI commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from registry_helpers import T0, calib_msg, utc

from isrflow.registry import REPO_CONFIG, Registry, dataset_uri, ingest, open_repo, uri_to_path
from isrflow.registry.ingest import file_digest

pytest.importorskip("isrflow.io.rawio")
fits = pytest.importorskip("astropy.io.fits")
np = pytest.importorskip("numpy")


def hsc_raw(
    path: Path,
    detector: int = 50,
    exposure: int = 903334,
    ut: str = "03:00:00.000",
    physical_filter: str = "HSC-R",
    data_type: str = "OBJECT",
    fill: int = 0,
) -> Path:
    """A minimal HSC raw: the header keywords the HSC translator reads, tiny pixels."""
    header = fits.Header()
    header["INSTRUME"] = "Hyper Suprime-Cam"
    header["DET-ID"] = detector
    header["EXP-ID"] = f"HSCA{exposure}00"
    header["DATE-OBS"] = "2026-11-20"
    header["UT"] = ut
    header["EXPTIME"] = 30.0
    header["DATA-TYP"] = data_type
    header["FILTER01"] = physical_filter
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.full((4, 4), fill, np.uint16), header).writeto(path)
    return path


def decam_raw(path: Path, exposure: int = 177764, detectors=((1, "S29"), (2, "S30"), (4, "S25"))) -> Path:
    """A minimal DECam exposure file: one extension per detector."""
    primary = fits.Header()
    primary["INSTRUME"] = "DECam"
    primary["EXPNUM"] = exposure
    primary["OBSTYPE"] = "object"
    primary["FILTER"] = "g DECam SDSS c0001 4720.0 1520.0"
    primary["DATE-OBS"] = "2026-11-20T03:00:00.000000"
    primary["EXPTIME"] = 30.0
    hdus = [fits.PrimaryHDU(header=primary)]
    for ccdnum, name in detectors:
        h = fits.Header()
        h["EXTNAME"] = name
        h["CCDNUM"] = ccdnum
        h["DETPOS"] = name
        hdus.append(fits.ImageHDU(np.zeros((4, 4), np.uint16), h))
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "incoming"
    files = {f"hsc{d}": hsc_raw(src / f"HSC-903334-{d:03d}.fits", detector=d, fill=d) for d in (49, 50, 51)}
    files["junk"] = src / "notes.txt"
    files["junk"].write_text("not a FITS file")
    fits.PrimaryHDU(np.zeros((2, 2))).writeto(src / "plain.fits")  # FITS, but no known camera
    files["plain"] = src / "plain.fits"
    files["decam"] = decam_raw(src / "DECam_00177764.fits")
    return files


def test_ingest_copy_is_idempotent(registry: Registry, inputs: dict[str, Path]) -> None:
    hsc = [inputs[f"hsc{d}"] for d in (49, 50, 51)]
    first = ingest(
        registry, [*hsc, inputs["junk"], inputs["plain"], inputs["junk"].with_name("missing.fits")]
    )
    assert len(first.ingested) == 3 and first.existing == []
    skipped = dict(first.skipped)
    assert "not a raw of a known camera" in skipped[str(inputs["plain"])]
    assert (
        str(inputs["junk"]) in skipped
        and skipped[str(inputs["junk"].with_name("missing.fits"))] == "no such file"
    )
    for ref, src in zip(sorted(first.ingested, key=lambda r: r.data_id["detector"]), hsc, strict=True):
        assert ref.uri == dataset_uri(registry.datastore_root, "HSC/raw/all", "raw", ref.data_id)
        assert uri_to_path(ref.uri).read_bytes() == src.read_bytes()
        assert (ref.size, ref.sha256) == file_digest(src)
        assert registry.get_dataset(ref.id) == ref
    [q] = registry.find_quanta("detector = 50", "HSC/raw/all", None, "HSC/runs/x", needed_calibs=()).quanta
    assert (q.exposure, q.detector_name, q.physical_filter, q.exposure_begin) == (903334, "1_12", "HSC-R", T0)
    stored = sorted(p for p in Path(registry.datastore_root[len("file://") :]).rglob("*") if p.is_file())
    again = ingest(registry, hsc)
    assert again.ingested == [] and again.skipped == [] and len(again.existing) == 3
    assert (
        sorted(p for p in Path(registry.datastore_root[len("file://") :]).rglob("*") if p.is_file()) == stored
    )
    assert len(registry.query_datasets("raw")) == 3


def test_transfer_modes(registry: Registry, inputs: dict[str, Path], tmp_path: Path) -> None:
    direct = ingest(registry, [inputs["hsc49"]], transfer="direct")
    assert uri_to_path(direct.ingested[0].uri) == inputs["hsc49"]
    linked = ingest(registry, [inputs["hsc50"]], transfer="link")
    target = uri_to_path(linked.ingested[0].uri)
    assert target.is_symlink() and Path(os.readlink(target)) == inputs["hsc50"]
    moved = ingest(registry, [inputs["hsc51"]], transfer="move")
    assert not inputs["hsc51"].exists() and uri_to_path(moved.ingested[0].uri).is_file()
    assert ingest(registry, [inputs["hsc51"]], transfer="move").skipped == [
        (str(inputs["hsc51"]), "no such file")
    ]
    # A DECam exposure file holds several detectors: stored once, one dataset per detector.
    decam = ingest(registry, [inputs["decam"]])
    assert sorted(r.data_id["detector"] for r in decam.ingested) == [1, 2, 4]
    assert {r.uri for r in decam.ingested} == {
        dataset_uri(
            registry.datastore_root, "DECam/raw/all", "raw", {"instrument": "DECam", "exposure": 177764}
        )
    }
    assert ingest(registry, [inputs["decam"]], transfer="copy").existing != []
    with pytest.raises(Exception, match="unknown transfer mode"):
        ingest(registry, [inputs["decam"]], transfer="teleport")  # type: ignore[arg-type]


def test_ingest_refuses_a_different_file_for_the_same_data_id(
    registry: Registry, inputs, tmp_path: Path
) -> None:
    ingest(registry, [inputs["hsc50"]])
    impostor = hsc_raw(tmp_path / "other" / "HSC-903334-050.fits", detector=50, fill=7)
    result = ingest(registry, [impostor])
    [(name, reason)] = result.skipped
    assert name == str(impostor) and "already exists with different content" in reason
    direct = ingest(registry, [impostor], transfer="direct")
    assert "different uri/size/checksum" in direct.skipped[0][1]
    assert registry.query_datasets("raw")[0].sha256 == file_digest(inputs["hsc50"])[1]


# --- CLI -------------------------------------------------------------------------------------


@pytest.fixture
def cli():
    from isrflow.cli import cli as group

    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(group, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == code, (result.output, result.stderr if hasattr(result, "stderr") else "")
        return result

    return run


def test_cli_repo_ingest_datasets_certify(backend, cli, inputs: dict[str, Path], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    extra = ["--registry", backend.url, "--schema", backend.schema] if backend.schema else []
    out = cli("repo", "create", repo, *extra)
    assert "created repository" in out.output
    config = yaml.safe_load((repo / REPO_CONFIG).read_text())
    assert config["datastore"] == "." and (
        backend.schema or config["registry"] == "sqlite:///registry.sqlite3"
    )
    cli("repo", "create", repo, *extra, code=1)  # already a repository

    partial = cli("ingest", "--repo", repo, inputs["hsc49"], inputs["hsc50"], inputs["plain"], code=3)
    assert "ingested 2 raw dataset(s), 0 already registered, 1 file(s) skipped" in partial.output
    assert "skipped" in partial.stderr and "plain.fits" in partial.stderr
    cli("ingest", "--repo", repo, "--transfer", "direct", inputs["hsc49"], inputs["hsc50"], inputs["hsc51"])

    listing = json.loads(cli("datasets", "--repo", repo, "--json", "--where", "detector IN (50..51)").output)
    assert sorted(d["data_id"]["detector"] for d in listing) == [50, 51]
    assert set(listing[0]) >= {"id", "type", "run", "data_id", "uri"}
    assert {d["type"] for d in listing} == {"raw"} and {d["run"] for d in listing} == {"HSC/raw/all"}
    text = cli("datasets", "--repo", repo, "--type", "raw").output
    assert len(text.strip().splitlines()) == 3 and all(line.startswith("raw ") for line in text.splitlines())
    bad = cli("datasets", "--repo", repo, "--where", "detector = 1; DROP TABLE dataset", code=1)
    assert "QuerySyntaxError" in bad.stderr and "position 12" in bad.stderr

    # Calibrations written by a pipeline, then certified from the command line.
    registry = open_repo(repo)
    try:
        registry.apply(
            [calib_msg("bias", d, "HSC/calib/bias/20261119") for d in (49, 50)]
            + [calib_msg("bias", 50, "HSC/calib/bias/20261201")]
        )
    finally:
        registry.close()
    done = cli(
        "calib",
        "certify",
        "--repo",
        repo,
        "--type",
        "bias",
        "--run",
        "HSC/calib/bias/20261119",
        "--begin",
        "2026-11-19",
        "--end",
        "2026-12-01T00:00:00+00:00",
    )
    assert "certified 2 bias dataset(s) from HSC/calib/bias/20261119 into HSC/calib" in done.output
    clash = cli(
        "calib",
        "certify",
        "--repo",
        repo,
        "--type",
        "bias",
        "--run",
        "HSC/calib/bias/20261201",
        "--begin",
        "2026-11-30",
        code=1,
    )
    assert "CertificationConflictError" in clash.stderr and len(clash.stderr.strip().splitlines()) == 1
    cli(
        "calib",
        "certify",
        "--repo",
        repo,
        "--type",
        "bias",
        "--run",
        "HSC/calib/bias/20261201",
        "--begin",
        "2026-12-01",
    )
    certified = json.loads(cli("datasets", "--repo", repo, "--collection", "HSC/calib", "--json").output)
    spans = sorted(
        (d["data_id"]["detector"], d["validity"]["begin"], d["validity"]["end"]) for d in certified
    )
    assert spans == [
        (49, "2026-11-19T00:00:00Z", "2026-12-01T00:00:00Z"),
        (50, "2026-11-19T00:00:00Z", "2026-12-01T00:00:00Z"),
        (50, "2026-12-01T00:00:00Z", None),
    ]
    cli("calib", "certify", "--repo", repo, "--type", "flat", "--run", "HSC/calib/bias/20261119", code=1)
    cli(
        "calib",
        "certify",
        "--repo",
        repo,
        "--type",
        "bias",
        "--run",
        "HSC/calib/bias/20261119",
        "--begin",
        "yesterday",
        code=2,
    )

    registry = open_repo(repo)
    try:
        plan = registry.find_quanta(
            "detector = 50", "HSC/raw/all", "HSC/calib", "HSC/runs/isr", needed_calibs=("bias",)
        )
        [q] = plan.quanta
        assert q.calibs["bias"].run == "HSC/calib/bias/20261119"
        assert q.exposure_begin == utc(2026, 11, 20, 3)
    finally:
        registry.close()


def test_cli_open_repo_errors(cli, tmp_path: Path) -> None:
    missing = cli("datasets", "--repo", tmp_path / "nowhere", code=1)
    assert "not an isrflow repository" in missing.stderr
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / REPO_CONFIG).write_text("registry: [1, 2]\n")
    assert "invalid repository config" in cli("datasets", "--repo", tmp_path / "broken", code=1).stderr
