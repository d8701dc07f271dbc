"""``isrflow demo``: a small night, end to end, on the embedded default (no AWS account).

1. create the repository (SQLite registry + file datastore) unless it exists;
2. simulate raws with their truth (``DIR/sim/<camera>``) and ingest them;
3. import the simulator's true calibrations into ``<INSTRUMENT>/calib/truth`` and certify
   them into ``<INSTRUMENT>/calib`` (until the calibration builder replaces them);
4. run the ProcessVisit state machine locally over every science detector, with progress;
5. print a per-detector table: status, ISR seconds, peak memory, and the residuals against
   the simulator's truth in units of the noise.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import click

from .options import IdList


def register(group: click.Group) -> None:
    group.add_command(demo_command)


def _prepare(repo: Path, camera: str, detectors: list[int], science: int, seed: int):
    from ..calib_import import import_calibrations
    from ..errors import CertificationConflictError
    from ..registry import create_repo, ingest, open_repo
    from ..registry.repo import REPO_CONFIG
    from ..simulate import SimulationRequest, load_manifest, simulate

    registry = open_repo(repo) if (repo / REPO_CONFIG).exists() else create_repo(repo)
    sim_dir = repo / "sim" / f"{camera}-{'-'.join(map(str, detectors))}-s{seed}"
    if (sim_dir / "manifest.json").exists():
        manifest = load_manifest(sim_dir)
        click.echo(f"reusing the simulated night in {sim_dir}")
    else:
        click.echo(f"simulating {science} {camera} science exposure(s) on detectors {','.join(map(str, detectors))} ...")
        t0 = time.perf_counter()
        manifest = simulate(SimulationRequest(camera=camera, detectors=detectors, science=science, seed=seed, out=sim_dir))
        click.echo(f"  {len(manifest.raws)} raw files in {time.perf_counter() - t0:.1f} s")
    result = ingest(registry, [r.path for r in manifest.raws])
    click.echo(f"ingested {len(result.ingested)} raws ({len(result.existing)} already there)")
    instrument = manifest.instrument
    files = [f for cal in manifest.calibrations.values() for f in (cal.bias, cal.dark, cal.defects, *cal.flat.values())]
    refs = import_calibrations(registry, files, f"{instrument}/calib/truth")
    registry.register_collection(f"{instrument}/calib", "CALIBRATION")
    try:
        registry.certify([r.id for r in refs], f"{instrument}/calib", None, None)
        click.echo(f"certified {len(refs)} true calibrations into {instrument}/calib")
    except CertificationConflictError:
        click.echo(f"true calibrations already certified in {instrument}/calib")
    return registry, manifest


def _residuals(registry, manifest, output_run: str) -> dict[tuple[int, int], tuple[float, float, float]]:
    """(exposure, detector) -> (chi mean, chi std, masked %) of each output against the truth."""
    from ..exposure_io import read_exposure
    from ..registry import uri_to_path
    from ..simulate import truth_residuals

    truth = {(r.exposure, d): p for r in manifest.raws for d, p in r.truth.items()}
    out = {}
    for ref in registry.query_datasets("postISRCCD", [output_run]):
        key = (ref.data_id["exposure"], ref.data_id["detector"])
        if key in truth:
            exposure = read_exposure(uri_to_path(ref.uri))
            chi = truth_residuals(exposure, truth[key])
            out[key] = (float(chi.mean()), float(chi.std()), 100.0 * float((exposure.mask != 0).mean()))
    return out


@click.command("demo")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-repo"), show_default=True)
@click.option("--camera", type=click.Choice(["hsc", "lsstcam", "decam", "generic"]), default="hsc", show_default=True)
@click.option("--detectors", type=IdList(), default=None, help="native ids (default 0-3; DECam 1-4)")
@click.option("--science", type=click.IntRange(1), default=2, show_default=True, help="science exposures")
@click.option("--workers", type=click.IntRange(1), default=None, help="processes (default: all cores)")
@click.option("--seed", type=int, default=1, show_default=True)
def demo_command(repo, camera, detectors, science, workers, seed):
    """Simulate a small night, ingest it, certify its calibrations and run ProcessVisit locally."""
    from .run_cmds import process_visit_input, run_local

    detectors = detectors or ([1, 2, 3, 4] if camera == "decam" else [0, 1, 2, 3])
    repo = repo.absolute()
    registry, manifest = _prepare(repo, camera, detectors, science, seed)
    instrument = manifest.instrument
    run = f"{instrument}/runs/demo-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    exposures = sorted({r.exposure for r in manifest.raws_of("science")})
    where = (f"instrument = '{instrument}' AND exposure IN ({', '.join(map(str, exposures))}) "
             f"AND detector IN ({', '.join(map(str, detectors))})")
    payload = process_visit_input(registry, where, None, [], None, run, "fail", 2, 0.0, {})
    click.echo(f"running ProcessVisit locally: {where}")
    t0 = time.perf_counter()
    execution = run_local(repo, payload, workers)
    wall = time.perf_counter() - t0
    records = {(r["exposure"], r["detector"]): r for r in registry.processing_records(execution.execution_arn)}
    residuals = _residuals(registry, manifest, run)
    click.echo(f"{'exposure':>10} {'det':>4} {'status':>10} {'isr s':>6} {'peak MiB':>9} {'masked%':>8} "
               f"{'chi mean':>9} {'chi std':>8}")
    for key in sorted(records):
        r = records[key]
        mean, std, masked = residuals.get(key, (float("nan"),) * 3)
        click.echo(f"{key[0]:>10} {key[1]:>4} {r['status']:>10} {r['duration_s'] or 0:>6.2f} "
                   f"{r['peak_memory_mb'] or 0:>9.0f} {masked:>8.3f} {mean:>9.4f} {std:>8.4f}")
    click.echo(f"execution {execution.status} in {wall:.1f} s wall: {execution.execution_arn}")
    click.echo("(image - truth)/sigma over unmasked pixels should have mean ~0 and std ~1.")
    click.echo(f"outputs: run {run} under {repo}; try `isrflow datasets --repo {repo} --type postISRCCD`")
    if execution.status != "SUCCEEDED":
        raise click.ClickException(f"{execution.error}: {execution.cause}")
