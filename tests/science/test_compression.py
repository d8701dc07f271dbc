"""Compressed products: the tile codec against astropy's decoder, the compression setting, and
ISR residuals against the simulator's truth with compression on (isrflow.io.compression states
the tolerances)."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from astropy.io import fits

from isrflow.infra.settings import ENV_COMPRESSION
from isrflow.io import formats, tiled
from isrflow.io.compression import QUANTIZE_LEVEL, VARIANCE_QUANTIZE_LEVEL, codec_for
from isrflow.io.exposure_io import Exposure, exposure_to_bytes, read_exposure, write_exposure
from isrflow.io.rawio import read_raw
from isrflow.isr import IsrConfig, load_calibrations, run_isr
from isrflow.isr.pipeline import calibration_from_bytes
from isrflow.model.errors import CalibrationError, ConfigError
from isrflow.simulate import truth_residuals

PRIMARY = fits.PrimaryHDU().header.tostring().encode("ascii")


def _noisy(shape, seed=3, sigma=20.0):
    rng = np.random.default_rng(seed)
    image = rng.normal(1000.0, sigma, shape).astype(np.float32)
    image[2, :5] = 0.0  # zeros are quantized like any value (SUBTRACTIVE_DITHER_1)
    image[7, 3] = np.nan
    image[16:40] = 3.5  # constant tiles: stored losslessly
    return image


def _bands(data: bytes):
    """Each compressed extension of an in-memory file as a TiledImage and a reader of its bytes."""
    out, offset = [], 2880
    while offset < len(data):
        end = offset
        while data[end : end + 8] != b"END     ":
            end += 80
        header = fits.Header.fromstring(data[offset : end + 80].decode("ascii"))
        start = offset + (end + 80 - offset + 2879) // 2880 * 2880
        out.append(tiled.TiledImage.from_header(header, start, "mem.fits"))
        size = int(header["NAXIS1"]) * int(header["NAXIS2"]) + int(header["PCOUNT"])
        offset = start + (size + 2879) // 2880 * 2880
    return out, lambda at, length: data[at : at + length]


@pytest.mark.parametrize("tile_rows", [1, 16, 7])
def test_tiles_decode_identically_in_astropy_and_by_bands(tile_rows):
    """Quantized within half a step of the input (astropy's decoder: the dither matches the
    standard); lossless planes exact; any band read here equals astropy's whole-image decode."""
    image = _noisy((45, 700))
    mask = (np.arange(45 * 700).reshape(45, 700) % 97 == 0).astype(np.int32) * formats.SAT
    count = np.full((45, 700), 6, np.int16)
    seed = 9999  # tile seeds wrap past the 10000 dither values; 11200-pixel tiles wrap inside a tile
    planes = [
        ("IMAGE", image, tiled.Codec("RICE_1", 16.0, seed, tile_rows)),
        ("VARIANCE", image * 2, tiled.Codec("GZIP_2", None, seed, tile_rows)),
        ("MASK", mask, tiled.Codec("RICE_1", None, seed, tile_rows)),
        ("NINPUTS", count, tiled.Codec("RICE_1", None, seed, tile_rows)),
    ]
    data = PRIMARY + b"".join(tiled.encode_image(n, a, c, [("BUNIT", "x", "unit")]) for n, a, c in planes)
    with fits.open(io.BytesIO(data)) as hdul:
        hdul.verify("exception")
        decoded = {h.name: h.data.copy() for h in hdul[1:]}
    good = np.isfinite(image)
    error = np.abs(decoded["IMAGE"] - image)[good]
    assert error.max() <= 0.5 * 20.0 / 16.0 * 1.3  # half a step; the per-tile noise estimate varies
    assert np.isnan(decoded["IMAGE"][7, 3])
    constant = [
        y
        for y in range(16, 40)
        if y // tile_rows * tile_rows >= 16 and (y // tile_rows + 1) * tile_rows <= 40
    ]
    assert constant and np.all(decoded["IMAGE"][constant] == np.float32(3.5))  # constant tiles: lossless
    for name, array, _ in planes[1:]:
        assert np.array_equal(decoded[name], array, equal_nan=array.dtype.kind == "f"), name
        assert decoded[name].dtype == array.dtype, name
    images, read = _bands(data)
    for hdu in images:
        for y0, y1 in ((0, 45), (3, 19), (16, 17), (30, 45)):
            out = np.empty((y1 - y0, 700), hdu.dtype)
            assert np.array_equal(hdu.read_rows(read, y0, y1, out), decoded[hdu.name][y0:y1], equal_nan=True)


def test_files_compressed_by_astropy_read_by_bands():
    """fpack-style files (astropy's own quantizer, q = 4, SUBTRACTIVE_DITHER_1, one-row tiles) too."""
    image = _noisy((33, 120))
    hdu = fits.CompImageHDU(
        image, name="IMAGE", compression_type="RICE_1", quantize_level=4.0, quantize_method=1, dither_seed=17
    )
    gz = fits.CompImageHDU(
        image, name="VARIANCE", compression_type="GZIP_1", quantize_level=8.0, tile_shape=(5, 120)
    )
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu, gz]).writeto(buffer)
    data = buffer.getvalue()
    with fits.open(io.BytesIO(data)) as hdul:
        want = {h.name: h.data.copy() for h in hdul[1:]}
    images, read = _bands(data)
    for h in images:
        assert np.array_equal(
            h.read_rows(read, 4, 31, np.empty((27, 120), np.float32)), want[h.name][4:31], equal_nan=True
        )


