"""Defect 3 of issue 10: a registered calibration is never overwritten, and one altered on disk
after registration is never used (its detector fails with ChecksumMismatchError)."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from click.testing import CliRunner
from one_cluster import plan_and_isr_one

from isrflow.cli import cli
from isrflow.local.queue import LocalQueue
from isrflow.registry import create_repo, ingest, uri_to_path
from isrflow.registry.calib_import import import_calibrations
from isrflow.simulate import SimulationRequest, simulate

CALIB_RUN = "Generic/calib/truth"
CALIB_COLLECTION = "Generic/calib"


def _repo(tmp_path):
    """One detector, one science frame, true calibrations imported and certified (seed 5)."""
    registry = create_repo(tmp_path / "repo")
    night = simulate(
        SimulationRequest(
            camera="generic", small=True, detectors=[0], science=1, seed=5, out=tmp_path / "sim"
        )
    )
    assert ingest(registry, [r.path for r in night.raws]).ok
    (cal,) = night.calibrations.values()
    refs = import_calibrations(registry, [cal.bias, cal.dark, cal.defects, *cal.flat.values()], CALIB_RUN)
    registry.register_collection(CALIB_COLLECTION, "CALIBRATION")
    registry.certify([r.id for r in refs], CALIB_COLLECTION, None, None)
    (bias,) = [r for r in refs if r.dataset_type == "bias"]
    return registry, cal, bias


def _altered(source, target):
    """A valid calibration file like ``source`` with other pixel values."""
    with fits.open(source) as hdul:
        for hdu in hdul[1:]:
            if hdu.data is not None and np.issubdtype(hdu.data.dtype, np.floating):
                hdu.data = hdu.data + 7.0
        hdul.writeto(target)
    return target


def test_import_over_a_certified_calibration_is_refused_and_the_file_is_unchanged(tmp_path):
    registry, cal, bias = _repo(tmp_path)
    registered = uri_to_path(bias.uri)
    before = registered.read_bytes()
    other = _altered(cal.bias, tmp_path / "other_bias.fits")
    result = CliRunner().invoke(
        cli, ["calib", "import", "--repo", str(tmp_path / "repo"), "--run", CALIB_RUN, str(other)]
    )
    assert result.exit_code == 1, result.output
    assert "error: ImmutableCalibrationError:" in result.output and str(other) in result.output
    assert registered.read_bytes() == before
    assert registry.get_dataset(bias.id).sha256 == bias.sha256
    # the identical file again is an idempotent no-op
    assert import_calibrations(registry, [cal.bias], CALIB_RUN)[0].id == bias.id


def test_a_calibration_altered_after_registration_fails_its_detector(tmp_path, monkeypatch):
    registry, cal, bias = _repo(tmp_path)
    queue = LocalQueue(tmp_path / "repo" / "queue.sqlite3", "registry")
    uri_to_path(bias.uri).write_bytes(_altered(cal.bias, tmp_path / "swapped.fits").read_bytes())
    summary, result = plan_and_isr_one(
        registry,
        queue,
        monkeypatch,
        where="instrument = 'Generic'",
        calib_collection=CALIB_COLLECTION,
        output_run="Generic/runs/t",
        execution_id="exec-checksum",
    )
    assert (summary["succeeded"], summary["failed"]) == (0, 1)
    assert result.status == "failed" and result.error.startswith("ChecksumMismatchError: ")
    assert bias.uri in result.error
