"""Masters carry only the planes ISR reads and are written compressed; the streaming combine
reads and writes compressed files by strips; science ISR'd with the built (compressed) masters
still matches the truth."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from calib_helpers import CALIB, DETECTORS
from calib_reference import combine as reference

from isrflow.calibration.combine import CombineInput, CombineSettings, CommonCalibration, combine_files
from isrflow.calibration.mef_writer import MefWriter, PlaneSpec
from isrflow.infra.settings import ENV_COMPRESSION
from isrflow.io import formats
from isrflow.io.exposure_io import Exposure, read_exposure, write_exposure
from isrflow.io.mef import MefReader
from isrflow.io.rawio import read_raw
from isrflow.isr import IsrConfig, load_calibrations, run_isr
from isrflow.registry import uri_to_path
from isrflow.simulate import truth_residuals

SHAPE = (70, 53)
SIGMA = 8.0


def _inputs(tmp_path, n=5, compression=None):
    rng = np.random.default_rng(5)
    files = []
    for i in range(n):
        image = rng.normal(400.0, SIGMA, SHAPE).astype(np.float32)
        variance = np.full(SHAPE, SIGMA**2, np.float32)
        path = write_exposure(
            tmp_path / f"in{i}.fits",
            Exposure(image, np.zeros(SHAPE, np.int32), variance, {formats.KW_DETECTOR: 2}),
            compression=compression,
        )
        files.append((path, image, variance))
    return files


def _extensions(path):
    with fits.open(path, disable_image_compression=True) as hdul:
        return [(h.name, h.header.get("ZIMAGE") is True) for h in hdul[1:]]


def test_a_master_has_image_mask_variance_compressed_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_COMPRESSION, raising=False)
    files = _inputs(tmp_path)
    out = tmp_path / "bias.fits"
    combine_files(
        [CombineInput(str(p)) for p, *_ in files], str(out), "bias", CombineSettings(statistic="mean")
    )
    assert _extensions(out) == [("IMAGE", True), ("MASK", True), ("VARIANCE", True)]
    item = load_calibrations(bias=out).bias  # what ISR reads
    assert item.exposure.mask is not None and item.exposure.variance is not None
    want, want_var, _ = reference(
        np.stack([f[1] for f in files]).reshape(5, -1), np.stack([f[2] for f in files]).reshape(5, -1), "mean"
    )
    # inputs and master quantized at sigma/16: within a few hundredths of the master's noise
    error = item.exposure.image.ravel() - want
    assert abs(error.mean()) < 0.01 * SIGMA and error.std() < 0.05 * SIGMA / np.sqrt(5)
    assert np.allclose(item.exposure.variance.ravel(), want_var, rtol=0.01)
    monkeypatch.setenv(ENV_COMPRESSION, "none")
    plain = tmp_path / "plain.fits"
    combine_files(
        [CombineInput(str(p)) for p, *_ in files], str(plain), "bias", CombineSettings(statistic="mean")
    )
    assert _extensions(plain) == [("IMAGE", False), ("MASK", False), ("VARIANCE", False)]
    assert out.stat().st_size < 0.5 * plain.stat().st_size


def test_older_uncompressed_masters_with_more_planes_still_combine(tmp_path, monkeypatch):
    """An uncompressed bias with NINPUTS (the earlier layout) as the common calibration of
    compressed inputs: read by strips like any master."""
    monkeypatch.setenv(ENV_COMPRESSION, "lossless")
    files = _inputs(tmp_path)
    old = tmp_path / "old-bias.fits"
    monkeypatch.setenv(ENV_COMPRESSION, "none")
    combine_files(
        [CombineInput(str(p)) for p, *_ in files],
        str(old),
        "bias",
        CombineSettings(statistic="mean", ninputs_plane=True),
    )
    assert _extensions(old) == [("IMAGE", False), ("MASK", False), ("VARIANCE", False), ("NINPUTS", False)]
    monkeypatch.setenv(ENV_COMPRESSION, "lossless")
    out = tmp_path / "dark.fits"
    combine_files(
        [CombineInput(str(p), 2.0) for p, *_ in files],
        str(out),
        "dark",
        CombineSettings(statistic="mean"),
        common=[CommonCalibration(str(old), 1.0, 0.25)],
    )
    master = read_exposure(out)
    assert np.all(
        master.variance > (SIGMA**2 / 4) / 5
    )  # inputs' variance / scale^2 / n, plus the bias's share


def test_compressed_planes_are_written_in_row_order_and_atomically(tmp_path):
    target = tmp_path / "m.fits"
    writer = MefWriter(
        str(target), {formats.KW_DETECTOR: 1}, (40, 10), [PlaneSpec("IMAGE", ">f4")], compression="quantized"
    )
    writer.write_rows("IMAGE", 0, np.ones((16, 10), np.float32))
    with pytest.raises(ValueError, match="in order"):
        writer.write_rows("IMAGE", 30, np.ones((10, 10), np.float32))
    writer.abort()
    assert not target.exists() and not list(tmp_path.iterdir())
    rng = np.random.default_rng(1)
    data = rng.normal(0, 1, (40, 10)).astype(np.float32)
    with MefWriter(
        str(target), {formats.KW_DETECTOR: 1}, (40, 10), [PlaneSpec("IMAGE", ">f4")], compression="lossless"
    ) as writer:
        for y0 in (0, 5, 21, 33):  # strips that do not align with the 16-row tiles
            y1 = {0: 5, 5: 21, 21: 33, 33: 40}[y0]
            writer.write_rows("IMAGE", y0, data[y0:y1])
        size, _ = writer.commit()
    assert size == target.stat().st_size and list(tmp_path.iterdir()) == [target]
    assert np.array_equal(read_exposure(target).image, data)
    with MefReader.open(str(target)) as reader:
        assert np.array_equal(reader.read_rows("IMAGE", 13, 35, np.empty((22, 10), np.float64)), data[13:35])


def test_built_masters_are_compressed_and_science_still_matches_the_truth(built_night):
    """The masters the state machine built (quantized by default) applied to the science frames:
    chi mean |mu| < 0.05 and std 1 +- 0.05 against the truth (the ISR output compressed too).
    The built flats keep the focal plane's response up to one constant (test_truth), which is
    divided out first."""
    from isrflow.io.exposure_io import exposure_to_bytes

    refs = {
        (r.dataset_type, r.data_id["detector"]): r
        for t in ("bias", "dark", "flat", "defects")
        for r in built_night.registry.query_datasets(t, [CALIB])
    }
    for t in ("bias", "dark", "flat"):
        assert _extensions(uri_to_path(refs[(t, 0)].uri)) == [
            ("IMAGE", True),
            ("MASK", True),
            ("VARIANCE", True),
        ]
    calibs = {
        det: load_calibrations(
            **{t: uri_to_path(refs[(t, det)].uri) for t in ("bias", "dark", "flat", "defects")}
        )
        for det in DETECTORS
    }
    true_flat = {
        det: read_exposure(next(iter(built_night.manifest.calibrations[det].flat.values()))).image
        for det in DETECTORS
    }
    constant = np.median(
        np.concatenate([(calibs[d].flat.exposure.image / true_flat[d]).ravel() for d in DETECTORS])
    )
    checked = []
    for raw in built_night.manifest.raws_of("science"):
        det = raw.detectors[0]
        flat = calibs[det].flat.exposure
        flat.image = flat.image / np.float32(constant)
        flat.variance = flat.variance / np.float32(constant**2)
        result = read_exposure(
            exposure_to_bytes(run_isr(read_raw(raw.path, detector=det), calibs[det], IsrConfig()))
        )
        chi = truth_residuals(result, raw.truth[det])
        assert abs(chi.mean()) < 0.05 and abs(chi.std() - 1.0) < 0.05, (det, chi.mean(), chi.std())
        checked.append(det)
    assert sorted(checked) == DETECTORS
