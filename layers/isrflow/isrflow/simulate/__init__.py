"""The raw-data simulator: realistic raws in each camera's layout, with their truth beside them.

``simulate(SimulationRequest(...))`` writes, under ``out``:

- ``raw/`` the raw FITS files (one per detector; DECam one per exposure);
- ``truth/signal/`` per raw detector the noiseless signal in e- (what ISR should recover);
- ``truth/calib/`` per detector the true bias (e-), dark (e-/s), flat (per filter) and defects
  in the calibration file format ``isrflow isr`` reads;
- ``manifest.json`` listing all of it (:class:`SimulationManifest`).

Everything is deterministic for a seed: each (exposure, detector) and each detector's
signatures draw from their own generator, so selecting other detectors changes nothing else,
and the frames, made by a pool of worker processes (:mod:`.frames`), are the same bytes
whatever the number of workers.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from isrflow.camera import Camera, load_camera
from isrflow.camera.model import Detector
from isrflow.io import formats
from isrflow.io.exposure_io import Exposure
from isrflow.model.errors import ConfigError
from isrflow.model.observation import ObservationInfo, ObsType
from isrflow.simulate import frames, writers
from isrflow.simulate.scene import bleed, cosmic_ray_count, cosmic_rays, science_truth
from isrflow.simulate.truth import TrueSignatures

SimCamera = Literal["hsc", "lsstcam", "decam", "generic"]
START = datetime(2026, 11, 20, 1, 0, 0, tzinfo=UTC)

#: band -> each camera's physical filter name.
PHYSICAL_FILTERS = {
    "hsc": {"g": "HSC-G", "r": "HSC-R2", "i": "HSC-I2", "z": "HSC-Z", "y": "HSC-Y"},
    "decam": {
        "g": "g DECam SDSS c0001 4720.0 1520.0",
        "r": "r DECam SDSS c0002 6415.0 1480.0",
        "i": "i DECam SDSS c0003 7835.0 1470.0",
        "z": "z DECam SDSS c0004 9260.0 1520.0",
        "y": "Y DECam c0005 10095.0 1130.0",
    },
    "lsstcam": {b: f"{b}_{n}" for b, n in zip("ugrizy", ("24", "6", "57", "39", "20", "10"), strict=False)},
    "generic": {b: b for b in "ugrizy"},
}
INSTRUMENTS = {"hsc": "HSC", "decam": "DECam", "lsstcam": "LSSTCam", "generic": "Generic"}
FIRST_EXPOSURE = {"hsc": 904000, "decam": 1177700, "lsstcam": 1, "generic": 5000}
EXPTIMES = {"bias": 0.0, "dark": 300.0, "flat": 5.0, "science": 30.0}
FLAT_LEVEL_E = 30000.0
#: Below this many pixels of signatures and frames (~3 HSC frames) ``simulate`` runs in-process.
POOL_MIN_PIXELS = 25_000_000


class SimulationRequest(BaseModel):
    camera: SimCamera
    detectors: list[int] = Field(min_length=1)
    bias: int = Field(default=0, ge=0)
    dark: int = Field(default=0, ge=0)
    flat: int = Field(default=0, ge=0)
    science: int = Field(default=0, ge=0)
    filter: str = "r"
    seed: int = 1
    out: Path
    small: bool = False
    nonlinearity: bool = False
    crosstalk: bool = False
    sky: float = Field(default=1500.0, ge=0, description="sky level, e- per pixel")
    stars_per_megapixel: float = Field(default=150.0, ge=0)
    cosmic_ray_rate: float = Field(default=2.0, ge=0, description="per cm^2 per minute of dark time")


class SimulatedRaw(BaseModel):
    path: str
    exposure: int
    obs_type: ObsType
    physical_filter: str
    detectors: list[int]
    truth: dict[int, str]


class TrueCalibrationFiles(BaseModel):
    bias: str
    dark: str
    flat: dict[str, str]
    defects: str


class SimulationManifest(BaseModel):
    camera: str
    instrument: str
    small: bool
    raws: list[SimulatedRaw]
    calibrations: dict[int, TrueCalibrationFiles]

    def raws_of(self, obs_type: str) -> list[SimulatedRaw]:
        return [r for r in self.raws if r.obs_type == obs_type]


def sim_camera(name: str, small: bool = False) -> Camera:
    """The camera the simulator writes: a built-in one, or generic (``small`` = tiny layout)."""
    camera = load_camera(name)
    if name == "generic" and small:
        data = camera.model_dump()
        data["detectors"] = [dict(d, layout="small") for d in data["detectors"]]
        return Camera.model_validate(data)
    return camera


def _observation(
    req: SimulationRequest, det: Detector, index: int, obs_type: str, physical_filter: str
) -> ObservationInfo:
    begin = START + timedelta(seconds=120 * index)
    exptime = EXPTIMES[obs_type] if not req.small else min(EXPTIMES[obs_type], 60.0)
    darktime = exptime if req.camera == "hsc" else exptime + 1.0
    step = 2 if req.camera == "hsc" else 1
    return ObservationInfo(
        instrument=INSTRUMENTS[req.camera],
        detector=det.id,
        detector_name=det.name,
        exposure=FIRST_EXPOSURE[req.camera] + step * index
        if req.camera != "lsstcam"
        else 20261119 * 100000 + index + 1,
        obs_type=obs_type,
        physical_filter=physical_filter,
        band=req.filter if physical_filter != "NONE" else "",
        exptime=exptime,
        darktime=darktime,
        begin=begin,
        end=begin + timedelta(seconds=exptime),
        day_obs=int((begin - timedelta(hours=12)).strftime("%Y%m%d")),
    )


def _electrons(
    req: SimulationRequest,
    camera: Camera,
    det: Detector,
    sig: TrueSignatures,
    obs: ObservationInfo,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(electrons incl. bias structure, full-well map, truth signal) for one detector frame."""
    shape = sig.bias.shape
    if obs.obs_type == "science":
        n_stars = int(req.stars_per_megapixel * shape[0] * shape[1] / 1e6)
        truth = science_truth(shape, rng, req.sky, n_stars)
    elif obs.obs_type == "flat":
        truth = np.full(shape, FLAT_LEVEL_E, dtype=np.float32)
    else:
        truth = np.zeros(shape, dtype=np.float32)
    expected = truth * sig.flat + sig.dark * np.float32(obs.darktime)
    electrons = rng.poisson(np.maximum(expected, 0.0)).astype(np.float32)
    if obs.obs_type in ("science", "dark"):
        n_cr = cosmic_ray_count(shape, camera.pixel_size_um, obs.darktime, req.cosmic_ray_rate, rng)
        electrons += cosmic_rays(shape, rng, n_cr)
    full_well = np.empty(shape, dtype=np.float32)
    for amp in camera.amplifiers(det):
        full_well[amp.assembled.slices] = (amp.saturation - amp.bias_level - 200.0) * amp.gain
    saturated = bleed(electrons, full_well)
    electrons += sig.bias
    return electrons, saturated, truth


