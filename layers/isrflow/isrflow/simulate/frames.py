"""The simulator's tasks, run in a pool of worker processes (or inline for one worker).

Two kinds of task, both module-level functions so that they pickle:

- :func:`true_calibrations`: one detector's signatures (its own generator, seeded by
  ``(seed, 1, detector)``), written as the true bias (e-), dark (e-/s), flat and defects;
- :func:`frame`: one (exposure, detector) frame (generator seeded by ``(seed, 2, exposure
  index, detector)``): its noiseless signal and, for cameras with one file per detector, its
  raw file; DECam's pixels come back to the caller, which writes one file per exposure.

A frame task reads its detector's signatures back from the true calibration files (float32,
uncompressed: the same values bit for bit) and keeps the last few in a per-process cache, so
no worker recomputes a detector's signatures and no signature arrays cross processes.
"""

from __future__ import annotations

import multiprocessing
from collections import OrderedDict
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from isrflow.io.exposure_io import Exposure, read_exposure, write_defects, write_exposure
from isrflow.model.observation import ObservationInfo

#: Detectors whose signatures (bias, dark, flat: ~100 MB for an HSC CCD) a process keeps.
SIGNATURE_CACHE = 2
_signatures: OrderedDict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()


class _Inline(Executor):
    """An executor that runs each task at once in this process (one worker: no pool to start)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller by result(), like a pool would
            future.set_exception(exc)
        return future


def executor(workers: int) -> Executor:
    """``workers`` processes (forkserver: no locks of the caller's threads are inherited), or inline for 1."""
    if workers <= 1:
        return _Inline()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))


@dataclass
class FrameResult:
    """What a frame task made: its detector, observation, truth path and raw path (or pixels)."""

    detector: int
    exposure: int
    obs: ObservationInfo
    truth_path: str
    raw_path: str | None = None
    pixels: Any = None


def forget() -> None:
    """Drop this process's cached signatures (the in-process executor's, once a simulation is done)."""
    _signatures.clear()


def _remember(key: tuple, planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    _signatures[key] = planes
    _signatures.move_to_end(key)
    while len(_signatures) > SIGNATURE_CACHE:
        _signatures.popitem(last=False)


def true_calibrations(req, physical: str, det_id: int):
    """Make detector ``det_id``'s signatures and write its true calibrations; their file names."""
    from isrflow.simulate import INSTRUMENTS, TrueCalibrationFiles, _calib_header, _safe, sim_camera
    from isrflow.simulate.truth import make_signatures

    camera = sim_camera(req.camera, req.small)
    det = camera.detector(det_id)
    instrument = INSTRUMENTS[req.camera]
    sig = make_signatures(camera, det, np.random.default_rng([req.seed, 1, det.id]))
    exact = partial(write_exposure, compression="none")  # truth is never quantized
    base = Path(req.out) / "truth" / "calib" / f"{instrument}-{det.id:03d}"
    files = TrueCalibrationFiles(
        bias=str(
            exact(f"{base}-bias.fits", Exposure(sig.bias, header=_calib_header(instrument, det, "bias")))
        ),
        dark=str(
            exact(f"{base}-dark.fits", Exposure(sig.dark, header=_calib_header(instrument, det, "dark")))
        ),
        flat={
            physical: str(
                exact(
                    f"{base}-flat-{_safe(physical)}.fits",
                    Exposure(sig.flat, header=_calib_header(instrument, det, "flat", physical)),
                )
            )
        },
        defects=str(
            write_defects(f"{base}-defects.fits", sig.defects, _calib_header(instrument, det, "defects"))
        ),
    )
    _remember(_key(req, det_id), (sig.bias, sig.dark, sig.flat))
    return files


def _key(req, det_id: int) -> tuple:
    return (str(req.out), req.camera, req.small, req.seed, det_id)


def _planes(req, det_id: int, files) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bias, dark, flat) of a detector: from this process's cache, or read back from its files."""
    key = _key(req, det_id)
    if key in _signatures:
        _signatures.move_to_end(key)
        return _signatures[key]
    flat_path = next(iter(files.flat.values()))
    bias, dark, flat = (
        np.ascontiguousarray(read_exposure(p).image, dtype=np.float32)
        for p in (files.bias, files.dark, flat_path)
    )
    planes = (bias, dark, flat)
    _remember(key, planes)
    return planes


def frame(req, index: int, obs_type: str, physical_filter: str, det_id: int, files) -> FrameResult:
    """Simulate exposure ``index`` of detector ``det_id``: write its truth signal (and its raw file)."""
    from isrflow.io import formats
    from isrflow.simulate import INSTRUMENTS, _calib_header, _electrons, _observation, sim_camera, writers
    from isrflow.simulate.electronics import raw_pixels
    from isrflow.simulate.truth import TrueSignatures

    camera = sim_camera(req.camera, req.small)
    det = camera.detector(det_id)
    instrument = INSTRUMENTS[req.camera]
    bias, dark, flat = _planes(req, det_id, files)
    sig = TrueSignatures(bias=bias, dark=dark, flat=flat, defects=[])
    obs = _observation(req, det, index, obs_type, physical_filter)
    rng = np.random.default_rng([req.seed, 2, index, det.id])
    electrons, saturated, truth = _electrons(req, camera, det, sig, obs, rng)
    pixels = raw_pixels(
        camera, det, electrons, saturated, rng, crosstalk=req.crosstalk, nonlinearity=req.nonlinearity
    )
    out = Path(req.out)
    truth_path = out / "truth" / "signal" / f"{instrument}-{obs.exposure}-{det.id:03d}.fits"
    header = _calib_header(instrument, det, "bias") | {
        formats.KW_CALIB_TYPE: "truth",
        formats.KW_EXPOSURE: obs.exposure,
    }
    # noiseless signals: bit-exact GZIP_2, so a calibration frame's signal (all zeros, or one constant
    # for flats) takes ~50 kB instead of 34 MB on an HSC detector (the demo keeps 60 of them)
    truth_file = str(write_exposure(truth_path, Exposure(truth, header=header), compression="lossless"))
    result = FrameResult(detector=det.id, exposure=obs.exposure, obs=obs, truth_path=truth_file)
    if camera.raw_format == "exposure_mef":
        result.pixels = pixels
    else:
        write = {
            "hsc": writers.write_hsc,
            "lsstcam": writers.write_lsstcam,
            "generic": writers.write_generic,
        }[req.camera]
        result.raw_path = str(
            write(out / "raw" / f"{instrument}-{obs.exposure}-{det.id:03d}.fits", camera, det, obs, pixels)
        )
    return result
