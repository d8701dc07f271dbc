"""``isrflow demo``: a small night, end to end, on the embedded default (no AWS account).

1. create the repository (SQLite registry + file datastore) unless it exists;
2. simulate bias, dark, flat and science raws with their truth (``DIR/sim/<camera>``) and
   ingest them;
3. build the master bias, dark, flat and defects of every detector with the BuildCalibration
   state machine (each certified, unbounded, into a fresh CALIBRATION collection
   ``<INSTRUMENT>/calib/demo-<time>`` before the next type is built from it), printing how well
   each master matches the simulator's truth; ``--true-calibrations`` certifies the
   simulator's true calibrations instead (faster, and a reference to compare with);
4. run the ProcessVisit state machine locally over every science detector with those
   calibrations, with progress;
5. print a per-detector table: status, ISR seconds, peak memory, and the residuals against
   the simulator's truth in units of the noise, and what the repository now holds on disk.

Disk: the raws are ingested as links to the simulated files, the ISR'd calibration inputs
(cpBiasProc, cpDarkProc, cpFlatProc) are deleted by BuildCalibration once their master is built,
and products are tile-compressed (:mod:`isrflow.io.compression`). A second run reuses the
simulated night but adds its own calibration and output runs (:func:`disk_usage` says how much).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click

from isrflow.cli.options import IdList, frames, workers_option
from isrflow.model.defaults import DEFAULT_CLUSTER_SIZE


def register(group: click.Group) -> None:
    group.add_command(demo_command)


def _prepare(
    repo: Path,
    camera: str,
    detectors: list[int],
    science: int,
    seed: int,
    frames: dict[str, int],
    true_calibrations: bool,
    small: bool = False,
):
    from isrflow.model.errors import CertificationConflictError
    from isrflow.registry import create_repo, open_repo
    from isrflow.registry.calib_import import import_calibrations
    from isrflow.registry.ingest import ingest
    from isrflow.registry.repo import REPO_CONFIG
    from isrflow.simulate import SimulationRequest, load_manifest, simulate

    registry = open_repo(repo) if (repo / REPO_CONFIG).exists() else create_repo(repo)
    counts = "-".join(f"{k[0]}{v}" for k, v in (frames | {"science": science}).items())
    sim_dir = (
        repo / "sim" / f"{camera}-{'-'.join(map(str, detectors))}-s{seed}-{counts}{'-small' if small else ''}"
    )
    if (sim_dir / "manifest.json").exists():
        manifest = load_manifest(sim_dir)
        click.echo(f"reusing the simulated night in {sim_dir}")
    else:
        click.echo(
            f"simulating {frames['bias']} bias, {frames['dark']} dark, {frames['flat']} flat and {science} "
            f"science {camera} exposure(s) on detectors {','.join(map(str, detectors))} ..."
        )
        t0 = time.perf_counter()
        manifest = simulate(
            SimulationRequest(
                camera=camera,
                detectors=detectors,
                science=science,
                seed=seed,
                out=sim_dir,
                small=small,
                **frames,
            )
        )
        click.echo(f"  {len(manifest.raws)} raw files in {time.perf_counter() - t0:.1f} s")
    # linked, not copied: the simulated raws already live in the repository (sim/), once is enough
    result = ingest(registry, [r.path for r in manifest.raws], "link")
    click.echo(f"ingested {len(result.ingested)} raws ({len(result.existing)} already there)")
    if true_calibrations:
        instrument = manifest.instrument
        files = [
            f
            for cal in manifest.calibrations.values()
            for f in (cal.bias, cal.dark, cal.defects, *cal.flat.values())
        ]
        refs = import_calibrations(registry, files, f"{instrument}/calib/truth")
        registry.register_collection(f"{instrument}/calib", "CALIBRATION")
        try:
            registry.certify([r.id for r in refs], f"{instrument}/calib", None, None)
            click.echo(f"certified {len(refs)} true calibrations into {instrument}/calib")
        except CertificationConflictError:
            click.echo(f"true calibrations already certified in {instrument}/calib")
    return registry, manifest


def _readable(uri: str) -> Path:
    """A local path holding the dataset at ``uri`` (s3:// objects are fetched to a temporary file)."""
    from isrflow.registry import uri_to_path

    if not uri.startswith("s3://"):
        return uri_to_path(uri)
    import atexit
    import shutil
    import tempfile

    from isrflow.io.storage import storage_for

    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = Path(tempfile.mkdtemp(prefix="isrflow-demo-"))
        atexit.register(shutil.rmtree, _SCRATCH, True)
    path = _SCRATCH / uri.rsplit("/", 1)[-1]
    path.write_bytes(storage_for(uri).read_bytes(uri))
    return path


_SCRATCH: Path | None = None


def _truth_check(calib_type: str, uri: str, manifest, detector: int) -> str:
    """How a built master compares with the simulator's truth (a short text)."""
    import numpy as np

    from isrflow.io.exposure_io import read_defects, read_exposure

    truth = manifest.calibrations[detector]
    if calib_type == "defects":
        boxes, _ = read_defects(_readable(uri))
        true_boxes, _ = read_defects(truth.defects)
        shape = read_exposure(truth.bias).image.shape
        found, real = np.zeros(shape, bool), np.zeros(shape, bool)
        for b in boxes:
            found[b.slices] = True
        for b in true_boxes:
            real[b.slices] = True
        return f"{found[real].mean() * 100:.1f}% of the true defect pixels found, {int((found & ~real).sum())} others"
    built = read_exposure(_readable(uri))
    if calib_type == "flat":
        ratio = built.image / read_exposure(next(iter(truth.flat.values()))).image
        good = (built.mask == 0) & np.isfinite(ratio)
        return f"flat / true response: median {np.median(ratio[good]):.4f}, robust scatter {np.subtract(*np.percentile(ratio[good], [75, 25])) * 0.7413:.4f}"
    expected = read_exposure(truth.bias if calib_type == "bias" else truth.dark).image
    assert built.variance is not None, f"{uri}: a master has a VARIANCE plane"
    chi = (built.image - expected) / np.sqrt(built.variance)
    good = built.mask == 0
    return f"(master - truth)/sigma: mean {chi[good].mean():.3f}, std {chi[good].std():.3f}"


def _build_calibrations(
    repo: Path, registry, manifest, detectors: list[int], stamp: str, workers, containers=None
) -> str:
    """Build and certify bias, dark, flat and defects; returns the CALIBRATION collection."""
    from isrflow.cli.calib_cmds import build_input, build_local

    instrument = manifest.instrument
    collection = f"{instrument}/calib/demo-{stamp}"
    runs: dict[str, str] = {}
    click.echo(MASTERS_EXPLAINED)
    for calib_type in ("bias", "dark", "flat", "defects"):
        run = f"{collection}/{calib_type}"
        if calib_type == "defects":
            where = f"instrument = '{instrument}' AND detector IN ({', '.join(map(str, detectors))})"
            payload = build_input(
                registry,
                calib_type,
                where,
                run,
                input_collections=[runs["dark"], runs["flat"]],
                certify=True,
                collection=collection,
            )
        else:
            exposures = sorted({r.exposure for r in manifest.raws_of(calib_type)})
            where = (
                f"instrument = '{instrument}' AND exposure IN ({', '.join(map(str, exposures))}) "
                f"AND detector IN ({', '.join(map(str, detectors))})"
            )
            payload = build_input(
                registry,
                calib_type,
                where,
                run,
                calib_collection=collection,
                certify=True,
                collection=collection,
            )
        where_run = "in the Lambda containers" if containers is not None else "locally"
        click.echo(f"building {calib_type} with BuildCalibration {where_run} ...")
        t0 = time.perf_counter()
        execution = build_local(repo, payload, workers, containers=containers)
        if execution.status != "SUCCEEDED":
            raise click.ClickException(f"{calib_type}: {execution.error}: {execution.cause}")
        summary = execution.output
        click.echo(
            f"  {summary['succeeded']} {calib_type} masters in {time.perf_counter() - t0:.1f} s, certified "
            f"{summary['certified']} into {collection}{_deleted_text(execution)}"
        )
        for uri in summary["outputs"]:
            detector = next(d for d in detectors if uri.endswith(f"_{d}.fits"))
            click.echo(f"    detector {detector:>3}: {_truth_check(calib_type, uri, manifest, detector)}")
        runs[calib_type] = run
    _point_default_chain(registry, instrument, collection)
    return collection


#: Printed before the masters' comparisons with the truth, so the numbers can be read.
MASTERS_EXPLAINED = (
    "each master is compared with the simulator's truth below: for bias and dark, (master - truth)/sigma over the\n"
    "  unmasked pixels (mean ~0, std ~1 when the master is right); the flats are normalised to a mean response of 1\n"
    "  over the focal plane, so flat / true response is one constant near 1 for every detector, with a small\n"
    "  scatter; for defects, the share of the true defect pixels found"
)

#: Printed before the per-detector table of ProcessVisit.
RESIDUALS_EXPLAINED = (
    "per detector: status, ISR seconds and peak memory of the ISR function, the masked share of pixels, and\n"
    "  chi = (image - truth)/sigma over the unmasked pixels: chi mean ~0 means no bias left over, chi std ~1 means\n"
    "  the residuals are just the expected noise (above 1: a signature not removed or a variance underestimated)"
)


def _point_default_chain(registry, instrument: str, collection: str) -> None:
    """Make ``<INSTRUMENT>/calib`` (the default calibration collection, and the one
    events/process_visit_input.json names) a chain to the calibrations just built, unless it
    is a collection of another type (the true calibrations of ``--true-calibrations``)."""
    default = f"{instrument}/calib"
    if registry.collection_type(default) in (None, "CHAINED"):
        registry.set_chain(default, [collection])
        click.echo(f"{default} now points at {collection} (the default calibration collection)")


def _deleted_text(execution) -> str:
    """What the execution's DeleteIntermediates state removed, as a clause ('' if it did not run)."""
    from isrflow.local.usage import state_output

    deleted = (state_output(execution.history, "DeleteIntermediates") or {}).get("intermediates")
    n = ((deleted or {}).get("result") or {}).get("deleted", 0)
    return f"; {n} intermediate frames deleted" if n else ""


def disk_usage(path: Path) -> int:
    """Bytes the files under ``path`` occupy on disk, like ``du``: allocated blocks, symbolic links
    not followed, a file with several hard links (the calibration cache's copies) counted once."""
    import os

    total, seen = 0, set()
    for root, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:  # removed while walking
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _flat_scale(registry, manifest, calib_collection: str | None) -> float:
    """The focal-plane constant between the built flats and the simulator's true response: the
    flats are normalised to a mean response of 1 over the focal plane (cp_pipe's convention),
    the simulator's response is absolute, so every ISR'd image is the truth divided by this one
    number (1 with the true calibrations)."""
    import numpy as np

    from isrflow.io.exposure_io import read_exposure

    if calib_collection is None:
        return 1.0
    ratios = []
    for ref in registry.query_datasets("flat", [calib_collection]):
        truth = manifest.calibrations.get(ref.data_id["detector"])
        if truth is not None and ref.data_id["physical_filter"] in truth.flat:
            built = read_exposure(_readable(ref.uri))
            ratio = built.image / read_exposure(truth.flat[ref.data_id["physical_filter"]]).image
            ratios.append(float(np.median(ratio[(built.mask == 0) & np.isfinite(ratio)])))
    return float(np.median(ratios)) if ratios else 1.0


def _residuals(
    registry, manifest, output_run: str, scale: float = 1.0
) -> dict[tuple[int, int], tuple[float, float, float]]:
    """(exposure, detector) -> (chi mean, chi std, masked %) of each output against the truth
    (the output multiplied by ``scale``, the flats' normalisation constant)."""
    from isrflow.io.exposure_io import read_exposure
    from isrflow.simulate import truth_residuals

    truth = {(r.exposure, d): p for r in manifest.raws for d, p in r.truth.items()}
    out = {}
    for ref in registry.query_datasets("postISRCCD", [output_run]):
        key = (ref.data_id["exposure"], ref.data_id["detector"])
        if key in truth:
            exposure = read_exposure(_readable(ref.uri))
            assert exposure.variance is not None and exposure.mask is not None, (
                f"{ref.uri}: postISRCCD planes"
            )
            if scale != 1.0:
                exposure.image *= scale
                exposure.variance *= scale * scale
            chi = truth_residuals(exposure, truth[key])
            out[key] = (float(chi.mean()), float(chi.std()), 100.0 * float((exposure.mask != 0).mean()))
    return out


@click.command("demo")
@click.option(
    "--repo", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-repo"), show_default=True
)
@click.option(
    "--camera", type=click.Choice(["hsc", "lsstcam", "decam", "generic"]), default="hsc", show_default=True
)
@click.option("--detectors", type=IdList(), default=None, help="native ids (default 0-3; DECam 1-4)")
@click.option(
    "--science",
    type=frames(1),
    default=DEFAULT_CLUSTER_SIZE,
    show_default=True,
    help="science exposures (the default fills one ISR cluster per detector)",
)
@click.option("--bias", "n_bias", type=frames(1), default=5, show_default=True, help="bias exposures")
@click.option("--dark", "n_dark", type=frames(1), default=5, show_default=True, help="dark exposures")
@click.option("--flat", "n_flat", type=frames(1), default=5, show_default=True, help="flat exposures")
@click.option(
    "--true-calibrations",
    is_flag=True,
    help="certify the simulator's true calibrations instead of building them",
)
@workers_option
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--small", is_flag=True, help="with --camera generic: tiny frames (a quick check of the whole flow)"
)
@click.option(
    "--containers",
    is_flag=True,
    help="run every function in its Lambda container (sam local start-lambda), data in moto's S3, the queue "
    "in moto's SQS, the registry in PostgreSQL (--registry)",
)
@click.option(
    "--registry",
    "registry_base",
    default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
    show_default=True,
    help="with --containers: the PostgreSQL database (a new schema is made in it)",
)
def demo_command(
    repo,
    camera,
    detectors,
    science,
    n_bias,
    n_dark,
    n_flat,
    true_calibrations,
    workers,
    seed,
    small,
    containers,
    registry_base,
):
    """Simulate a small night, build and certify its calibrations, run ProcessVisit locally."""
    detectors = detectors or ([1, 2, 3, 4] if camera == "decam" else [0, 1, 2, 3])
    repo = repo.absolute()
    frames = (
        {"bias": n_bias, "dark": n_dark, "flat": n_flat}
        if not true_calibrations
        else {"bias": 0, "dark": 0, "flat": 0}
    )
    registry, manifest = _prepare(repo, camera, detectors, science, seed, frames, true_calibrations, small)
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S}"
    if not containers:
        _calibrate_process_report(
            repo, registry, manifest, detectors, stamp, workers, true_calibrations, None
        )
        return
    from isrflow.cli.demo_containers import containers_demo

    with containers_demo(repo, manifest, registry_base, stamp) as (crepo, cregistry, session):
        _calibrate_process_report(
            crepo, cregistry, manifest, detectors, stamp, workers, true_calibrations, session
        )
        _print_container_figures(session.reports())


