"""ISR's faster paths against the plain computation they replace: the same masks, pixels and
counts, on cases chosen to sit on their edges (block boundaries, clipped boxes, overflowing sums,
saturated rows far apart and close together), and calibrations read into the planes' own bytes."""

from __future__ import annotations

import numpy as np
import pytest

from isrflow.camera.model import Box
from isrflow.io import formats
from isrflow.io.exposure_io import Exposure, exposure_to_bytes, read_exposure, read_file_sha256
from isrflow.io.rawio import read_raw
from isrflow.isr import IsrConfig, load_calibrations, masking, run_isr
from isrflow.isr.interpolate import _runs


def _grown_reference(sat: np.ndarray, grow_pixels: int, widen: bool) -> np.ndarray:
    """The SAT footprint as the whole plane computes it: widen every row, then dilate."""
    band = masking.widen_trails(sat) if widen else sat
    return masking.grow(band, grow_pixels)


@pytest.mark.parametrize("grow_pixels", [0, 1, 2])
@pytest.mark.parametrize("widen", [False, True])
def test_saturation_by_groups_of_rows_matches_the_whole_plane(grow_pixels, widen):
    rng = np.random.default_rng(grow_pixels * 2 + widen)
    sat = np.zeros((300, 90), bool)
    sat[0, 10:22] = True  # a trail on the first row: its window is clipped
    sat[299, 80:90] = True  # and on the last, to the right edge
    sat[100:140, 40:43] = True  # a bleed trail
    sat[143, 5:12] = True  # 3 rows below it: one group with it when grown
    sat[rng.integers(0, 300, 25), rng.integers(0, 90, 25)] = True  # single pixels
    mask = np.full(sat.shape, formats.BAD, np.int32)
    masking.mask_saturation(mask, sat, grow_pixels, widen, formats.SAT)
    expected = _grown_reference(sat, grow_pixels, widen)
    assert np.array_equal((mask & formats.SAT) != 0, expected)
    assert np.all(mask & formats.BAD), "other bits are kept"
    if grow_pixels:
        assert expected.sum() > sat.sum(), "the case grows: a test that can fail"


def test_saturation_with_nothing_saturated_leaves_the_mask():
    mask = np.zeros((70, 20), np.int32)
    masking.mask_saturation(mask, np.zeros(mask.shape, bool), 1, True, formats.SAT)
    assert not mask.any()


def test_all_finite_survives_a_sum_that_overflows():
    big = np.full((64, 64), 3e37, np.float32)  # every value finite; their float32 sum is not
    with np.errstate(over="ignore"):
        assert not np.isfinite(big.sum())
    assert masking.all_finite(big)
    for bad in (np.nan, np.inf, -np.inf):
        plane = big.copy()
        plane[63, 63] = bad
        assert not masking.all_finite(plane)
        assert not masking.all_finite(np.ones(4, np.float32), plane)
    assert masking.all_finite(np.ones(3, np.float32), None)


@pytest.mark.parametrize("rows", [1, 63, 64, 65, 200])
def test_bits_set_by_blocks_matches_the_plane(rows):
    rng = np.random.default_rng(rows)
    mask = rng.integers(0, 1 << 12, (rows, 33)).astype(np.int32)
    bits = formats.SAT | formats.CR
    assert np.array_equal(masking.bits_set(mask, bits), (mask & bits) != 0)


def test_mask_boxes_single_pixels_and_clipped_boxes():
    boxes = [
        Box.of(3, 4, 1, 1),
        Box.of(3, 4, 1, 1),  # twice
        Box.of(17, 5, 4, 3),  # clipped at the right
        Box.of(18, 0, 1, 30),  # a column, clipped at the bottom
        Box.of(40, 2, 1, 1),  # outside: nothing
        Box.of(0, 0, 1, 1),
    ]
    mask = np.full((12, 20), formats.SAT, np.int32)
    masking.mask_boxes(mask, boxes, formats.BAD)
    expected = np.zeros(mask.shape, bool)
    for box in boxes:
        expected[max(0, box.y0) : max(0, box.y1), max(0, box.x0) : max(0, box.x1)] = True
    assert np.array_equal((mask & formats.BAD) != 0, expected)
    assert np.all(mask & formats.SAT)


def test_runs_are_row_major_and_split_at_row_ends():
    bad = np.zeros((5, 6), bool)
    bad[1, 4:6] = True
    bad[2, 0:2] = True  # continues the row above in memory: a new run all the same
    bad[4, 3] = True
    run_row, run_x0, run_x1, ys, xs = _runs(bad)
    assert run_row.tolist() == [1, 2, 4] and run_x0.tolist() == [4, 0, 3] and run_x1.tolist() == [6, 2, 4]
    ref_y, ref_x = np.nonzero(bad)
    assert ys.tolist() == ref_y.tolist() and xs.tolist() == ref_x.tolist()


