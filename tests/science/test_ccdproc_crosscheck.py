"""Cross-check with astropy ccdproc on identical inputs, for the steps both implement:
per-row median overscan (no clipping), trim, gain, bias, dark scaling, flat with norm 1.0."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from isrflow.io.exposure_io import read_exposure
from isrflow.io.rawio import read_raw
from isrflow.isr import IsrConfig, load_calibrations, run_isr
from isrflow.isr.assembly import flip

ccdproc = pytest.importorskip("ccdproc")
from astropy.nddata import CCDData  # noqa: E402


def test_matches_ccdproc_within_1e5(small_night):
    raw = small_night.raws_of("science")[0]
    cal = small_night.calibrations[0]
    frame = read_raw(raw.path)
    config = IsrConfig(
        saturation={"enabled": False},
        overscan={"fit_type": "MEDIAN_PER_ROW", "clip_sigma": None},
        defects=False,
        nan_masking=False,
        interpolate=False,
    )
    ours = run_isr(
        frame, load_calibrations(bias=cal.bias, dark=cal.dark, flat=cal.flat[raw.physical_filter]), config
    )
    bias, dark, flat = (read_exposure(p).image for p in (cal.bias, cal.dark, cal.flat[raw.physical_filter]))
    with fits.open(raw.path) as hdul:
        for amp in frame.amplifiers:
            hdu = hdul[amp.hdu]

            def on_disk(plane, amp=amp):  # the calibration's pixels of this amp, in on-disk order
                return flip(plane[amp.assembled.slices], amp.flip_x, amp.flip_y)

            d, so = amp.data, amp.serial_overscan
            # ccdproc needs an overscan as tall as the frame: give it the data rows only
            ccd = CCDData(hdu.data[d.y0 : d.y1].astype(np.float64), unit="adu")
            ccd = ccdproc.subtract_overscan(
                ccd, fits_section=f"[{so.x0 + 1}:{so.x1},1:{d.height}]", median=True, overscan_axis=1
            )
            ccd = ccdproc.trim_image(ccd, fits_section=f"[{d.x0 + 1}:{d.x1},1:{d.height}]")
            ccd = ccdproc.gain_correct(ccd, hdu.header["GAIN"] * u.electron / u.adu)
            ccd = ccdproc.subtract_bias(ccd, CCDData(on_disk(bias).astype(np.float64), unit="electron"))
            ccd = ccdproc.subtract_dark(
                ccd,
                CCDData(on_disk(dark).astype(np.float64), unit="electron"),
                dark_exposure=1.0 * u.s,
                data_exposure=frame.obs.darktime * u.s,
                scale=True,
            )
            ccd = ccdproc.flat_correct(
                ccd, CCDData(on_disk(flat).astype(np.float64), unit=""), norm_value=1.0
            )
            mine = on_disk(ours.image).astype(np.float64)
            rel = np.abs(mine - ccd.data) / np.maximum(np.abs(ccd.data), 1.0)
            assert rel.max() <= 1e-5, (amp.name, rel.max())
