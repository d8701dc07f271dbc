"""The isrflow Python API, for notebooks and scripts (the CLI is a thin layer over it).

>>> from isrflow import Client
>>> client = Client.local("demo-repo")                       # or Client.aws(stack="isrflow")
>>> run = client.process_visit(where="exposure = 5000", output_run="u/me/run1").wait()
>>> run.detectors()                                           # astropy Table: status, seconds, MiB, ...
>>> run.cost().cost_usd, run.previews()["mosaics"]

Both backends have the same methods: :class:`~.local.LocalBackend` runs the template's state
machines on this machine against a repository directory (the embedded runtime; safe in a script
without an ``if __name__ == "__main__"`` guard and in Jupyter), :class:`~.aws.AwsBackend` starts
the deployed stack's. A query that selects nothing raises
:class:`~isrflow.model.errors.NothingSelectedError` before anything starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isrflow.client.execution import Execution
from isrflow.client.local import CollectionInfo, LocalBackend
from isrflow.model.defaults import DEFAULT_CLUSTER_SIZE
from isrflow.model.errors import ConfigError, IsrflowError

PROCESS_VISIT = "ProcessVisitStateMachine"
BUILD_CALIBRATION = "BuildCalibrationStateMachine"


@dataclass
class RerunPlan:
    """What ``rerun --failed`` would start: the failed quanta found, the new input (None when
    nothing failed), its name, and the unregistered files an aborted execution left (removed)."""

    found: Any  # isrflow.ops.rerun.FailedQuanta
    payload: dict | None
    name: str
    removed: list[str] = field(default_factory=list)

    @property
    def what(self) -> str:
        if self.found.aborted_before_plan:
            return "its whole input (it was killed before planning)"
        return f"{len(self.found.failed)} failed quanta"


class Client:
    """Ingest, query, run and inspect, locally or on AWS, with the same methods.

    Create one with :meth:`Client.local` (a repository directory on this machine: SQLite or
    PostgreSQL registry, file datastore, the embedded runtime) or :meth:`Client.aws` (a deployed
    stack). Safe in notebooks and in scripts without an ``if __name__ == "__main__"`` guard.

    Examples
    --------
    >>> client = Client.local("demo-repo")  # doctest: +SKIP
    >>> run = client.process_visit("instrument = 'HSC' AND exposure = 904030", "u/me/run1")  # doctest: +SKIP
    >>> run.wait().detectors()  # doctest: +SKIP
    """

    def __init__(self, backend):
        self.backend = backend

    @classmethod
    def local(cls, repo: str | Path, *, workers: int | None = None, create: bool = False) -> Client:
        """A repository directory on this machine (``create``: make it if it does not exist);
        ``workers``: Lambda worker processes (default: all cores)."""
        from isrflow.registry.repo import REPO_CONFIG

        if create and not (Path(repo) / REPO_CONFIG).exists():
            from isrflow.registry import create_repo

            create_repo(repo).close()
        return cls(LocalBackend(repo, workers=workers))

    @classmethod
    def aws(
        cls,
        stack: str = "isrflow",
        *,
        repo: str | Path | None = None,
        region: str | None = None,
        sfn=None,
        cfn=None,
        poll_s: float = 5.0,
    ) -> Client:
        """The deployed stack ``stack`` (boto3 credentials); ``repo``: a repository directory on the
        stack's registry, for datasets, collections, ingest and default collections."""
        from isrflow.client.aws import AwsBackend

        return cls(AwsBackend(stack, repo=repo, region=region, sfn=sfn, cfn=cfn, poll_s=poll_s))

    def __repr__(self) -> str:
        where = getattr(self.backend, "repo", None) if self.backend.kind == "local" else self.backend.stack
        return f"<isrflow.Client {self.backend.kind} {where}>"

    # ---------------------------------------------------------------- data

    def ingest(
        self,
        files: Sequence[str | Path],
        *,
        transfer: str = "copy",
        run: str | None = None,
        camera: str | None = None,
        progress: bool = True,
    ):
        """Register raw files (:func:`isrflow.registry.ingest`); returns its IngestResult."""
        from isrflow.infra.progress import Progress

        files = [str(f) for f in files]
        with Progress("ingest", len(files), enabled=progress) as bar:
            return self.backend.ingest(
                files, transfer=transfer, run=run, camera=camera, progress=lambda done, total: bar.set(done)
            )

    @staticmethod
    def upload_raws(destination: str, files: Sequence[str | Path], *, progress: bool = True) -> list[str]:
        """PUT raw files under ``<destination>/raw/`` (``s3://bucket[/prefix]``), where a deployed
        stack's ingest function registers each one (:func:`isrflow.infra.raw_upload.upload_raws`); returns
        the URIs written. Every file is checked (readable, FITS) before the first upload."""
        from isrflow.infra.progress import Progress
        from isrflow.infra.raw_upload import upload_raws

        files = [str(f) for f in files]
        with Progress("upload", len(files), enabled=progress) as bar:
            return upload_raws(destination, files, progress=lambda done, total: bar.set(done))

    def datasets(
        self,
        where: str | None = None,
        type: str | None = None,
        collections: Sequence[str] | str | None = None,
    ) -> list:
        """Datasets (DatasetRef; CertifiedRef in CALIBRATION collections) of a type in collections
        (default: every RUN) selected by a data query."""
        if isinstance(collections, str):
            collections = [collections]
        return self.backend.datasets(type, collections, where)

    def collections(self) -> list[CollectionInfo]:
        """Every collection (RUN, CALIBRATION, CHAINED) with its dataset count."""
        return self.backend.collections()

    # ---------------------------------------------------------------- runs

    def start(
        self,
        state_machine: str,
        payload: dict,
        *,
        name: str | None = None,
        total: int | None = None,
        containers=None,
    ) -> Execution:
        """Start a state machine with a ready input (what the specific methods below build)."""
        run = self.backend.start(state_machine, payload, name=name, containers=containers)
        if hasattr(run, "execution"):
            arn, ex_name = run.execution.execution_arn, run.execution.name
        else:
            arn = run.arn
            ex_name = arn.rsplit(":", 1)[-1]
        return Execution(
            self, name=ex_name, arn=arn, state_machine=state_machine.rsplit(":", 1)[-1], run=run, total=total
        )

    def _registry_call(self, fn):
        return self.backend.with_registry(fn)

    def process_visit(
        self,
        where: str | None = None,
        output_run: str | None = None,
        *,
        input_collections: Sequence[str] | None = None,
        calib_collection: str | None = None,
        mode: str = "fail",
        cluster_size: int = DEFAULT_CLUSTER_SIZE,
        max_failure_fraction: float = 0.0,
        isr_config: dict | None = None,
        previews: bool = False,
        name: str | None = None,
        wait: bool = False,
        progress: bool = True,
    ) -> Execution:
        """Run ISR on every detector the query selects (the ProcessVisit state machine)."""
        from isrflow.client.inputs import process_visit_input, selected_inputs

        if not output_run:
            raise ConfigError("process_visit needs an output_run (the RUN collection for the outputs)")
        if where is None and self.backend.kind == "local":
            raise ConfigError("process_visit needs a data query (where=...)")

        def prepare(registry):
            payload = process_visit_input(
                registry,
                where,
                None,
                input_collections,
                calib_collection,
                output_run,
                mode,
                cluster_size,
                max_failure_fraction,
                isr_config,
                previews=previews,
            )
            return payload, selected_inputs(registry, payload)

        prepared = self._registry_call(prepare)
        if prepared is None:  # AWS without a repository: no defaults, no check
            if not input_collections or not calib_collection:
                raise ConfigError("on AWS without a repository give input_collections and calib_collection")
            payload, total = (
                process_visit_input(
                    None,
                    where,
                    None,
                    input_collections,
                    calib_collection,
                    output_run,
                    mode,
                    cluster_size,
                    max_failure_fraction,
                    isr_config,
                    previews=previews,
                ),
                None,
            )
        else:
            payload, total = prepared
        execution = self.start(PROCESS_VISIT, payload, name=name, total=total)
        return execution.wait(progress) if wait else execution

    def calib_build(
        self,
        calib_type: str,
        where: str | None = None,
        output_run: str | None = None,
        *,
        input_collections: Sequence[str] = (),
        calib_collection: str | None = None,
        certify: bool = False,
        collection: str | None = None,
        begin=None,
        end=None,
        name: str | None = None,
        wait: bool = False,
        progress: bool = True,
        containers=None,
        **options,
    ) -> Execution:
        """Build master ``calib_type`` (bias, dark, flat, defects) per detector (BuildCalibration);
        ``certify``: certify them into ``collection`` for [begin, end). ``options``: statistic, clip,
        iterations, min_inputs, mode, route, isr_config, max_failure_fraction, keep_intermediates."""
        from isrflow.client.inputs import build_input, selected_inputs

        if not output_run:
            raise ConfigError("calib_build needs an output_run (the RUN collection for the masters)")

        def prepare(registry):
            payload = build_input(
                registry,
                calib_type,
                where,
                output_run,
                input_collections=input_collections,
                calib_collection=calib_collection,
                certify=certify,
                collection=collection,
                begin=begin,
                end=end,
                **options,
            )
            total = selected_inputs(registry, payload)
            if payload.get("certify"):  # the state machine certifies into an existing collection
                registry.register_collection(payload["certify"]["collection"], "CALIBRATION")
            return payload, total

        prepared = self._registry_call(prepare)
        if prepared is None:
            if (
                not input_collections
                or (calib_type in ("dark", "flat") and not calib_collection)
                or (certify and not collection)
            ):
                raise ConfigError(
                    "on AWS without a repository give input_collections, calib_collection (dark, "
                    "flat) and collection (with certify)"
                )
            from isrflow.model.messages import BuildCalibrationInput

            spec = {"collection": collection, "begin": begin, "end": end} if certify else None
            payload = BuildCalibrationInput(
                calib_type=calib_type,
                where=where,
                input_collections=list(input_collections),
                calib_collection=calib_collection,
                output_run=output_run,
                certify=spec,
                **{k: v for k, v in options.items() if v is not None},
            ).model_dump(mode="json", exclude_none=True)
            total = None
        else:
            payload, total = prepared
        execution = self.start(BUILD_CALIBRATION, payload, name=name, total=total, containers=containers)
        return execution.wait(progress) if wait else execution

    # ---------------------------------------------------------------- existing executions

    def execution(self, name_or_arn: str) -> Execution:
        """A handle on an execution that has already started (a name of a local one, or an ARN)."""
        desc = self.backend.describe(name_or_arn)
        arn = desc["executionArn"]
        return Execution(
            self, name=desc["name"], arn=arn, state_machine=desc["stateMachineArn"].rsplit(":", 1)[-1]
        )

    def executions(self) -> list:
        """The repository's execution records, newest first (local only)."""
        if self.backend.kind != "local":
            raise ConfigError(
                "listing executions is for local repositories; on AWS use the Step Functions console"
            )
        return self.backend.executions()

    def status(self, execution: str, *, prices: str | Path | None = None, progress=None):
        """The :class:`~isrflow.ops.status.ExecutionStatus` of an execution (name or ARN): per-detector
        rows, totals, usage and estimated AWS cost (``prices``: a price table YAML merged over the
        built-in one)."""
        return self.backend.status(execution, prices, progress)

    def plan_rerun(self, execution: str, *, dry_run: bool = False) -> RerunPlan:
        """What ``rerun_failed`` would start. Unless ``dry_run``, first applies what the registry
        queue still holds and removes the unregistered outputs of an aborted execution."""
        from isrflow.ops.rerun import failed_quanta, remove_unregistered_outputs, rerun_input, rerun_name

        repo = getattr(self.backend, "repo", None)
        if repo is not None and not dry_run:
            counts = self.backend.drain_registry_queue() if self.backend.kind == "local" else {}
            if counts.get("visible") or counts.get("in_flight"):
                raise IsrflowError(
                    f"the registry queue of {repo} still holds {counts['visible']} visible and "
                    f"{counts['in_flight']} in-flight messages; is another run using it?"
                )
        sfn = self.backend.sfn_for(execution) if self.backend.kind == "aws" else None
        found = failed_quanta(execution, repo, sfn)
        removed: list[str] = []
        if found.aborted and not dry_run and repo is not None:
            removed = list(remove_unregistered_outputs(repo, found.execution_arn) or [])
        if not found.failed and not found.aborted_before_plan:
            return RerunPlan(found=found, payload=None, name="", removed=removed)
        payload = rerun_input(
            found.input, found.failed, aborted_before_plan=found.aborted_before_plan
        ).model_dump(mode="json", exclude_none=True)
        return RerunPlan(found=found, payload=payload, name=rerun_name(found.name), removed=removed)

    def start_rerun(self, plan: RerunPlan) -> Execution | None:
        """Start the execution a :class:`RerunPlan` describes (None when it has nothing to rerun)."""
        if plan.payload is None:
            return None
        machine = plan.found.state_machine_arn
        if plan.found.source == "local":
            machine = machine.rsplit(":", 1)[-1]
        total = len(plan.payload.get("quanta") or []) or None
        return self.start(machine, plan.payload, name=plan.name, total=total)

    def rerun_failed(self, execution: str, *, wait: bool = False, progress: bool = True) -> Execution | None:
        """Rerun exactly the failed quanta of ``execution`` into the same output run (None when
        nothing failed); see :mod:`isrflow.ops.rerun`."""
        started = self.start_rerun(self.plan_rerun(execution))
        if started is not None and wait:
            started.wait(progress)
        return started

    def previews(
        self, output_run: str, where: str | None = None, *, progress: bool = True
    ) -> dict[str, list[str]]:
        """PNG per postISRCCD dataset of ``output_run`` (selected by ``where``) and a mosaic per exposure."""
        from isrflow.infra.progress import Progress
        from isrflow.model.errors import NothingSelectedError
        from isrflow.render.previews import write_run_previews

        refs = self.datasets(where=where, type="postISRCCD", collections=[output_run])
        if not refs:
            raise NothingSelectedError(
                f"no postISRCCD datasets in {output_run}" + (f" where {where}" if where else "")
            )
        with Progress("previews", len(refs), enabled=progress) as bar:
            pngs, mosaics = write_run_previews(refs, progress=lambda done, total: bar.set(done))
        return {"previews": pngs, "mosaics": mosaics}


__all__ = ["BUILD_CALIBRATION", "PROCESS_VISIT", "Client", "CollectionInfo", "Execution", "RerunPlan"]