def _calib_header(
    instrument: str, det: Detector, calib_type: str, physical_filter: str | None = None
) -> dict:
    header = {
        formats.KW_INSTRUMENT: instrument,
        formats.KW_DETECTOR: det.id,
        formats.KW_DETNAME: det.name,
        formats.KW_CALIB_TYPE: calib_type,
        formats.KW_UNITS: formats.CALIB_UNITS[calib_type],
        "TRUTH": True,
    }
    if physical_filter is not None:
        header[formats.KW_FILTER] = physical_filter
    return header


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def default_workers() -> int:
    """Worker processes for the simulator: every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def simulate(req: SimulationRequest, progress=None, workers: int | None = None) -> SimulationManifest:
    """Write the raws, their truth and the true calibrations; return (and write) the manifest.
    ``progress(done, total)`` is called after each exposure (all its detectors) is written.

    ``workers`` processes (default: every core, or 1 for less than :data:`POOL_MIN_PIXELS` of
    frames; 1 = in this process) make the detectors' signatures and then the frames, one
    (exposure, detector) per task. Every frame draws from
    its own seeded generator, so the files are byte-identical whatever the number of workers.
    """
    camera = sim_camera(req.camera, req.small)
    if req.small and req.camera != "generic":
        raise ConfigError("--small makes frames of the small generic camera; use --camera generic")
    band = req.filter.lower()
    if band not in PHYSICAL_FILTERS[req.camera]:
        raise ConfigError(
            f"--filter {req.filter!r} is not a band of {req.camera} ({', '.join(PHYSICAL_FILTERS[req.camera])})"
        )
    physical = PHYSICAL_FILTERS[req.camera][band]
    detectors = [camera.detector(d) for d in req.detectors]
    instrument = INSTRUMENTS[req.camera]
    out = Path(req.out)
    plan = [("bias", req.bias), ("dark", req.dark), ("flat", req.flat), ("science", req.science)]
    exposures = [
        (obs_type, physical if obs_type in ("flat", "science") else "NONE")
        for obs_type, count in plan
        for _ in range(count)
    ]
    tasks_total = max(len(detectors), len(exposures) * len(detectors))
    if workers is None:  # a pool only where it pays for starting its processes (~1 s)
        pixels = sum(int(np.prod(camera.assembled_shape(d))) for d in detectors) * (1 + len(exposures))
        workers = default_workers() if pixels >= POOL_MIN_PIXELS else 1
    workers = min(max(1, int(workers)), tasks_total)
    with frames.executor(workers) as pool:
        calib_files = dict(
            zip(
                req.detectors,
                pool.map(partial(frames.true_calibrations, req, physical), req.detectors),
                strict=False,
            )
        )
        # tasks in exposure order; results taken in that order, so progress counts whole exposures
        tasks = [
            [
                pool.submit(frames.frame, req, index, obs_type, pf, det.id, calib_files[det.id])
                for det in detectors
            ]
            for index, (obs_type, pf) in enumerate(exposures)
        ]
        raws: list[SimulatedRaw] = []
        for index, ((obs_type, pf), futures) in enumerate(zip(exposures, tasks, strict=False)):
            done = [f.result() for f in futures]
            exposure = done[0].exposure
            truth_paths = {d.detector: d.truth_path for d in done}
            if camera.raw_format == "exposure_mef":
                path = writers.write_decam(
                    out / "raw" / f"{instrument}-{exposure}.fits",
                    camera,
                    [(camera.detector(d.detector), d.obs, d.pixels) for d in done],
                )
                raws.append(
                    SimulatedRaw(
                        path=str(path),
                        exposure=exposure,
                        obs_type=obs_type,
                        physical_filter=pf,
                        detectors=[d.id for d in detectors],
                        truth=truth_paths,
                    )
                )
            else:
                for d in done:
                    raws.append(
                        SimulatedRaw(
                            path=d.raw_path,
                            exposure=exposure,
                            obs_type=obs_type,
                            physical_filter=pf,
                            detectors=[d.detector],
                            truth={d.detector: d.truth_path},
                        )
                    )
            tasks[index] = []  # let the finished results (DECam pixels) go
            if progress is not None:
                progress(index + 1, len(exposures))
    frames.forget()  # the signatures an in-process run kept (~100 MB per HSC detector)
    manifest = SimulationManifest(
        camera=req.camera, instrument=instrument, small=req.small, raws=raws, calibrations=calib_files
    )
    (out / "manifest.json").write_text(json.dumps(manifest.model_dump(mode="json"), indent=1))
    return manifest


def load_manifest(directory: str | Path) -> SimulationManifest:
    return SimulationManifest.model_validate_json((Path(directory) / "manifest.json").read_text())


def truth_residuals(result: Exposure, truth_path: str | Path) -> np.ndarray:
    """(image - truth) / sqrt(variance) over unmasked pixels: ~N(0, 1) for a correct ISR."""
    from isrflow.io.exposure_io import read_exposure

    truth = read_exposure(truth_path).image
    if result.mask is None or result.variance is None:
        raise ValueError("truth residuals need the MASK and VARIANCE planes of the result")
    good = result.mask == 0
    return (result.image - truth)[good] / np.sqrt(result.variance[good])
