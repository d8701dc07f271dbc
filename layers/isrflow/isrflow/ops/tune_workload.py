"""The workloads ``isrflow tune`` runs a function on: real events against a real repository.

- **IsrFunction** (ProcessVisit's worker): the real Plan handler plans a ProcessVisit input
  (``--repo`` + ``--where``, or :func:`simulated_repo`: a fresh repository with simulated science
  raws and the simulator's true calibrations certified) and every cluster of its manifest
  becomes one worker event, as the ProcessClusters map's ItemSelector builds it;
- **any function**: events given as JSON (``--event FILE``).

Nothing lands in the repository: the functions get a scratch datastore root (Plan writes the
manifest there and plans the outputs there, so the worker writes its outputs there too) and a
scratch registry queue that nothing drains. Inputs (raws, calibrations) are read where the
registry says they are.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from isrflow.infra.settings import (
    ENV_DATASTORE_ROOT,
    ENV_REGISTRY_QUEUE_URL,
    ENV_REGISTRY_SECRET_ARN,
    ENV_REGISTRY_URL,
)
from isrflow.io.storage import storage_for
from isrflow.local.lambdas import LocalFunction, invoke_here
from isrflow.local.queue import LocalQueue
from isrflow.local.runtime import PROJECT_ROOT, storage_root
from isrflow.local.sam_template import LocalApp, load_app
from isrflow.model.errors import ConfigError
from isrflow.model.messages import IsrClusterEvent, PlanResult
from isrflow.registry.repo import read_repo_config


def template_app(template: Path | None = None) -> LocalApp:
    return load_app(template or PROJECT_ROOT / "template.yaml")


def find_function(app: LocalApp, key: str):
    """A template function by logical id (``IsrFunction``), local name, or its code directory
    (``isr``), case-insensitively."""
    try:
        return app.function(key)
    except KeyError:
        pass
    wanted = key.lower()
    for spec in app.functions.values():
        if wanted in (spec.logical_id.lower(), spec.logical_id.lower().removesuffix("function")):
            return spec
    known = ", ".join(sorted(app.functions))
    raise ConfigError(f"no function {key!r} in {app.template_path}; known: {known}")


def scratch_env(repo: Path, scratch: Path) -> dict[str, str]:
    """The local services' settings for the tuned functions: the repository's registry, a scratch
    datastore root and a scratch registry queue."""
    config = read_repo_config(repo)
    datastore = scratch / "datastore"
    datastore.mkdir(parents=True, exist_ok=True)
    queue = LocalQueue(scratch / "queue.sqlite3", "tune-registry")
    return {
        ENV_DATASTORE_ROOT: storage_root(str(datastore)),
        ENV_REGISTRY_QUEUE_URL: queue.url,
        ENV_REGISTRY_URL: config.registry_url(repo),
        ENV_REGISTRY_SECRET_ARN: "",
    }


def local_function(spec, env: dict[str, str]) -> LocalFunction:
    """The local runtime's invocable form of a template function, with ``env`` over its environment."""
    return LocalFunction(
        name=spec.name,
        handler_file=str(spec.handler_file),
        handler_attr=spec.handler_attribute,
        environment=dict(spec.environment) | env,
        timeout_s=float(spec.timeout_s),
        memory_mb=spec.memory_mb,
    )


def simulated_repo(
    scratch: Path, *, camera: str, detectors: list[int], exposures: int, small: bool = False, seed: int = 1
) -> tuple[Path, str]:
    """(repository, instrument): a fresh repository with ``exposures`` simulated science exposures
    of ``detectors`` and the simulator's true calibrations certified (unbounded) into
    ``<INSTRUMENT>/calib``."""
    from isrflow.registry import create_repo
    from isrflow.registry.calib_import import import_calibrations
    from isrflow.registry.ingest import ingest
    from isrflow.simulate import SimulationRequest, simulate

    repo = scratch / "repo"
    registry = create_repo(repo)
    try:
        manifest = simulate(
            SimulationRequest(
                camera=camera,
                detectors=detectors,
                science=exposures,
                seed=seed,
                out=scratch / "sim",
                small=small,
            )
        )
        result = ingest(registry, [r.path for r in manifest.raws], "direct")
        if not result.ok:
            raise ConfigError(f"tune: the simulated raws could not be ingested: {result.skipped[:3]}")
        files = [
            f for c in manifest.calibrations.values() for f in (c.bias, c.dark, c.defects, *c.flat.values())
        ]
        refs = import_calibrations(registry, files, f"{manifest.instrument}/calib/truth")
        registry.register_collection(f"{manifest.instrument}/calib", "CALIBRATION")
        registry.certify([r.id for r in refs], f"{manifest.instrument}/calib", None, None)
    finally:
        registry.close()
    return repo, manifest.instrument


def isr_events(app: LocalApp, visit_input: dict, env: dict[str, str]) -> tuple[list[dict], int]:
    """(worker events, quanta): the real Plan handler plans ``visit_input`` (a ProcessVisitInput
    as JSON) into the scratch datastore; each cluster of its manifest becomes one IsrFunction
    event, with the fields the ProcessClusters ItemSelector gives it."""
    plan_fn = local_function(find_function(app, "PlanFunction"), env)
    execution_id = f"arn:aws:states:local:000000000000:execution:tune:{uuid.uuid4().hex[:12]}"
    status, value = invoke_here(plan_fn, {"input": visit_input, "execution_id": execution_id})
    if status != "ok":
        raise ConfigError(f"tune: Plan failed: {value[0]}: {value[1]}")
    plan = PlanResult.model_validate(value)
    if plan.clusters == 0:
        raise ConfigError(
            f"tune: the query selects no detector to process ({plan.failed_at_plan} failed at plan, "
            f"{plan.skipped_existing} existing)"
        )
    clusters = json.loads(storage_for(plan.manifest_uri).read_bytes(plan.manifest_uri))
    events = [
        IsrClusterEvent(
            cluster=c,
            execution_id=plan.execution_id,
            results_prefix=plan.results_prefix,
            output_run=plan.output_run,
            isr_config=plan.isr_config,
            previews=plan.previews,
        ).model_dump(mode="json")
        for c in clusters
    ]
    return events, plan.quanta


def events_from_file(path: Path) -> list[dict]:
    """A JSON event, or a JSON list of events."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the event ({exc.strerror})") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from None
    events = data if isinstance(data, list) else [data]
    if not events or not all(isinstance(e, dict) for e in events):
        raise ConfigError(f"{path}: an event is a JSON object (or a list of them)")
    return events


__all__ = [
    "events_from_file",
    "find_function",
    "isr_events",
    "local_function",
    "scratch_env",
    "simulated_repo",
    "template_app",
]
