"""combine_files with two strips in flight (read next / write previous while combining) gives
the same master as one strip at a time."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from isrflow.calibration import combine, routing
from isrflow.calibration.combine import CombineInput, CombineSettings, combine_files
from isrflow.io import formats
from isrflow.io.exposure_io import Exposure, read_exposure, write_exposure

SHAPE = (120, 64)
N = 5


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(12)
    paths = []
    for i in range(N):
        image = rng.normal(100.0, 5.0, SHAPE).astype(np.float32)
        image[rng.random(SHAPE) < 0.01] += 3000.0  # outliers for the clipping
        mask = np.zeros(SHAPE, np.int32)
        mask[rng.random(SHAPE) < 0.02] = formats.SAT
        mask[7, 3] = formats.BAD  # no usable input here: filled with its strip's median
        variance = np.full(SHAPE, 25.0, np.float32)
        path = tmp_path / f"in{i}.fits"
        write_exposure(
            path,
            Exposure(image, mask, variance, {formats.KW_DETECTOR: 1, formats.KW_EXPOSURE: 10 + i}),
            compression="none",
        )
        paths.append(CombineInput(str(path), scale=1.0 + 0.1 * i))
    return paths


@pytest.mark.parametrize("processes", [False, True])
@pytest.mark.parametrize("statistic", ["meanclip", "median"])
def test_two_strips_in_flight_give_the_same_master(inputs, tmp_path, monkeypatch, statistic, processes):
    threads, read_threads = 2, 3
    monkeypatch.setattr(routing, "CHUNK_PIXELS_THREADED", 1024)  # small kernel scratch; results are per pixel
    whole = routing.strip_bytes(20, N, SHAPE[1], True, threads, read_threads, processes)
    monkeypatch.setattr(
        routing, "STRIP_TARGET_BYTES", whole - routing.fixed_bytes(N, threads, processes=processes)
    )  # strips of 20 rows
    writers: list[str] = []  # the threads that wrote strips: the overlapped path writes in the background
    write_strip = combine._write_strip
    monkeypatch.setattr(
        combine, "_write_strip", lambda *a: writers.append(threading.current_thread().name) or write_strip(*a)
    )
    reports, masters, threads_used = [], [], []
    # 1 GiB holds two strips; 1.5 x one strip's working memory holds one (the same strip height)
    for budget in (1 << 30, int(1.5 * whole)):
        settings = CombineSettings(
            statistic=statistic,
            budget_bytes=budget,
            threads=threads,
            read_threads=read_threads,
            processes=processes,
        )
        out = tmp_path / f"master-{budget}.fits"
        reports.append(combine_files(inputs, str(out), "flat", settings))
        masters.append(read_exposure(out))
        threads_used.append({name.split("_")[0] for name in writers})
        writers.clear()
    assert threads_used == [{"combine-write"}, {threading.main_thread().name}], [
        (r.rows_per_strip, r.strips) for r in reports
    ]
    assert reports[0].rows_per_strip == reports[1].rows_per_strip
    assert reports[0].strips == reports[1].strips > 3
    assert {r.workers for r in reports} == {"processes" if processes else "threads"}
    assert reports[0].no_data_pixels == reports[1].no_data_pixels == 1
    a, b = masters
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.variance, b.variance)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.mask[7, 3] & formats.BAD
    assert np.isfinite(a.image).all()
