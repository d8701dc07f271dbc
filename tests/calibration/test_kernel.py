"""The combine kernel against the float64 reference (sort-based median, explicit clipping loop)."""

from __future__ import annotations

import numpy as np
import pytest
from calib_reference import combine as reference

from isrflow.calibration import chunk
from isrflow.calibration.kernel import combine_stack
from isrflow.calibration.network import (
    block_views,
    compile_network,
    median_ranks,
    quantile_ranks,
    run_views,
    sorting_network,
)

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


def _select(n: int, ranks: frozenset[int], data: np.ndarray) -> dict[int, np.ndarray]:
    program = compile_network(n, ranks)
    buffer = np.full((2 * n, data.shape[1]), np.nan, dtype=np.float32)
    buffer[:n] = data
    run_views(block_views(program, buffer))
    return {k: buffer[program.rank_rows[k]] for k in ranks}


@pytest.mark.parametrize("n", range(1, 13))
def test_selection_network_delivers_its_ranks_for_every_zero_one_input(n):
    """0-1 principle: a min/max network that orders every 0/1 input orders every input."""
    data = ((np.arange(2**n)[None, :] >> np.arange(n)[:, None]) & 1).astype(np.float32)
    want = np.sort(data, axis=0)
    for ranks in (median_ranks(n), quantile_ranks(n, (0.25, 0.5, 0.75)), frozenset(range(n))):
        for k, got in _select(n, ranks, data).items():
            assert np.array_equal(got, want[k]), (n, sorted(ranks), k)


@pytest.mark.parametrize("n", [13, 16, 17, 24, 33])
def test_selection_network_delivers_its_ranks(n):
    rng = np.random.default_rng(n)
    data = rng.normal(size=(n, 500)).astype(np.float32)
    data[:, :100] = np.round(data[:, :100])  # ties
    want = np.sort(data, axis=0)
    ranks = median_ranks(n) | quantile_ranks(n, (0.25, 0.75))
    assert len(compile_network(n, ranks).blocks) < len(sorting_network(n))  # fewer calls than row pairs
    for k, got in _select(n, ranks, data).items():
        assert np.array_equal(got, want[k])


@pytest.mark.parametrize("statistic", STATISTICS)
@pytest.mark.parametrize("masked", [0.002, 0.3])
def test_partial_pixels_sorted_apart_or_by_the_network_agree(statistic, masked, monkeypatch):
    """Pixels with fewer usable values than inputs: sorted apart (few) or ranked by the chunk's
    extended network (many) give the same bits, and match the reference."""
    rng = np.random.default_rng(7)
    values = rng.normal(100.0, 5.0, (9, 20_000)).astype(np.float32)
    values[rng.random(values.shape) < masked] = np.nan
    variances = rng.uniform(20.0, 30.0, values.shape).astype(np.float32)
    results = []
    for dense in (0.0, 2.0):  # every chunk dense, none
        monkeypatch.setattr(chunk, "_DENSE_PARTIAL", dense)
        results.append(combine_stack(values, variances, statistic))
    for a, b in zip(results[0].__dict__.values(), results[1].__dict__.values(), strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    want, want_var, want_n = reference(values, variances, statistic)
    assert np.array_equal(results[0].n_used, want_n)
    assert np.allclose(results[0].image, want, rtol=2e-6, atol=1e-4, equal_nan=True)
    assert np.allclose(results[0].variance, want_var, rtol=1e-5, equal_nan=True)


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
