"""The streaming combine of files: equals the float64 reference whatever the strip height,
stays within its memory budget (tracemalloc), writes the calibration MEF atomically."""

from __future__ import annotations

import gc
import math
import tracemalloc

import numpy as np
import pytest
from calib_reference import combine as reference

from isrflow.calibration import routing
from isrflow.calibration.combine import (
    EXT_NINPUTS,
    CombineBudgetError,
    CombineInput,
    CombineSettings,
    CommonCalibration,
    combine_files,
)
from isrflow.infra.settings import ENV_COMPRESSION
from isrflow.io import formats
from isrflow.io.exposure_io import Exposure, read_exposure, write_exposure
from isrflow.io.mef import MefReader
from isrflow.model.errors import CalibrationError, CalibrationMismatchError

SHAPE = (61, 47)
N = 6


@pytest.fixture(autouse=True)
def exact_files(monkeypatch):
    """The combine's arithmetic is checked to float32 precision: inputs and masters are written
    losslessly compressed (bit-exact; the compressed read and write paths are exercised)."""
    monkeypatch.setenv(ENV_COMPRESSION, "lossless")


@pytest.fixture
def inputs(tmp_path):
    return write_inputs(tmp_path)


def write_inputs(tmp_path):
    """N frames of SHAPE with outliers, SAT/EDGE/BAD mask bits, NaN and infinite values, variance
    planes: (path, image, mask, variance, scale) each."""
    rng = np.random.default_rng(11)
    frames = []
    for i in range(N):
        image = rng.normal(500.0, 8.0, SHAPE).astype(np.float32)
        image[rng.random(SHAPE) < 0.02] += 3000.0
        variance = rng.uniform(50, 70, SHAPE).astype(np.float32)
        mask = np.zeros(SHAPE, np.int32)
        mask[rng.random(SHAPE) < 0.05] = formats.SAT
        mask[rng.random(SHAPE) < 0.02] = formats.EDGE  # not a plane the combine ignores
        mask[3, 4] = formats.BAD  # no usable input here
        if i == 2:
            image[10, 10] = np.nan
        if i == 3:  # infinite values are unusable too (and -inf must not sort first)
            image[20, 20], image[21, 21] = -np.inf, np.inf
        header = {
            formats.KW_INSTRUMENT: "Generic",
            formats.KW_DETECTOR: 1,
            formats.KW_DETNAME: "CCD1",
            formats.KW_EXPOSURE: 100 + i,
            "DATE-BEG": f"2026-11-20T01:0{i}:00",
            "DATE-END": f"2026-11-20T01:0{i}:30",
        }
        path = tmp_path / f"in{i}.fits"
        write_exposure(path, Exposure(image, mask, variance, header))
        frames.append((path, image, mask, variance, 2.0 + i))
    return frames


def _reference(frames, statistic):
    values = np.stack([f[1] / f[4] for f in frames]).reshape(N, -1).astype(np.float32)
    ignored = formats.BAD | formats.SAT
    values[np.stack([(f[2] & ignored) != 0 for f in frames]).reshape(N, -1)] = np.nan
    variances = np.stack([f[3] / f[4] ** 2 for f in frames]).reshape(N, -1).astype(np.float32)
    return reference(values, variances, statistic)


@pytest.mark.parametrize("statistic", ["meanclip", "median", "mean"])
@pytest.mark.parametrize("budget", [600_000, 1 << 30])
def test_files_equal_the_reference_at_any_strip_height(inputs, tmp_path, statistic, budget):
    out = tmp_path / "master.fits"
    settings = CombineSettings(
        statistic=statistic,
        mask_planes=("BAD", "SAT"),
        budget_bytes=budget,
        threads=2,
        read_threads=2,
        ninputs_plane=True,
    )
    report = combine_files(
        [CombineInput(str(p), scale) for p, *_, scale in inputs], str(out), "dark", settings
    )
    assert (report.strips > 1) is (budget < 1 << 20)
    master = read_exposure(out)
    want, want_var, want_n = _reference(inputs, statistic)
    with MefReader.open(str(out)) as reader:
        n_used = reader.read_rows(EXT_NINPUTS, 0, SHAPE[0], np.empty(SHAPE, np.int16)).ravel()
    assert np.array_equal(n_used, want_n)
    good = want_n > 0
    assert np.allclose(master.image.ravel()[good], want[good], rtol=2e-6, atol=1e-4)
    assert np.allclose(master.variance.ravel()[good], want_var[good], rtol=1e-5)
    # no usable input: BAD, filled with the median of the rest of its strip
    assert master.mask[3, 4] == formats.BAD and np.isfinite(master.image[3, 4])
    assert (master.mask != 0).sum() == (~good).sum() == report.no_data_pixels


def test_provenance_and_format(inputs, tmp_path):
    out = tmp_path / "m.fits"
    combine_files(
        [CombineInput(str(p), scale, f"e{i}") for i, (p, *_, scale) in enumerate(inputs)],
        str(out),
        "dark",
        CombineSettings(statistic="meanclip", clip=2.5, iterations=4),
    )
    header = read_exposure(out).header
    assert header[formats.KW_CALIB_TYPE] == "dark" and header[formats.KW_UNITS] == "electron/s"
    assert (header[formats.KW_INSTRUMENT], header[formats.KW_DETECTOR]) == ("Generic", 1)
    assert (header["CALIBSTA"], header["CALIBCLP"], header["CALIBNIT"], header["NINPUTS"]) == (
        "meanclip",
        2.5,
        4,
        N,
    )
    assert header["CALIB INPUT 0"] == "e0" and header["CALIB SCALE 5"] == 7.0
    assert header["DATE-BEG"] == "2026-11-20T01:00:00" and header["DATE-END"] == "2026-11-20T01:05:30"
    assert header[formats.KW_DARKTIME] == 1.0


