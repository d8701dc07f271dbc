"""ISR against the simulator's truth: residuals measured in units of the noise."""

from __future__ import annotations

import numpy as np
import pytest

from isrflow.camera import load_camera
from isrflow.io import formats
from isrflow.io.exposure_io import read_defects, read_exposure
from isrflow.io.rawio import read_raw
from isrflow.isr import IsrConfig, load_calibrations, pipeline, run_isr
from isrflow.isr.assembly import flip
from isrflow.simulate import SimulationRequest, simulate
from isrflow.simulate import truth_residuals as residual_chi


def _calibs(manifest, raw, det):
    cal = manifest.calibrations[det]
    return load_calibrations(
        bias=cal.bias, dark=cal.dark, flat=cal.flat[raw.physical_filter], defects=cal.defects
    )


def _assert_truth(chi):
    assert abs(chi.mean()) < 0.05, chi.mean()
    assert abs(chi.std() - 1.0) < 0.05, chi.std()


def test_small_science_matches_truth(small_night):
    for raw in small_night.raws_of("science"):
        for det in raw.detectors:
            result = run_isr(read_raw(raw.path), _calibs(small_night, raw, det), IsrConfig())
            _assert_truth(residual_chi(result, raw.truth[det]))


def test_without_flat_the_residuals_fail(small_night):
    """The truth test can fail: leaving a step out is detected."""
    raw = small_night.raws_of("science")[0]
    calibs = _calibs(small_night, raw, 0)
    calibs.flat = None
    chi = residual_chi(run_isr(read_raw(raw.path), calibs), raw.truth[0])
    assert abs(chi.std() - 1.0) > 0.05 or abs(chi.mean()) > 0.05


def test_defects_and_saturation_are_masked(small_night):
    raw = small_night.raws_of("science")[0]
    frame = read_raw(raw.path)
    result = run_isr(frame, _calibs(small_night, raw, 0))
    boxes, _ = read_defects(small_night.calibrations[0].defects)
    assert boxes
    for box in boxes:
        assert np.all(result.mask[box.slices] & formats.BAD), box
        assert np.all(result.mask[box.slices] & formats.INTRP)
    n_sat = 0
    for amp in frame.amplifiers:
        saturated = flip(frame.amp_pixels(amp)[amp.data.slices] >= amp.saturation, amp.flip_x, amp.flip_y)
        n_sat += int(saturated.sum())
        assert np.all(result.mask[amp.assembled.slices][saturated] & formats.SAT)
    assert n_sat > 0, "the simulated frame should contain saturated stars"
    assert np.isfinite(result.image).all() and np.isfinite(result.variance).all()


def test_overscan_leaves_no_mean_bias(small_night):
    """Bias frames: overscan + gain, minus the true bias structure and the dark current of the
    bias's dark time, has mean < 0.1 e- (pixels on defects excluded)."""
    config = IsrConfig(saturation={"enabled": False}, interpolate=False)
    residuals = []
    for raw in small_night.raws_of("bias"):
        for det in raw.detectors:
            frame = read_raw(raw.path)
            result = run_isr(frame, None, config)
            cal = small_night.calibrations[det]
            expected = read_exposure(cal.bias).image + read_exposure(cal.dark).image * frame.obs.darktime
            good = np.ones(expected.shape, dtype=bool)
            for box in read_defects(cal.defects)[0]:
                good[box.slices] = False
            residuals.append(float(np.mean((result.image - expected)[good])))
    assert max(abs(r) for r in residuals) < 0.1, residuals
    assert abs(np.mean(residuals)) < 0.05, residuals


@pytest.mark.parametrize("fit_type", ["MEDIAN", "MEAN", "MEAN_PER_ROW", "POLY"])
def test_other_overscan_fits_run_and_are_close(small_night, fit_type):
    raw = small_night.raws_of("bias")[0]
    result = run_isr(read_raw(raw.path), None, IsrConfig(overscan={"fit_type": fit_type, "order": 3}))
    true_bias = read_exposure(small_night.calibrations[0].bias).image
    # constant fits cannot follow the row drift (~2 ADU), but the mean level is still right
    assert abs(float(np.mean(result.image - true_bias))) < 1.0


@pytest.fixture(scope="module")
def distorted_night(tmp_path_factory):
    out = tmp_path_factory.mktemp("distorted")
    return simulate(
        SimulationRequest(
            camera="generic",
            small=True,
            detectors=[2],
            science=1,
            seed=11,
            out=out,
            nonlinearity=True,
            crosstalk=True,
        )
    )


def _generic_corrections():
    cam = load_camera("generic")
    amps = cam.layouts["small"]
    return {a.name: a.linearity for a in amps}, cam.crosstalk["small"]