def _master(shape=(70, 48)) -> Exposure:
    rng = np.random.default_rng(5)
    image = rng.normal(1.0, 0.01, shape).astype(np.float32)
    mask = np.zeros(shape, np.int32)
    mask[3, 4] = formats.BAD
    return Exposure(image, mask, np.full(shape, 1e-4, np.float32), {"CALIB": True})


def test_consumed_buffer_becomes_the_planes(tmp_path):
    path = tmp_path / "flat.fits"
    path.write_bytes(exposure_to_bytes(_master(), compression="none"))
    expected = read_exposure(path)
    buffer, _ = read_file_sha256(path)
    assert bytes(buffer) == path.read_bytes()
    got = read_exposure(buffer, "flat.fits", consume=True)
    for plane in ("image", "mask", "variance"):
        assert np.array_equal(getattr(got, plane), getattr(expected, plane)), plane
        assert getattr(got, plane).dtype.isnative
    assert np.shares_memory(got.image, np.frombuffer(buffer, np.uint8)), "no copy: the buffer's own bytes"
    assert bytes(buffer) != path.read_bytes(), "consumed: swapped in place"


def test_immutable_or_compressed_bytes_are_never_changed(tmp_path):
    data = exposure_to_bytes(_master(), compression="none")
    before = bytes(data)
    read_exposure(data, "flat.fits", consume=True)  # bytes: read by copy
    assert data == before
    compressed = bytearray(exposure_to_bytes(_master(), compression="lossless"))
    kept = bytes(compressed)
    got = read_exposure(compressed, "flat.fits", consume=True)  # tiles are decoded, not adopted
    assert bytes(compressed) == kept
    assert np.array_equal(got.mask, _master().mask)


def test_a_file_left_to_astropy_is_read_from_intact_bytes(tmp_path):
    """A plane the indexed reader leaves to astropy (here a scaled MASK) must find the bytes as
    they were: nothing is adopted before every plane is known to be readable."""
    from astropy.io import fits

    master = _master()
    mask_hdu = fits.ImageHDU(master.mask.astype(np.int16), name="MASK")
    mask_hdu.header["BSCALE"], mask_hdu.header["BZERO"] = 1.0, 0.5
    hdul = fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(master.image, name="IMAGE"),
            mask_hdu,
            fits.ImageHDU(master.variance, name="VARIANCE"),
        ]
    )
    path = tmp_path / "odd.fits"
    hdul.writeto(path)
    expected = read_exposure(path)
    got = read_exposure(bytearray(path.read_bytes()), "odd.fits", consume=True)
    assert np.array_equal(got.image, expected.image) and np.array_equal(got.variance, expected.variance)
    assert np.array_equal(got.mask, expected.mask)


def test_non_finite_pixels_are_masked_in_every_block(small_night):
    """NaN masking looks only at the row blocks the electron steps found non-finite: NaNs in
    blocks far apart are all counted, masked BAD and interpolated."""
    raw = small_night.raws_of("science")[0]
    cal = small_night.calibrations[0]
    calibs = load_calibrations(bias=cal.bias, dark=cal.dark, flat=cal.flat[raw.physical_filter])
    dark = calibs.dark.exposure.image
    rows = dark.shape[0]
    assert rows > 2 * 64, "the frame spans several blocks"
    spots = [(1, 5), (rows // 2, 7), (rows - 1, 9)]
    for y, x in spots:
        dark[y, x] = np.nan
    result = run_isr(read_raw(raw.path), calibs, IsrConfig())
    assert result.header["NUMNANS"] == (len(spots), "non-finite pixels masked")
    for y, x in spots:
        assert result.mask[y, x] & formats.BAD and result.mask[y, x] & formats.INTRP, (y, x)
        assert np.isfinite(result.image[y, x])
    assert np.isfinite(result.image).all()


@pytest.mark.parametrize("size", [0, 1, 256 * 1024 - 1, 256 * 1024, 3 * 256 * 1024 + 5])
def test_file_read_and_hashed_in_pieces_is_the_file(tmp_path, size):
    import hashlib

    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "c.fits"
    path.write_bytes(data)
    view, digest = read_file_sha256(path)
    assert bytes(view) == data and not view.readonly
    assert digest == hashlib.sha256(data).hexdigest()
