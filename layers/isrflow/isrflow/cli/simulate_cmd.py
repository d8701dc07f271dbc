"""``isrflow simulate``: realistic raws with known truth."""

from __future__ import annotations

import json
from pathlib import Path

import click

from isrflow.cli.options import IdList, frames, json_option, workers_option


def register(group: click.Group) -> None:
    group.add_command(simulate_command)


@click.command("simulate")
@click.option(
    "--camera",
    type=click.Choice(["hsc", "lsstcam", "decam", "generic"], case_sensitive=False),
    default="generic",
    show_default=True,
)
@click.option("--small", is_flag=True, help="tiny frames of the generic camera (milliseconds to process)")
@click.option(
    "--detectors", type=IdList(), default="0", show_default=True, help="native detector ids, e.g. 0-3,7"
)
@click.option("--bias", type=frames(0), default=0, help="number of bias exposures")
@click.option("--dark", type=frames(0), default=0, help="number of dark exposures")
@click.option("--flat", type=frames(0), default=0, help="number of flat exposures")
@click.option("--science", type=frames(0), default=0, help="number of science exposures")
@click.option("--filter", "band", default="r", show_default=True, help="band of the flats and science frames")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--nonlinearity", is_flag=True, help="apply the camera's non-linearity (inverse of its polynomial)"
)
@click.option("--crosstalk", is_flag=True, help="inject the camera's crosstalk")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@workers_option
@json_option
def simulate_command(
    camera,
    small,
    detectors,
    bias,
    dark,
    flat,
    science,
    band,
    seed,
    nonlinearity,
    crosstalk,
    out,
    workers,
    as_json,
):
    """Write simulated raws, their noiseless truth and the true calibrations to OUT.

    Frames are made by a pool of ``--workers`` processes (default: all cores; in-process for a
    few small frames); the files are the same whatever the number of workers."""
    from isrflow.simulate import SimulationRequest, simulate

    if small:
        camera = "generic"
    from isrflow.infra.progress import Progress

    with Progress("simulate", bias + dark + flat + science, enabled=not as_json) as bar:
        manifest = simulate(
            SimulationRequest(
                camera=camera.lower(),
                small=small,
                detectors=detectors,
                bias=bias,
                dark=dark,
                flat=flat,
                science=science,
                filter=band,
                seed=seed,
                out=out,
                nonlinearity=nonlinearity,
                crosstalk=crosstalk,
            ),
            progress=lambda done, total: bar.set(done),
            workers=workers,
        )
    if as_json:
        click.echo(json.dumps(manifest.model_dump(mode="json"), indent=1))
    else:
        click.echo(
            f"wrote {len(manifest.raws)} raw files for {manifest.instrument} detectors "
            f"{','.join(map(str, detectors))} to {out / 'raw'}; truth in {out / 'truth'}; "
            f"manifest {out / 'manifest.json'}"
        )
