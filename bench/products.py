"""Product sizes and I/O time per detector, compressed vs uncompressed (HSC-size); prints JSON.

One run builds a simulated HSC detector's night (3 biases, 3 darks, 3 flats, 1 science frame),
ISRs the inputs once, then for each compression mode of :mod:`isrflow.io.compression`
(``none``, ``lossless``, ``quantized``; the ``ISRFLOW_COMPRESSION`` setting) measures:

- ``masters``: the bias, dark and flat masters built by the real streaming combine
  (:func:`isrflow.calibration.combine.combine_files`) from the same inputs: bytes and the whole
  combine's wall time (read the inputs by strips, combine, encode and write, checksum);
- ``postISRCCD``: the science frame ISR'd with that mode's masters: bytes (and per plane),
  encode time (:func:`~isrflow.io.exposure_io.exposure_to_bytes`) and decode time
  (:func:`~isrflow.io.exposure_io.read_exposure`);
- ``isr_calibration_load_s``: reading + decoding the three masters and the defects as a cold
  ISR worker does (:func:`isrflow.isr.load_calibrations`, from bytes in memory);
- ``cold_worker_bytes``: what one detector's ISR reads from the datastore with no cache (raw,
  masters, defects) and writes (the output);
- ``chi``: residuals of the output against the simulator's truth (mean, std) and their change
  from ``none``.

Times are the best of ``--repeat`` (default 2; a combine runs once) on this machine, in one
process; timings on a shared 2-core VM vary by ~30%. About a minute on 2 cores.

Usage: python bench/products.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import atexit
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

MODES = ("none", "lossless", "quantized")


def _best(fn, repeat):
    best, value = None, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - t0
        best = seconds if best is None else min(best, seconds)
    return best, value


def _plane_bytes(data: bytes) -> dict[str, int]:
    """Bytes of each extension (header + data, padded), by name."""
    from astropy.io import fits

    with fits.open(io.BytesIO(data), disable_image_compression=True) as hdul:
        starts = [hdul.fileinfo(i)["hdrLoc"] for i in range(len(hdul))] + [len(data)]
        return {h.name: starts[i + 1] - starts[i] for i, h in enumerate(hdul) if i > 0}


def _isr_inputs(night, det, work: Path) -> dict[str, list]:
    """ISR every calibration input once (uncompressed masters for their own ISR): per type, (path, scale)."""
    import numpy as np

    from isrflow.calibration.combine import CombineInput, CombineSettings, CommonCalibration, combine_files
    from isrflow.calibration.steps import SPECS
    from isrflow.io.exposure_io import read_exposure, write_exposure
    from isrflow.io.rawio import read_raw
    from isrflow.isr import IsrConfig, load_calibrations, run_isr

    # one detector, no Normalize step: flats are scaled to the true response's level, as the
    # focal-plane normalization would
    true_flat = read_exposure(next(iter(night.calibrations[det].flat.values()))).image
    flat_level = float(np.median(true_flat))
    inputs: dict[str, list] = {}
    masters: dict[str, str] = {}
    commons: dict[str, list] = {}
    for calib_type in ("bias", "dark", "flat"):
        config = IsrConfig.model_validate(SPECS[calib_type].isr)
        items = []
        for i, raw in enumerate(night.raws_of(calib_type)):
            frame = read_raw(raw.path, detector=det)
            calibs = load_calibrations(**{k: masters[k] for k in SPECS[calib_type].needed_calibs})
            result = run_isr(frame, calibs, config)
            scale = (
                frame.obs.darktime
                if calib_type == "dark"
                else float(np.median(result.image)) / flat_level
                if calib_type == "flat"
                else 1.0
            )
            path = write_exposure(work / f"{calib_type}-in{i}.fits", result, compression="none")
            items.append((str(path), scale, frame.obs.darktime))
        common = []
        for role in SPECS[calib_type].needed_calibs:
            f2 = [(1.0 / s) ** 2 if role == "bias" else (t / s) ** 2 for _, s, t in items]
            common.append((role, sum(f2) / len(f2)))
        inputs[calib_type] = [(p, s) for p, s, _ in items]
        commons[calib_type] = common
        out = work / f"{calib_type}-master-none.fits"
        os.environ["ISRFLOW_COMPRESSION"] = "none"
        combine_files(
            [CombineInput(p, s) for p, s in inputs[calib_type]],
            str(out),
            calib_type,
            CombineSettings(),
            common=[CommonCalibration(masters[r], 1.0, f2) for r, f2 in common],
        )
        masters[calib_type] = str(out)
    return {"inputs": inputs, "commons": commons}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small generic frame, one repeat (a smoke run)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    saved = os.environ.get("ISRFLOW_COMPRESSION")

    from isrflow.calibration.combine import CombineInput, CombineSettings, CommonCalibration, combine_files
    from isrflow.io.exposure_io import exposure_to_bytes, read_exposure
    from isrflow.io.rawio import read_raw
    from isrflow.isr import IsrConfig, load_calibrations, run_isr
    from isrflow.simulate import SimulationRequest, simulate, truth_residuals

    repeat = 1 if args.quick else args.repeat
    work = Path(tempfile.mkdtemp(prefix="isrflow-products-bench-"))
    atexit.register(shutil.rmtree, work, True)  # leave no frames behind
    counts = {"bias": 3, "dark": 3, "flat": 3, "science": 1}
    request = (
        SimulationRequest(camera="generic", small=True, detectors=[0], out=work / "sim", **counts)
        if args.quick
        else SimulationRequest(camera="hsc", detectors=[50], out=work / "sim", **counts)
    )
    t0 = time.perf_counter()
    night = simulate(request)
    det = request.detectors[0]
    built = _isr_inputs(night, det, work)
    setup_s = time.perf_counter() - t0
    raw = night.raws_of("science")[0]
    frame = read_raw(raw.path, detector=det)
    defects = night.calibrations[det].defects
    figures: dict = {
        "detector": f"{night.instrument} {det}",
        "repeat_best_of": repeat,
        "setup_s": round(setup_s, 1),
        "inputs_per_master": {k: len(v) for k, v in built["inputs"].items()},
        "modes": {},
    }
    try:
        for mode in MODES:
            os.environ["ISRFLOW_COMPRESSION"] = mode
            masters, entry = {}, {"masters": {}}
            for calib_type in ("bias", "dark", "flat"):
                out = work / f"{calib_type}-master-{mode}.fits"
                common = [CommonCalibration(masters[r], 1.0, f2) for r, f2 in built["commons"][calib_type]]
                seconds, _ = _best(
                    lambda calib_type=calib_type, out=out, common=common: combine_files(
                        [CombineInput(p, s) for p, s in built["inputs"][calib_type]],
                        str(out),
                        calib_type,
                        CombineSettings(),
                        common=common,
                    ),
                    1,
                )
                masters[calib_type] = str(out)
                entry["masters"][calib_type] = {"bytes": out.stat().st_size, "combine_s": round(seconds, 3)}
            blobs = {k: Path(v).read_bytes() for k, v in masters.items()} | {
                "defects": Path(defects).read_bytes()
            }
            load_s, calibs = _best(lambda blobs=blobs: load_calibrations(**blobs), repeat)
            result = run_isr(frame, calibs, IsrConfig())
            write_s, data = _best(lambda result=result: exposure_to_bytes(result), repeat)
            read_s, back = _best(lambda data=data: read_exposure(data), repeat)
            chi = truth_residuals(back, raw.truth[det])
            entry["postISRCCD"] = {
                "bytes": len(data),
                "planes": _plane_bytes(data),
                "write_s": round(write_s, 3),
                "read_s": round(read_s, 3),
            }
            entry["isr_calibration_load_s"] = round(load_s, 3)
            entry["cold_worker_bytes"] = {
                "read": Path(raw.path).stat().st_size + sum(len(b) for b in blobs.values()),
                "written": len(data),
            }
            entry["chi"] = {"mean": round(float(chi.mean()), 5), "std": round(float(chi.std()), 5)}
            figures["modes"][mode] = entry
    finally:
        if saved is None:
            os.environ.pop("ISRFLOW_COMPRESSION", None)
        else:
            os.environ["ISRFLOW_COMPRESSION"] = saved
    none = figures["modes"]["none"]
    figures["pixels"] = int(
        frame.camera.assembled_shape(frame.detector)[0] * frame.camera.assembled_shape(frame.detector)[1]
    )
    for mode in MODES[1:]:
        m = figures["modes"][mode]
        m["ratio_vs_none"] = {
            "postISRCCD_bytes": round(none["postISRCCD"]["bytes"] / m["postISRCCD"]["bytes"], 2),
            **{
                f"{t}_bytes": round(none["masters"][t]["bytes"] / m["masters"][t]["bytes"], 2)
                for t in m["masters"]
            },
            "cold_read_bytes": round(none["cold_worker_bytes"]["read"] / m["cold_worker_bytes"]["read"], 2),
        }
        m["chi_change_vs_none"] = {
            "mean": round(m["chi"]["mean"] - none["chi"]["mean"], 5),
            "std": round(m["chi"]["std"] - none["chi"]["std"], 5),
        }
    print(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
