"""Helpers: a small local repository with simulated raws ingested and true calibrations certified."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from isrflow.infra.settings import ENV_DATASTORE_ROOT, ENV_REGISTRY_QUEUE_URL, ENV_REGISTRY_URL
from isrflow.local.queue import LocalQueue
from isrflow.registry import create_repo, ingest
from isrflow.registry.calib_import import import_calibrations
from isrflow.simulate import SimulationRequest, simulate

CALIB_RUN = "Generic/calib/truth"
CALIB_COLLECTION = "Generic/calib"


def visit_input(output_run: str, **extra) -> dict:
    """A ProcessVisit input over the small generic repository of :func:`make_repo`."""
    return {
        "where": "instrument = 'Generic'",
        "input_collections": ["Generic/raw/all"],
        "calib_collection": CALIB_COLLECTION,
        "output_run": output_run,
        "cluster_size": 2,
        **extra,
    }


@dataclass
class LocalRepo:
    root: Path
    registry: object
    queue: LocalQueue
    manifest: object  # SimulationManifest
    env: dict


def make_repo(tmp_path: Path, detectors=(0, 1), science=2, seed=3) -> LocalRepo:
    root = tmp_path / "repo"
    registry = create_repo(root)
    night = simulate(
        SimulationRequest(
            camera="generic",
            small=True,
            detectors=list(detectors),
            science=science,
            seed=seed,
            out=tmp_path / "sim",
        )
    )
    result = ingest(registry, [r.path for r in night.raws])
    assert result.ok, result.skipped
    files = []
    for cal in night.calibrations.values():
        files += [cal.bias, cal.dark, cal.defects, *cal.flat.values()]
    refs = import_calibrations(registry, files, CALIB_RUN)
    registry.register_collection(CALIB_COLLECTION, "CALIBRATION")
    registry.certify([r.id for r in refs], CALIB_COLLECTION, None, None)
    queue = LocalQueue(root / "queue.sqlite3", "registry")
    env = {
        ENV_DATASTORE_ROOT: str(registry.datastore_root),
        ENV_REGISTRY_QUEUE_URL: queue.url,
        ENV_REGISTRY_URL: registry.url,
    }
    return LocalRepo(root=root, registry=registry, queue=queue, manifest=night, env=env)