@pytest.mark.parametrize("compression", ["none", "lossless", "quantized"])
def test_peak_memory_stays_within_the_strip_budget(inputs, tmp_path, monkeypatch, compression):
    """tracemalloc peak of the whole combine (reading, combining, writing, checksum) <= budget,
    with the master written in each compression mode (inputs: lossless)."""
    monkeypatch.setenv(ENV_COMPRESSION, compression)
    files = [CombineInput(str(p), scale) for p, *_, scale in inputs]
    for budget in (520_000, 800_000, 3_000_000):  # 520 kB: strips of one row
        settings = CombineSettings(budget_bytes=budget, threads=2, read_threads=3)
        combine_files(files, str(tmp_path / "warm.fits"), "bias", settings)  # imports, caches
        gc.collect()
        tracemalloc.start()
        try:
            report = combine_files(files, str(tmp_path / f"m{budget}.fits"), "bias", settings)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        rows = report.rows_per_strip
        assert routing.strip_bytes(rows, N, SHAPE[1], True, 2, 3) <= budget
        assert peak <= budget, f"peak {peak} > budget {budget} (strips of {rows} rows)"


def test_peak_memory_does_not_grow_with_the_detector(tmp_path):
    """A 4x taller detector under the same budget peaks no higher: only strips are held."""
    peaks = []
    for rows in (200, 800):
        paths = []
        for i in range(4):
            path = tmp_path / f"r{rows}-{i}.fits"
            write_exposure(
                path,
                Exposure(
                    np.full((rows, 300), i, np.float32),
                    np.zeros((rows, 300), np.int32),
                    np.ones((rows, 300), np.float32),
                    {formats.KW_DETECTOR: 0},
                ),
            )
            paths.append(CombineInput(str(path)))
        settings = CombineSettings(budget_bytes=1_500_000, threads=1, read_threads=2)
        combine_files(paths, str(tmp_path / f"w{rows}.fits"), "bias", settings)
        gc.collect()
        tracemalloc.start()
        try:
            combine_files(paths, str(tmp_path / f"m{rows}.fits"), "bias", settings)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] <= peaks[0] * 1.2 and max(peaks) <= 1_500_000


def test_common_calibration_noise_is_added_once(inputs, tmp_path):
    bias = tmp_path / "bias.fits"
    write_exposure(
        bias,
        Exposure(
            np.zeros(SHAPE, np.float32),
            np.zeros(SHAPE, np.int32),
            np.full(SHAPE, 9.0, np.float32),
            {formats.KW_DETECTOR: 1},
        ),
    )
    files = [CombineInput(str(p), 1.0) for p, *_ in inputs]
    settings = CombineSettings(statistic="mean", ninputs_plane=True)
    plain = read_exposure(combine_files(files, str(tmp_path / "a.fits"), "bias", settings).output_uri)
    shared = read_exposure(
        combine_files(
            files,
            str(tmp_path / "b.fits"),
            "bias",
            settings,
            common=[CommonCalibration(str(bias), 1.0, 0.25)],
        ).output_uri
    )
    with MefReader.open(str(tmp_path / "b.fits")) as reader:
        n = reader.read_rows(EXT_NINPUTS, 0, SHAPE[0], np.empty(SHAPE, np.int16)).astype(np.float64)
    good = n > 0
    expected = plain.variance + 9.0 * 0.25 * (1.0 - 1.0 / np.maximum(n, 1))
    assert np.allclose(shared.variance[good], expected[good], rtol=1e-5)


def test_no_partial_output_and_typed_errors(inputs, tmp_path):
    out = tmp_path / "never.fits"
    files = [CombineInput(str(p)) for p, *_ in inputs]
    truncated = tmp_path / "short.fits"
    truncated.write_bytes(inputs[0][0].read_bytes()[:20000])
    with pytest.raises(CalibrationError, match=r"short\.fits"):
        combine_files(
            [*files, CombineInput(str(truncated))], str(out), "bias", CombineSettings(budget_bytes=600_000)
        )
    assert not out.exists() and not list(tmp_path.glob(".never.fits*"))
    other = tmp_path / "other.fits"
    write_exposure(other, Exposure(np.zeros((5, 5), np.float32), header={formats.KW_DETECTOR: 1}))
    with pytest.raises(CalibrationMismatchError, match=r"other\.fits"):
        combine_files([*files, CombineInput(str(other))], str(out), "bias")
    with pytest.raises(CombineBudgetError, match="cannot hold one row"):
        combine_files(files, str(out), "bias", CombineSettings(budget_bytes=1000))
    assert not out.exists()


def test_strip_model_is_monotonic_and_routing_uses_it():
    rows = [routing.strip_rows(b, 16, 2048, True, 4, 8) for b in (1 << 24, 1 << 26, 1 << 28)]
    assert rows[0] < rows[1] < rows[2]
    assert (
        routing.strip_bytes(rows[1], 16, 2048, True, 4, 8)
        <= 1 << 26
        < routing.strip_bytes(rows[1] + 1, 16, 2048, True, 4, 8)
    )
    assert math.isclose(routing.strip_budget_bytes(400 + 1000), 750 * (1 << 20), rel_tol=1e-9)