def next_steps(repo: Path, execution: str, run: str) -> str:
    """What to try after the demo: the status table, the previews and the notebook."""
    return (
        f"next:\n  isrflow status {execution} --repo {repo}      per-detector table and estimated AWS cost\n"
        f"  isrflow preview --repo {repo} --collection {run}      PNG per detector and a focal-plane mosaic\n"
        "  docs/notebooks/quickstart.ipynb      the same flow from Python (from isrflow import Client)"
    )


def _print_container_figures(reports: list[dict]) -> None:
    """Cold start, duration and peak memory per function, as measured inside the containers."""
    from isrflow.cli.demo_containers import summarize_reports

    click.echo(
        f"{'function':>24} {'invocations':>11} {'init ms':>8} {'median ms':>10} {'max ms':>8} {'peak MiB':>9}"
    )
    for row in summarize_reports(reports):
        click.echo(
            f"{row['function']:>24} {row['invocations']:>11} {row['init_ms']:>8.0f} {row['median_ms']:>10.0f} "
            f"{row['max_ms']:>8.0f} {row['peak_mb']:>9.1f}"
        )


def _calibrate_process_report(
    repo: Path, registry, manifest, detectors, stamp, workers, true_calibrations, containers
) -> None:
    """Build the calibrations (unless true ones are used), run ProcessVisit, print the residual table."""
    from isrflow.cli.run_cmds import process_visit_input, run_local

    instrument = manifest.instrument
    calib_collection = (
        None
        if true_calibrations
        else _build_calibrations(repo, registry, manifest, detectors, stamp, workers, containers)
    )
    run = f"{instrument}/runs/demo-{stamp}"
    exposures = sorted({r.exposure for r in manifest.raws_of("science")})
    where = (
        f"instrument = '{instrument}' AND exposure IN ({', '.join(map(str, exposures))}) "
        f"AND detector IN ({', '.join(map(str, detectors))})"
    )
    payload = process_visit_input(
        registry, where, None, [], calib_collection, run, "fail", DEFAULT_CLUSTER_SIZE, 0.0, {}
    )
    where_run = "in the Lambda containers" if containers is not None else "locally"
    click.echo(f"running ProcessVisit {where_run} with {payload['calib_collection']}: {where}")
    t0 = time.perf_counter()
    execution = run_local(repo, payload, workers, containers=containers)
    wall = time.perf_counter() - t0
    records = {
        (r["exposure"], r["detector"]): r for r in registry.processing_records(execution.execution_arn)
    }
    scale = _flat_scale(registry, manifest, calib_collection)
    if scale != 1.0:
        click.echo(
            f"the built flats are normalised to a mean response of 1 over the focal plane: the true response is "
            f"{1 / scale:.4f} of it, so the outputs are compared with the truth after multiplying by {scale:.4f}"
        )
    residuals = _residuals(registry, manifest, run, scale)
    click.echo(RESIDUALS_EXPLAINED)
    click.echo(
        f"{'exposure':>10} {'det':>4} {'status':>10} {'isr s':>6} {'peak MiB':>9} {'masked%':>8} "
        f"{'chi mean':>9} {'chi std':>8}"
    )
    for key in sorted(records):
        r = records[key]
        mean, std, masked = residuals.get(key, (float("nan"),) * 3)
        click.echo(
            f"{key[0]:>10} {key[1]:>4} {r['status']:>10} {r['duration_s'] or 0:>6.2f} "
            f"{r['peak_memory_mb'] or 0:>9.0f} {masked:>8.3f} {mean:>9.4f} {std:>8.4f}"
        )
    click.echo(f"execution {execution.status} in {wall:.1f} s wall: {execution.execution_arn}")
    if containers is None:
        click.echo(f"outputs: run {run} under {repo}; try `isrflow datasets --repo {repo} --type postISRCCD`")
        click.echo(
            f"{repo} holds {disk_usage(repo) / 1e9:.2f} GB on disk; each further run adds its own calibration "
            "and output runs (delete the directory to start over)"
        )
        click.echo(next_steps(repo, execution.name, run))
    else:
        click.echo(f"outputs: run {run} in s3://{containers.stack.bucket} on moto (gone with this command)")
    if execution.status != "SUCCEEDED":
        raise click.ClickException(f"{execution.error}: {execution.cause}")
