"""``isrflow isr``: instrument signature removal of one detector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from isrflow.cli.options import camera_option


def register(group: click.Group) -> None:
    group.add_command(isr_command)


_calib: dict[str, Any] = {"type": click.Path(dir_okay=False, path_type=Path), "default": None}


@click.command("isr")
@click.argument("raw", type=click.Path(dir_okay=False, path_type=Path))
@camera_option
@click.option("--detector", default=None, help="detector id or name (needed for multi-detector files)")
@click.option("--bias", **_calib, help="bias calibration (e-)")
@click.option("--dark", **_calib, help="dark calibration (e-/s)")
@click.option("--flat", **_calib, help="flat calibration")
@click.option("--defects", **_calib, help="defects table")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="IsrConfig YAML/JSON",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="output MEF")
def isr_command(raw, camera, detector, bias, dark, flat, defects, config_path, out):
    """Run ISR on one detector of RAW and write IMAGE/MASK/VARIANCE to OUT.

    Steps whose calibration is not given are skipped and recorded as not applied. Calibrations
    made by other tools (a plain FITS image, no DETECTOR keyword) are accepted with a warning.
    """
    from isrflow.io.exposure_io import write_exposure
    from isrflow.io.rawio import read_raw
    from isrflow.isr import IsrConfig, run_isr
    from isrflow.isr.calib_foreign import load_foreign_calibrations

    config = IsrConfig.from_file(config_path) if config_path else IsrConfig()
    det = int(detector) if detector is not None and str(detector).isdigit() else detector
    frame = read_raw(raw, camera=camera, detector=det)
    calibs, warnings = load_foreign_calibrations(
        frame.detector.id, bias=bias, dark=dark, flat=flat, defects=defects
    )
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    result = run_isr(frame, calibs, config)
    write_exposure(out, result)
    click.echo(
        f"{out}: {frame.obs.instrument} exposure {frame.obs.exposure} detector {frame.obs.detector} "
        f"({frame.obs.detector_name}); steps {result.header['ISRSTEPS']}"
    )
