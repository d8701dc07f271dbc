"""The rough edges a new user hit (issue 14), each checked through the command line: a query
selecting nothing, a failed prompt execution under ``ingest --watch``, list options, foreign
calibrations in ``isrflow isr``, the example input and the demo's text, the per-master status
table of a calibration build, and ``ingest --repo s3://...``."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner
from visit_helpers import make_repo

from isrflow import Client
from isrflow.cli import cli
from isrflow.io.exposure_io import read_exposure
from isrflow.simulate import SimulationRequest, simulate
from tests.fake_aws import use_fake_aws


def invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """Small generic repository: detectors 0 and 1, one science exposure, true calibrations."""
    return make_repo(tmp_path_factory.mktemp("edges"), detectors=(0, 1), science=1)


# ---------------------------------------------------------------- nothing selected, list options


@pytest.mark.parametrize(
    "form",
    [
        ["Generic/raw/all Generic/calib/truth"],
        ["Generic/raw/all", "--input-collections", "Generic/calib/truth"],
        ["Generic/raw/all,Generic/calib/truth"],
    ],
)
def test_process_visit_selecting_nothing_exits_non_zero_naming_every_collection(repo, form):
    result = invoke(
        [
            "run",
            "process-visit",
            "--repo",
            repo.root,
            "--where",
            "detector = 77",
            "--output-run",
            "u/test/none",
            "--input-collections",
            *form,
        ]
    )
    assert result.exit_code == 1, result.output
    # the space-separated, repeated and comma forms all give the two collections, in order
    assert "selects no raws in Generic/raw/all, Generic/calib/truth" in result.output
    assert not (repo.root / "executions").exists() or not any((repo.root / "executions").iterdir())


def test_calib_build_selecting_nothing_exits_non_zero(repo):
    result = invoke(
        [
            "calib",
            "build",
            "flat",
            "--repo",
            repo.root,
            "--where",
            "detector = 0",
            "--output-run",
            "u/test/noflat",
        ]
    )
    assert result.exit_code == 1, result.output
    assert "NothingSelectedError" in result.output and "selects no flat raws" in result.output


# ---------------------------------------------------------------- ingest --watch with a failing execution


def test_failed_prompt_execution_under_watch_exits_non_zero(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ops"))
    from ops_helpers import make_prompt_repo

    prompt = make_prompt_repo(tmp_path, detectors=(1,))
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    shutil.copy(prompt.science[0], incoming / prompt.science[0].name)
    # a calibration collection the repository does not have: the upload's ProcessVisit fails
    result = invoke(
        [
            "ingest",
            "--repo",
            prompt.root,
            "--watch",
            incoming,
            "--once",
            "--workers",
            "2",
            "--parameter",
            "PromptCalibCollection=Generic/nocalib",
            "--parameter",
            "PromptOutputRun={instrument}/p/{day_obs}",
        ]
    )
    assert result.exit_code == 1, result.output
    assert f"ingested {prompt.science[0].name}" in result.output or "ingested raw" in result.output
    assert "FAILED" in result.output and "did not succeed" in result.output


# ---------------------------------------------------------------- isr with other tools' calibrations


@pytest.fixture(scope="module")
def one_detector(tmp_path_factory):
    out = tmp_path_factory.mktemp("isr")
    return simulate(
        SimulationRequest(camera="generic", small=True, detectors=[0], science=1, seed=4, out=out)
    ), out


def test_isr_accepts_a_plain_fits_calibration_with_a_warning(one_detector):
    night, out = one_detector
    raw = night.raws_of("science")[0].path
    bias = night.calibrations[0].bias
    plain = out / "bias_from_elsewhere.fits"
    fits.PrimaryHDU(read_exposure(bias).image).writeto(plain)  # pixels only: no DETECTOR, no planes
    ours = invoke(["isr", raw, "--bias", bias, "--out", out / "ours.fits"])
    theirs = invoke(["isr", raw, "--bias", plain, "--out", out / "theirs.fits"])
    assert ours.exit_code == 0, ours.output
    assert theirs.exit_code == 0, theirs.output
    assert (
        "warning" in theirs.output and "cannot be checked" in theirs.output and "detector 0" in theirs.output
    )
    assert "warning" not in ours.output
    # the same bias pixels give the same image
    np.testing.assert_allclose(
        read_exposure(out / "theirs.fits").image, read_exposure(out / "ours.fits").image, rtol=0, atol=1e-3
    )


def test_isr_still_refuses_a_plain_calibration_naming_another_detector(one_detector):
    night, out = one_detector
    raw = night.raws_of("science")[0].path
    other = out / "bias_detector_5.fits"
    hdu = fits.PrimaryHDU(read_exposure(night.calibrations[0].bias).image)
    hdu.header["DETECTOR"] = 5
    hdu.writeto(other)
    result = invoke(["isr", raw, "--bias", other, "--out", out / "refused.fits"])
    assert result.exit_code == 1
    assert "CalibrationMismatchError" in result.output and "detector 5" in result.output
    assert not (out / "refused.fits").exists()


# ---------------------------------------------------------------- the example input and the demo


def test_example_process_visit_input_selects_what_make_demo_simulates():
    from isrflow.cli.demo_cmd import demo_command
    from isrflow.simulate import FIRST_EXPOSURE

    spec = json.loads(
        (Path(__file__).resolve().parents[2] / "events" / "process_visit_input.json").read_text()
    )
    defaults = {p.name: p.default for p in demo_command.params}
    assert defaults["camera"] == "hsc"
    calib_frames = defaults["n_bias"] + defaults["n_dark"] + defaults["n_flat"]
    science = {FIRST_EXPOSURE["hsc"] + 2 * i for i in range(calib_frames, calib_frames + defaults["science"])}
    where = spec["where"]
    assert "instrument = 'HSC'" in where and spec["input_collections"] == ["HSC/raw/all"]
    (exposure,) = map(int, re.findall(r"exposure = (\d+)", where))
    lo, hi = map(int, re.search(r"detector IN \((\d+)\.\.(\d+)\)", where).groups())
    assert exposure in science
    assert set(range(lo, hi + 1)) <= {0, 1, 2, 3}  # the demo's detectors (0-3)
    assert spec["calib_collection"] == "HSC/calib"  # the demo points this chain at what it built


def test_demo_explains_its_numbers_first_and_ends_with_next_steps(tmp_path):
    result = invoke(
        [
            "demo",
            "--repo",
            tmp_path / "demo",
            "--camera",
            "generic",
            "--small",
            "--detectors",
            "0-1",
            "--science",
            "1",
            "--true-calibrations",
            "--workers",
            "2",
        ]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.index("chi std ~1 means") < out.index("chi mean  chi std")  # explained before the table
    tail = out[out.index("execution SUCCEEDED") :]
    assert "isrflow status" in tail and "isrflow preview" in tail and "quickstart.ipynb" in tail


def test_demo_points_the_default_calibration_collection_at_what_it_built(repo):
    from isrflow.cli.demo_cmd import _point_default_chain

    registry = repo.registry
    registry.register_collection("Other/calib/demo-1", "CALIBRATION")
    registry.register_collection("Other/calib/demo-2", "CALIBRATION")
    _point_default_chain(registry, "Other", "Other/calib/demo-1")
    _point_default_chain(registry, "Other", "Other/calib/demo-2")  # a second demo run moves it
    assert registry.get_chain("Other/calib") == ["Other/calib/demo-2"]
    _point_default_chain(registry, "Generic", "Other/calib/demo-2")  # Generic/calib holds true calibrations
    assert registry.collection_type("Generic/calib") == "CALIBRATION"


# ---------------------------------------------------------------- status of a calibration build


def test_status_of_a_calib_build_shows_a_table_per_master(tmp_path):
    from isrflow.registry import create_repo, ingest

    night = simulate(
        SimulationRequest(
            camera="generic", small=True, detectors=[0, 1], bias=3, seed=6, out=tmp_path / "sim"
        )
    )
    registry = create_repo(tmp_path / "repo")
    assert ingest(registry, [r.path for r in night.raws]).ok
    registry.close()
    client = Client.local(tmp_path / "repo", workers=2)
    build = client.calib_build("bias", "instrument = 'Generic'", "u/test/bias", wait=True, progress=False)
    assert build.status() == "SUCCEEDED"
    masters = build.masters()
    assert sorted(masters["detector"]) == [0, 1] and set(masters["status"]) == {"succeeded"}
    assert set(masters["calib_type"]) == {"bias"} and set(masters["n_inputs"]) == {3}

    result = invoke(["status", build.name, "--repo", tmp_path / "repo"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.split()[:2] == ["bias", "Generic"]]
    assert [(r[2], r[4]) for r in rows] == [("0", "succeeded"), ("1", "succeeded")]
    assert "masters: 2 of 2 built" in result.output
    as_json = json.loads(invoke(["status", build.name, "--repo", tmp_path / "repo", "--json"]).output)
    assert [m["detector"] for m in as_json["masters"]] == [0, 1]


# ---------------------------------------------------------------- ingest into a stack's bucket


@pytest.fixture
def bucket(monkeypatch):
    import boto3
    from moto import mock_aws

    import isrflow.io.storage

    use_fake_aws(monkeypatch)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setattr(isrflow.io.storage, "_S3", None)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="isrflow-data")
        yield s3


def test_ingest_into_an_s3_datastore_uploads_under_raw(one_detector, bucket, tmp_path):
    night, _ = one_detector
    raws = [r.path for r in night.raws]
    result = invoke(["ingest", "--repo", "s3://isrflow-data/night1", *raws])
    assert result.exit_code == 0, result.output
    for path in raws:
        name = path.rsplit("/", 1)[-1]
        body = bucket.get_object(Bucket="isrflow-data", Key=f"night1/raw/{name}")["Body"].read()
        assert body == Path(path).read_bytes()
    assert f"uploaded {len(raws)} raw file(s)" in result.output


def test_ingest_to_s3_uploads_nothing_when_a_file_is_not_fits(one_detector, bucket, tmp_path):
    night, _ = one_detector
    notes = tmp_path / "notes.txt"
    notes.write_text("seeing 0.6 arcsec\n")
    result = invoke(["ingest", "--repo", "s3://isrflow-data", night.raws[0].path, notes])
    assert result.exit_code == 1
    assert "notes.txt" in result.output and "not a FITS file" in result.output
    assert "Contents" not in bucket.list_objects_v2(Bucket="isrflow-data")


def test_client_uploads_raws_like_the_cli(one_detector, bucket):
    from isrflow import Client

    night, _ = one_detector
    raws = [r.path for r in night.raws][:2]
    written = Client.upload_raws("s3://isrflow-data/py", raws, progress=False)
    assert written == [f"s3://isrflow-data/py/raw/{p.rsplit('/', 1)[-1]}" for p in raws]
    keys = sorted(o["Key"] for o in bucket.list_objects_v2(Bucket="isrflow-data")["Contents"])
    assert keys == sorted(u.removeprefix("s3://isrflow-data/") for u in written)
