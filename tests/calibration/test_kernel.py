"""The combine kernel against the float64 reference (sort-based median, explicit clipping loop)."""

from __future__ import annotations

import numpy as np
import pytest
from calib_reference import combine as reference

from isrflow.calibration.kernel import combine_stack, sorting_network

STATISTICS = ("median", "mean", "meanclip")


def _stack(n: int, pixels: int, seed: int):
    rng = np.random.default_rng(seed)
    values = rng.normal(1000.0, 10.0, (n, pixels)).astype(np.float32)
    values[rng.random(values.shape) < 0.04] += rng.uniform(100, 5000)  # cosmic rays, hot
    values[rng.random(values.shape) < 0.08] = np.nan  # masked inputs
    values[:, :3] = np.nan  # no usable input at all
    values[1:, 3] = np.nan  # exactly one
    values[0, 3] = 1000.0
    variances = rng.uniform(80.0, 120.0, (n, pixels)).astype(np.float32)
    return values, variances


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 11, 16, 23])
def test_sorting_network_sorts(n):
    rng = np.random.default_rng(n)
    data = rng.normal(size=(n, 400))
    data[:, :50] = np.round(data[:, :50])  # ties
    for i, j in sorting_network(n):
        assert i < j
        low, high = np.minimum(data[i], data[j]), np.maximum(data[i], data[j])
        data[i], data[j] = low, high
    assert np.all(np.diff(data, axis=0) >= 0)


@pytest.mark.parametrize("statistic", STATISTICS)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 16])
def test_equals_the_float64_reference(n, statistic):
    values, variances = _stack(n, 1500, seed=n)
    out = combine_stack(values, variances, statistic)
    want, want_var, want_n = reference(values, variances, statistic)
    assert np.array_equal(out.n_used, want_n)
    assert np.allclose(out.image, want, rtol=2e-6, atol=1e-4, equal_nan=True)
    assert np.allclose(out.variance, want_var, rtol=1e-5, equal_nan=True)
    assert np.isnan(out.image[:3]).all() and (out.n_used[:3] == 0).all()
    assert out.n_used[3] == 1 and out.image[3] == values[0, 3]


def test_clipping_rejects_outliers_and_keeps_the_rest():
    values = np.full((9, 1), 100.0, dtype=np.float32)
    values[:, 0] += np.array([0, 1, -1, 2, -2, 1, -1, 0, 500], dtype=np.float32)
    out = combine_stack(values, None, "meanclip")
    assert out.n_used[0] == 8 and out.image[0] == pytest.approx(100.0)


def test_scatter_variance_without_variance_planes():
    rng = np.random.default_rng(5)
    values = rng.normal(0.0, 2.0, (10, 20000)).astype(np.float32)
    out = combine_stack(values, None, "mean")
    assert np.median(out.variance) == pytest.approx(4.0 / 10, rel=0.1)
    assert np.allclose(out.image, values.astype(np.float64).mean(axis=0), atol=1e-5)


@pytest.mark.parametrize("statistic", STATISTICS)
def test_threads_and_chunks_do_not_change_the_result(statistic):
    values, variances = _stack(7, 50_000, seed=3)
    one = combine_stack(values, variances, statistic, threads=1)
    many = combine_stack(values, variances, statistic, threads=3, chunk=1000)
    for a, b in ((one.image, many.image), (one.variance, many.variance), (one.n_used, many.n_used)):
        assert np.array_equal(a, b, equal_nan=True)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="float32"):
        combine_stack(np.zeros((3, 4)), None)
    with pytest.raises(ValueError, match="unknown statistic"):
        combine_stack(np.zeros((3, 4), np.float32), None, "mode")  # type: ignore[arg-type]