def test_tile_shapes_and_algorithms_not_read_by_bands_are_refused():
    buffer = io.BytesIO()
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.CompImageHDU(np.zeros((8, 8), np.int32), name="MASK", compression_type="PLIO_1"),
        ]
    ).writeto(buffer)
    with pytest.raises(CalibrationError, match=r"mem\.fits: MASK.*PLIO_1"):
        _bands(buffer.getvalue())


def test_write_exposure_compresses_by_default_and_reads_back(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_COMPRESSION, raising=False)
    image = _noisy((64, 50))
    exposure = Exposure(
        image, (image > 1030).astype(np.int32), np.abs(image) + 25.0, {formats.KW_DETECTOR: 3}
    )
    path = write_exposure(tmp_path / "out.fits", exposure)
    with fits.open(path, disable_image_compression=True) as hdul:
        assert [h.name for h in hdul[1:]] == ["IMAGE", "MASK", "VARIANCE"]
        assert all(h.header["ZIMAGE"] is True and h.header["ZCMPTYPE"] == "RICE_1" for h in hdul[1:])
        assert hdul["IMAGE"].header["ZQUANTIZ"] == "SUBTRACTIVE_DITHER_1"
        assert hdul["IMAGE"].header["ZVAL3"] == QUANTIZE_LEVEL
        assert hdul["VARIANCE"].header["ZVAL3"] == VARIANCE_QUANTIZE_LEVEL
        assert "ZQUANTIZ" not in hdul["MASK"].header and hdul["MASK"].header["MP_SAT"] == 1
    back = read_exposure(path)
    assert np.array_equal(back.mask, exposure.mask) and back.header[formats.KW_DETECTOR] == 3
    assert np.nanmax(np.abs(back.image - image)) < 20.0 / QUANTIZE_LEVEL
    assert path.stat().st_size < 0.5 * len(exposure_to_bytes(exposure, "none"))
    # the fixed dither seed: the same pixels give the same bytes (a retry writes the same sha256)
    assert hashlib.sha256(exposure_to_bytes(exposure)).digest() == hashlib.sha256(path.read_bytes()).digest()
    assert not list(tmp_path.glob(".out.fits*"))  # the atomic write left no temporary file


def test_lossless_and_none_are_exact_and_the_setting_is_checked(tmp_path, monkeypatch):
    image = _noisy((40, 30))
    exposure = Exposure(image, np.zeros((40, 30), np.int32), image * 2)
    for mode, compressed in (("lossless", True), ("none", False)):
        monkeypatch.setenv(ENV_COMPRESSION, mode)
        path = write_exposure(tmp_path / f"{mode}.fits", exposure)
        with fits.open(path, disable_image_compression=True) as hdul:
            assert isinstance(hdul["IMAGE"], fits.BinTableHDU) is compressed
        back = read_exposure(path)
        assert np.array_equal(back.image, image, equal_nan=True) and np.array_equal(
            back.variance, image * 2, equal_nan=True
        )
    monkeypatch.setenv(ENV_COMPRESSION, "zip")
    with pytest.raises(ConfigError, match="ISRFLOW_COMPRESSION='zip'"):
        exposure_to_bytes(exposure)
    assert codec_for(np.float32, "none") is None


def test_calibrations_with_planes_isr_does_not_read_are_still_accepted():
    """An older master: uncompressed, with a NINPUTS plane after VARIANCE."""
    shape = (20, 10)
    hdus = [
        fits.PrimaryHDU(),
        fits.ImageHDU(np.full(shape, 3.0, np.float32), name="IMAGE"),
        fits.ImageHDU(np.zeros(shape, np.int32), name="MASK"),
        fits.ImageHDU(np.ones(shape, np.float32), name="VARIANCE"),
        fits.ImageHDU(np.full(shape, 5, np.int16), name="NINPUTS"),
    ]
    hdus[0].header[formats.KW_CALIB_TYPE] = "bias"
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer)
    item = calibration_from_bytes("bias", buffer.getvalue(), "old-bias.fits")
    assert item.exposure.image.mean() == 3.0 and item.exposure.variance.shape == shape


def _stats(chi):
    return float(chi.mean()), float(chi.std())


def test_isr_residuals_against_truth_with_compression(small_night):
    """Compressed outputs: chi mean |mu| < 0.05 and std 1 +- 0.05 against the truth, and against
    the same frames uncompressed mu and std move by < 0.002 (isrflow.io.compression)."""
    moved = []
    for raw in small_night.raws_of("science"):
        for det in raw.detectors:
            cal = small_night.calibrations[det]
            calibs = load_calibrations(
                bias=cal.bias, dark=cal.dark, flat=cal.flat[raw.physical_filter], defects=cal.defects
            )
            result = run_isr(read_raw(raw.path, detector=det), calibs, IsrConfig())
            plain = _stats(truth_residuals(result, raw.truth[det]))
            compressed = read_exposure(exposure_to_bytes(result, "quantized"))
            assert np.array_equal(compressed.mask, result.mask)
            mu, std = _stats(truth_residuals(compressed, raw.truth[det]))
            assert abs(mu) < 0.05 and abs(std - 1.0) < 0.05, (mu, std)
            moved.append((abs(mu - plain[0]), abs(std - plain[1])))
            assert moved[-1][0] < 0.002 and moved[-1][1] < 0.002, (plain, (mu, std))
    assert len(moved) == 4
