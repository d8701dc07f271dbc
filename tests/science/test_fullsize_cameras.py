"""Every built-in camera round-trips simulate -> isr at full size, in its real raw layout."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from isrflow.io.exposure_io import read_defects, read_exposure
from isrflow.io.rawio import read_observations, read_raw
from isrflow.isr import IsrConfig, load_calibrations, run_isr
from isrflow.simulate import SimulationRequest, simulate, truth_residuals

pytestmark = pytest.mark.fullsize

CASES = {"hsc": [50], "lsstcam": [94, 1], "decam": [25, 32]}


@pytest.mark.parametrize("camera", sorted(CASES))
def test_round_trip(camera, tmp_path):
    detectors = CASES[camera]
    night = simulate(
        SimulationRequest(
            camera=camera,
            detectors=detectors,
            science=1,
            bias=1 if camera == "hsc" else 0,
            seed=21,
            out=tmp_path,
        )
    )
    raw = night.raws_of("science")[0]
    observations = read_observations(raw.path)
    assert sorted(o.detector for o in observations) == sorted(raw.detectors)
    for det in raw.detectors:
        frame = read_raw(raw.path, detector=det)
        assert frame.obs.exposure == raw.exposure and frame.obs.obs_type == "science"
        cal = night.calibrations[det]
        calibs = load_calibrations(
            bias=cal.bias, dark=cal.dark, flat=cal.flat[raw.physical_filter], defects=cal.defects
        )
        result = run_isr(frame, calibs, IsrConfig(cosmic_rays={"enabled": True}))
        chi = truth_residuals(result, raw.truth[det])
        assert abs(chi.mean()) < 0.05 and abs(chi.std() - 1) < 0.05, (camera, det, chi.mean(), chi.std())
        for box in read_defects(cal.defects)[0]:
            assert np.all(result.mask[box.slices] != 0)
    if camera == "hsc":
        bias_raw = night.raws_of("bias")[0]
        frame = read_raw(bias_raw.path)
        result = run_isr(frame, None, IsrConfig(saturation={"enabled": False}, interpolate=False))
        cal = night.calibrations[50]
        expected = read_exposure(cal.bias).image + read_exposure(cal.dark).image * frame.obs.darktime
        good = np.ones(expected.shape, dtype=bool)
        for box in read_defects(cal.defects)[0]:
            good[box.slices] = False
        assert abs(float(np.mean((result.image - expected)[good]))) < 0.1


def test_simulated_headers_are_shaped_like_real_ones(tmp_path):
    """The keywords the real dumps carry for geometry and identity are present in our raws."""
    night = simulate(SimulationRequest(camera="decam", detectors=[25], bias=1, seed=2, out=tmp_path / "d"))
    with fits.open(night.raws[0].path) as hdul:
        ext = hdul["S1"].header
        for key in (
            "DATASECA",
            "DATASECB",
            "BIASSECA",
            "BIASSECB",
            "PRESECA",
            "POSTSECA",
            "GAINA",
            "RDNOISEB",
            "SATURATA",
            "CCDNUM",
            "DETPOS",
        ):
            assert key in ext
        assert ext["DATASECA"] == "[1081:2104,51:4146]" and ext["BIASSECB"] == "[7:56,51:4146]"
        assert hdul[0].header["OBSTYPE"] == "zero" and "DARKTIME" in hdul[0].header
