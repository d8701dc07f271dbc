"""read_exposure's indexed path (isrflow.io.mef.MefReader over the file's bytes) against astropy's
reading of the same files: the same pixels bit for bit, the same header, and every file it is not
sure of left to astropy, with astropy's errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits

from isrflow.io import formats
from isrflow.io.exposure_io import Exposure, _read_indexed, exposure_to_bytes, read_exposure
from isrflow.model.errors import CalibrationError, TruncatedCalibrationError


def _exposure(seed: int = 3, shape: tuple[int, int] = (70, 48)) -> Exposure:
    """Sky-like pixels (e-) with a star, NaNs and mask bits: what a postISRCCD or master holds."""
    rng = np.random.default_rng(seed)
    image = rng.normal(1000.0, 30.0, shape).astype(np.float32)
    image[30:34, 20:24] += 5e4
    image[5, 7] = np.nan
    mask = np.zeros(shape, np.int32)
    mask[5, 7] = formats.BAD | formats.NO_DATA
    mask[40:45, 3] = formats.SAT
    variance = np.maximum(image, 0) + np.float32(25.0)
    return Exposure(
        image, mask, variance, {"INSTRUME": "HSC", "DETECTOR": 50, "EXPTIME": 30.0, "CALIB": True}
    )


def _astropy(data: bytes) -> Exposure:
    """The planes and primary header exactly as astropy reads them."""
    with fits.open(io.BytesIO(data), memmap=False) as hdul:
        planes = {
            name: np.asarray(hdul[name].data, dtype=dtype)
            for name, dtype in (
                (formats.EXT_IMAGE, np.float32),
                (formats.EXT_MASK, np.int32),
                (formats.EXT_VARIANCE, np.float32),
            )
            if name in hdul
        }
        header = {k: v for k, v in hdul[0].header.items() if k not in ("COMMENT", "HISTORY", "")}
    return Exposure(
        planes[formats.EXT_IMAGE], planes.get(formats.EXT_MASK), planes.get(formats.EXT_VARIANCE), header
    )


def _same(a: Exposure, b: Exposure) -> None:
    for plane in ("image", "mask", "variance"):
        x, y = getattr(a, plane), getattr(b, plane)
        assert (x is None) == (y is None), plane
        if x is not None:
            assert x.dtype == y.dtype and x.dtype.isnative, plane
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), plane
    assert a.header == b.header


@pytest.mark.parametrize("mode", ["quantized", "lossless", "none"])
def test_the_indexed_path_reads_every_compression_as_astropy_does(mode, tmp_path):
    data = exposure_to_bytes(_exposure(), mode)
    indexed = _read_indexed(data, "master.fits")
    assert indexed is not None  # the fast path was taken, not astropy's
    _same(indexed, _astropy(data))
    path = tmp_path / "master.fits"
    path.write_bytes(data)
    _same(read_exposure(path), indexed)
    _same(read_exposure(data, "master.fits"), indexed)


def test_an_image_only_file_reads_without_mask_or_variance():
    data = exposure_to_bytes(Exposure(_exposure().image, header={"OBSTYPE": "bias"}), "none")
    got = _read_indexed(data, "bias.fits")
    assert got is not None and got.mask is None and got.variance is None
    _same(got, _astropy(data))


def _hdul_bytes(*extensions: fits.ImageHDU) -> bytes:
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), *extensions]).writeto(buffer)
    return buffer.getvalue()


def test_scaled_blank_coded_and_doubled_planes_are_left_to_astropy():
    image = _exposure().image
    scaled = fits.ImageHDU(np.round(np.nan_to_num(image)).astype(np.int16), name=formats.EXT_IMAGE)
    scaled.header["BZERO"] = 100.0
    blank_mask = fits.ImageHDU(np.zeros(image.shape, np.int32), name=formats.EXT_MASK)
    blank_mask.header["BLANK"] = -1
    doubled = (fits.ImageHDU(image, name=formats.EXT_IMAGE), fits.ImageHDU(image * 2, name=formats.EXT_IMAGE))
    for hdus in ((scaled,), (fits.ImageHDU(image, name=formats.EXT_IMAGE), blank_mask), doubled):
        data = _hdul_bytes(*hdus)
        assert _read_indexed(data, "odd.fits") is None
        _same(read_exposure(data, "odd.fits"), _astropy(data))  # astropy read it


def test_files_it_cannot_read_keep_astropy_errors_naming_the_file(tmp_path):
    cube = _hdul_bytes(fits.ImageHDU(np.zeros((2, 3, 4), np.float32), name=formats.EXT_IMAGE))
    with pytest.raises(CalibrationError, match=r"cube\.fits: IMAGE is not 2-D"):
        read_exposure(cube, "cube.fits")
    masked = _hdul_bytes(
        fits.ImageHDU(np.zeros((4, 4), np.float32), name=formats.EXT_IMAGE),
        fits.ImageHDU(np.zeros((4, 5), np.int32), name=formats.EXT_MASK),
    )
    with pytest.raises(CalibrationError, match=r"shapes\.fits: MASK shape \(4, 5\) differs"):
        read_exposure(masked, "shapes.fits")
    with pytest.raises(CalibrationError, match=r"junk\.fits: not a readable FITS file"):
        read_exposure(b"not fits at all" * 300, "junk.fits")
    with pytest.raises(CalibrationError, match=r"no such file"):
        read_exposure(tmp_path / "missing.fits")
    with pytest.raises(CalibrationError, match=r"has no IMAGE extension"):
        read_exposure(_hdul_bytes(fits.ImageHDU(np.zeros((4, 4), np.float32), name="OTHER")), "other.fits")


@pytest.mark.parametrize("mode", ["quantized", "none"])
def test_a_file_cut_short_is_refused_not_read_without_its_last_plane(mode):
    data = exposure_to_bytes(_exposure(), mode)
    cut = data[: len(data) - 3000]
    if mode == "quantized":
        with pytest.warns(
            Warning, match=r"(?i)header size|truncated"
        ):  # astropy alone reads it, warns, and drops the cut VARIANCE
            assert _astropy_planes(cut) == [formats.EXT_IMAGE, formats.EXT_MASK]
    with pytest.raises(TruncatedCalibrationError, match=r"cut\.fits: truncated"):
        read_exposure(cut, "cut.fits")
    with pytest.raises(TruncatedCalibrationError, match=r"cut\.fits"):
        read_exposure(data[:4000], "cut.fits")  # inside the first plane's header


def _astropy_planes(data: bytes) -> list[str]:
    with fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=False) as hdul:
        return [h.name for h in hdul[1:]]


@pytest.mark.filterwarnings("ignore:File may have been truncated")  # astropy, on the unpadded end
def test_bytes_after_the_last_hdu_and_a_missing_last_padding_are_read_as_astropy_does():
    data = exposure_to_bytes(_exposure(), "none")
    plane_bytes = 70 * 48 * 4  # the last plane's data; the rest of its last block is padding
    padding = -plane_bytes % 2880
    assert padding > 500
    for variant in (data + b"\0" * 2880, data + b"junk", data[: len(data) - 500]):
        indexed = _read_indexed(variant, "odd-end.fits")
        assert indexed is not None
        _same(indexed, _astropy(variant))


def test_scaled_compressed_planes_and_names_astropy_reads_otherwise_are_left_to_it():
    rng = np.random.default_rng(5)
    ints = rng.integers(-1000, 1000, (64, 80)).astype(np.int32)
    scaled = fits.CompImageHDU(ints, name=formats.EXT_IMAGE, compression_type="RICE_1")
    scaled.header["BSCALE"] = 0.1234567
    scaled.header["BZERO"] = 3.3
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), scaled]).writeto(buffer)
    data = buffer.getvalue()
    assert _read_indexed(data, "scaled.fits") is None
    _same(read_exposure(data, "scaled.fits"), _astropy(data))

    image = _exposure().image
    lower = _hdul_bytes(fits.ImageHDU(image, name="image"))
    lower = lower.replace(b"EXTNAME = 'IMAGE   '", b"EXTNAME = 'image   '")  # astropy upper-cases on write
    assert _read_indexed(lower, "lower.fits") is None
    with pytest.raises(CalibrationError, match=r"lower\.fits: has no IMAGE extension"):
        read_exposure(lower, "lower.fits")  # as before: the name is not IMAGE

    primary = fits.PrimaryHDU(image * 3)
    primary.header["EXTNAME"] = formats.EXT_IMAGE
    buffer = io.BytesIO()
    fits.HDUList([primary, fits.ImageHDU(image, name=formats.EXT_IMAGE)]).writeto(buffer)
    both = buffer.getvalue()
    assert _read_indexed(both, "both.fits") is None
    assert np.array_equal(read_exposure(both, "both.fits").image, image * 3, equal_nan=True)  # the primary
