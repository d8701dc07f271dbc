"""Registry commands: ``repo create``, ``ingest``, ``datasets``, ``calib certify``.

These commands run without a state machine, so they write to the registry directly and
synchronously (one transaction per file for ingest, one for a certification).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from isrflow.cli.options import subgroup, workers_option
from isrflow.model.errors import RegistryError

#: Exit code of ``isrflow ingest`` when some files were skipped (not raws, conflicts).
EXIT_SKIPPED = 3


def _parse_time(value: str | None, what: str) -> datetime | None:
    """ISO 8601 -> aware UTC datetime; naive times are UTC; None/'' -> None (unbounded)."""
    if value is None or value.strip() == "":
        return None
    try:
        stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-11-20T00:00:00)", param_hint=what
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.astimezone(UTC)


_repo_option = click.option(
    "--repo",
    "repo_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Repository directory (holds isrflow-repo.yaml); for ingest also s3://bucket[/prefix], a stack's "
    "data bucket (uploads under raw/).",
)


def _upload_to_stack(destination: str, files, transfer: str, run: str | None, camera: str | None) -> None:
    """``ingest --repo s3://bucket[/prefix]``: upload under raw/, where the stack's ingest function
    registers each file (see :mod:`isrflow.infra.raw_upload`)."""
    from isrflow.client import Client

    if run or camera or transfer != "copy":
        raise click.UsageError(
            "with --repo s3://... the stack's ingest function registers the uploads: "
            "--run, --camera and --transfer do not apply"
        )
    written = Client.upload_raws(destination, files)
    for uri in written:
        click.echo(f"uploaded {uri}")
    click.echo(
        f"uploaded {len(written)} raw file(s); the stack's ingest function registers each one "
        "(see its log group, or `isrflow datasets` on the stack's registry)"
    )


def register(group: click.Group) -> None:
    """Add the registry commands to the ``isrflow`` group."""

    repo = subgroup(group, "repo", "Create and inspect data repositories.")

    @repo.command("create")
    @click.argument("directory", type=click.Path(file_okay=False))
    @click.option(
        "--registry",
        "registry_url",
        default=None,
        help="Registry database URL (default: sqlite:///DIR/registry.sqlite3; or postgresql://...).",
    )
    @click.option("--datastore", default=None, help="Datastore root (default: DIR; or s3://bucket/prefix).")
    @click.option(
        "--schema", default=None, help="PostgreSQL schema for the registry tables (created if missing)."
    )
    def repo_create(
        directory: str, registry_url: str | None, datastore: str | None, schema: str | None
    ) -> None:
        """Create a repository in DIRECTORY: config file, registry schema, datastore root."""
        from isrflow.registry import create_repo

        registry = create_repo(directory, registry_url, datastore, schema)
        try:
            click.echo(
                f"created repository {directory}: registry {registry.url}, "
                f"datastore {registry.datastore_root}"
            )
        finally:
            registry.close()

    @group.command("ingest")
    @_repo_option
    @click.option(
        "--transfer",
        type=click.Choice(["copy", "move", "link", "direct"]),
        default="copy",
        show_default=True,
        help="How files get into the datastore (direct: register them in place).",
    )
    @click.option("--run", default=None, help="RUN collection (default: <INSTRUMENT>/raw/all).")
    @click.option("--camera", default=None, help="Force a camera (hsc, lsstcam, decam, generic).")
    @click.option(
        "--watch",
        "watch_dir",
        default=None,
        type=click.Path(file_okay=False, exists=True),
        help="Watch RAWDIR: feed new files through the ingest function (prompt processing).",
    )
    @click.option("--once", is_flag=True, help="With --watch: one poll, wait for its executions, exit.")
    @click.option(
        "--parameter",
        "parameters",
        multiple=True,
        metavar="KEY=VALUE",
        help="With --watch: template parameter, e.g. PromptOutputRun=... (PromptProcessing=true).",
    )
    @workers_option
    @click.argument("files", nargs=-1, required=False, type=click.Path(dir_okay=False))
    def ingest_cmd(
        repo_dir: str,
        transfer: str,
        run: str | None,
        camera: str | None,
        watch_dir: str | None,
        once: bool,
        parameters: tuple[str, ...],
        workers: int | None,
        files: tuple[str, ...],
    ) -> None:
        """Register raw FILES (and their instrument, detectors, exposures). Idempotent.

        Files that are not raws of a known camera are reported and skipped; the exit code is
        then 3 (0 when every file was ingested or already registered).

        With --watch RAWDIR, new files under RAWDIR go through the template's ingest function, as
        S3 uploads under raw/ do in AWS (see isrflow.prompt.watch).
        """

        if watch_dir is not None:
            from pathlib import Path

            from isrflow.cli.local_cmds import parse_parameters, watch

            if files:
                raise click.UsageError("give FILES or --watch RAWDIR, not both")
            failed = watch(
                Path(repo_dir),
                Path(watch_dir),
                once=once,
                interval=1.0,
                parameters=parse_parameters(parameters),
                workers=workers,
            )
            if failed:
                sys.exit(1)
            return
        if not files:
            raise click.UsageError("give raw FILES to ingest (or --watch RAWDIR)")
        if str(repo_dir).startswith("s3://"):
            _upload_to_stack(repo_dir, files, transfer, run, camera)
            return

        from isrflow.client import Client

        result = Client.local(repo_dir).ingest(files, transfer=transfer, run=run, camera=camera)
        for name, reason in result.skipped:
            click.echo(f"skipped {name}: {reason}", err=True)
        click.echo(
            f"ingested {len(result.ingested)} raw dataset(s), {len(result.existing)} already registered, "
            f"{len(result.skipped)} file(s) skipped"
        )
        if result.skipped:
            click.echo(
                f"error: {len(result.skipped)} of {len(files)} file(s) not ingested (reasons above)", err=True
            )
            sys.exit(EXIT_SKIPPED)

    @group.command("datasets")
    @_repo_option
    @click.option(
        "--type", "dataset_type", default=None, help="Dataset type (raw, bias, flat, postISRCCD, ...)."
    )
    @click.option(
        "--collection",
        "collections",
        multiple=True,
        help="Collection to search (repeat for a search path; default: every RUN).",
    )
    @click.option(
        "--where", default=None, help="Data query, e.g. \"instrument = 'HSC' AND detector IN (0..9)\"."
    )
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON list of datasets.")
    def datasets_cmd(
        repo_dir: str,
        dataset_type: str | None,
        collections: tuple[str, ...],
        where: str | None,
        as_json: bool,
    ) -> None:
        """List datasets."""
        from isrflow.client import Client

        refs = Client.local(repo_dir).datasets(
            where=where, type=dataset_type, collections=list(collections) or None
        )
        if as_json:
            out = []
            for ref in refs:
                item = {
                    "id": str(ref.id),
                    "type": ref.dataset_type,
                    "run": ref.run,
                    "data_id": ref.data_id,
                    "uri": ref.uri,
                    "size": ref.size,
                    "sha256": ref.sha256,
                }
                validity = getattr(ref, "validity", None)
                if validity is not None:
                    item["validity"] = validity.model_dump(mode="json")
                out.append(item)
            click.echo(json.dumps(out, indent=2))
            return
        for ref in refs:
            data_id = " ".join(f"{k}={v}" for k, v in ref.data_id.items())
            validity = getattr(ref, "validity", None)
            span = ""
            if validity is not None:
                lo = validity.begin.isoformat() if validity.begin else "-inf"
                hi = validity.end.isoformat() if validity.end else "+inf"
                span = f"  [{lo}, {hi})"
            click.echo(f"{ref.dataset_type:12s} {ref.run:30s} {data_id:50s} {ref.uri}{span}")

    @group.command("collections")
    @_repo_option
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON list of collections.")
    def collections_cmd(repo_dir: str, as_json: bool) -> None:
        """List collections (RUN, CALIBRATION, CHAINED) with the datasets each holds
        (certifications for a CALIBRATION collection; a chain's: its search path's)."""
        from isrflow.client import Client

        found = Client.local(repo_dir).collections()
        if as_json:
            click.echo(
                json.dumps(
                    [
                        {"name": c.name, "type": c.type, "datasets": c.datasets, "children": list(c.children)}
                        for c in found
                    ],
                    indent=2,
                )
            )
            return
        click.echo(f"{'type':<12} {'datasets':>8}  name")
        for c in found:
            chain = f"  -> {', '.join(c.children)}" if c.children else ""
            click.echo(f"{c.type:<12} {c.datasets:>8}  {c.name}{chain}")
        if not found:
            click.echo(f"no collections in {repo_dir}")

    calib = subgroup(group, "calib", "Calibration commands.")

    @calib.command("certify")
    @_repo_option
    @click.option(
        "--type",
        "dataset_type",
        required=True,
        type=click.Choice(["bias", "dark", "flat", "defects"]),
        help="Calibration type to certify.",
    )
    @click.option("--run", required=True, help="RUN collection holding the calibrations.")
    @click.option(
        "--collection",
        default=None,
        help="CALIBRATION collection (default: <INSTRUMENT>/calib per instrument).",
    )
    @click.option(
        "--begin", default=None, help="Validity start, ISO 8601, UTC if no offset (default: unbounded)."
    )
    @click.option("--end", default=None, help="Validity end (exclusive), ISO 8601, UTC (default: unbounded).")
    def certify_cmd(
        repo_dir: str, dataset_type: str, run: str, collection: str | None, begin: str | None, end: str | None
    ) -> None:
        """Certify every TYPE dataset of RUN into a CALIBRATION collection for [BEGIN, END)."""
        from isrflow.registry import calib_collection, open_repo

        t0, t1 = _parse_time(begin, "--begin"), _parse_time(end, "--end")
        if t0 is not None and t1 is not None and not t0 < t1:
            raise click.BadParameter("--begin must be before --end", param_hint="--begin")
        if collection is not None:
            from isrflow.model.ids import check_collection_name

            check_collection_name(collection)  # a CollectionError line, not a pydantic traceback
        registry = open_repo(repo_dir)
        try:
            if registry.collection_type(run) != "RUN":
                raise RegistryError(f"{run!r} is not a RUN collection of this repository")
            refs = registry.query_datasets(dataset_type, [run])
            if not refs:
                raise RegistryError(f"no {dataset_type} datasets in {run!r}")
            from isrflow.model.messages import CertifyMessage

            messages = [
                CertifyMessage(
                    dataset_id=r.id,
                    collection=collection or calib_collection(r.data_id["instrument"]),
                    begin=t0,
                    end=t1,
                )
                for r in refs
            ]
            registry.apply(messages)
        finally:
            registry.close()
        targets = sorted({m.collection for m in messages})
        lo = t0.isoformat() if t0 else "-inf"
        hi = t1.isoformat() if t1 else "+inf"
        click.echo(
            f"certified {len(messages)} {dataset_type} dataset(s) from {run} into {', '.join(targets)} "
            f"for [{lo}, {hi})"
        )