def test_linearity_and_crosstalk_corrected(distorted_night):
    raw = distorted_night.raws_of("science")[0]
    coeffs, matrix = _generic_corrections()
    config = IsrConfig(
        linearity={"enabled": True, "coefficients": coeffs}, crosstalk={"enabled": True, "matrix": matrix}
    )
    result = run_isr(read_raw(raw.path), _calibs(distorted_night, raw, 2), config)
    _assert_truth(residual_chi(result, raw.truth[2]))
    assert result.header["HIERARCH ISR LINEARITY"] and result.header["HIERARCH ISR CROSSTALK"]


def test_uncorrected_linearity_and_crosstalk_fail(distorted_night):
    raw = distorted_night.raws_of("science")[0]
    chi = residual_chi(run_isr(read_raw(raw.path), _calibs(distorted_night, raw, 2)), raw.truth[2])
    assert abs(chi.mean()) > 0.05 or abs(chi.std() - 1.0) > 0.05


def test_cosmic_rays_are_masked(tmp_path):
    night = simulate(
        SimulationRequest(
            camera="generic",
            small=True,
            detectors=[3],
            science=1,
            seed=5,
            out=tmp_path,
            cosmic_ray_rate=3000.0,
            stars_per_megapixel=300,
        )
    )
    raw = night.raws_of("science")[0]
    calibs = _calibs(night, raw, 3)
    plain = residual_chi(run_isr(read_raw(raw.path), calibs), raw.truth[3])
    assert np.abs(plain).max() > 20, "cosmic rays should be present"
    result = run_isr(read_raw(raw.path), calibs, IsrConfig(cosmic_rays={"enabled": True}))
    chi = residual_chi(result, raw.truth[3])
    _assert_truth(chi)
    assert np.abs(chi).max() < 8
    assert (result.mask & formats.CR).any()


def test_bytes_input_equals_path_input(small_night):
    raw = small_night.raws_of("science")[0]
    from pathlib import Path

    a = run_isr(read_raw(raw.path), _calibs(small_night, raw, 0))
    cal = small_night.calibrations[0]
    calibs = load_calibrations(
        bias=Path(cal.bias).read_bytes(),
        dark=Path(cal.dark).read_bytes(),
        flat=Path(cal.flat[raw.physical_filter]).read_bytes(),
        defects=Path(cal.defects).read_bytes(),
    )
    b = run_isr(read_raw(Path(raw.path).read_bytes(), name="raw.fits"), calibs)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.header["BIASSHA"] == b.header["BIASSHA"]


def test_provenance_header(small_night):
    raw = small_night.raws_of("science")[0]
    calibs = _calibs(small_night, raw, 0)
    calibs.dark = None
    header = run_isr(read_raw(raw.path), calibs).header
    assert header["HIERARCH ISR BIAS"] is True and header["HIERARCH ISR DARK"] is False
    assert "DARK" not in header["ISRSTEPS"].split(",") and "BIAS" in header["ISRSTEPS"].split(",")
    assert len(header["BIASSHA"]) == 64 and "DARKSHA" not in header
    assert header["BUNIT"] == "electron"


@pytest.mark.parametrize("many", [False, True])
@pytest.mark.parametrize("kind", ["bias", "dark", "flat"])
def test_a_calibrations_bad_pixels_are_bad_in_the_output(small_night, kind, many, monkeypatch):
    """A master's BAD pixels (where its combine had no usable input, say) are BAD in every frame
    it corrects, for the flat as for bias and dark; its other mask bits are not carried over.
    A few are ORed in by index, many by a pass over the plane: the same output either way, in
    row bands split across threads (bands of 8 rows here) as on a full-size detector."""
    monkeypatch.setattr(pipeline, "_BAND_ROWS", 8)
    monkeypatch.setattr(pipeline, "_threads", lambda: 2)  # two bands, split at rows // 2, on any machine
    raw = small_night.raws_of("science")[0]
    calibs = _calibs(small_night, raw, 0)
    master = getattr(calibs, kind).exposure
    master.mask = np.zeros(master.image.shape, np.int32)
    master.mask[10, 20] = formats.BAD
    master.mask[30, 40] = formats.SAT
    rows = master.image.shape[0]
    master.mask[rows // 2 - 1, -1] = master.mask[rows // 2, 0] = formats.BAD  # either side of a band edge
    if many:
        master.mask[-rows // 8 :] |= formats.BAD  # an eighth of the pixels
    result = run_isr(read_raw(raw.path), calibs, IsrConfig())
    item = getattr(calibs, kind)
    assert (item.bad_pixels is None) is many
    want = (master.mask & formats.BAD) != 0
    assert ((result.mask & formats.BAD) != 0)[want].all()
    assert result.mask[10, 20] & formats.BAD
    assert not result.mask[30, 40] & formats.SAT
