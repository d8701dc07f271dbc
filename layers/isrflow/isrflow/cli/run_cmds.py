"""``isrflow run process-visit`` and ``isrflow calib import`` (``isrflow status``: :mod:`.ops_cmds`).

``run`` starts the ProcessVisit state machine: locally by default (the embedded runtime,
against ``--repo``), or with ``--aws`` against the deployed stack. It follows the execution
with a progress line and returns only when the registry holds the execution's rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from isrflow.cli.options import FiniteFloatRange, count, json_option, list_option, subgroup, workers_option
from isrflow.client.inputs import default_collections, process_visit_input  # noqa: F401 (the CLI's names for them)
from isrflow.model.defaults import DEFAULT_CLUSTER_SIZE

STATE_MACHINE = "ProcessVisitStateMachine"


def register(group: click.Group) -> None:
    run = subgroup(group, "run", "Run a state machine (locally by default, or --aws).")
    run.add_command(process_visit_command)
    calib = subgroup(group, "calib", "Calibrations: import, certify, build.")
    calib.add_command(calib_import_command)


def run_local(
    repo: Path,
    payload: dict,
    workers: int | None,
    *,
    progress: bool = True,
    name: str | None = None,
    state_machine: str = STATE_MACHINE,
    containers=None,
    total: int | None = None,
):
    """Run ProcessVisit (or ``state_machine``) in the embedded runtime through the Python API
    (:meth:`isrflow.Client.start`); returns the finished interpreter Execution.
    ``containers``: a started ContainerSession to run the functions in their Lambda containers."""
    from isrflow.client import Client

    handle = Client.local(repo, workers=workers).start(
        state_machine, payload, name=name, total=total, containers=containers
    )
    if progress:
        click.echo(f"started {handle.arn} (isrflow status {handle.name} --repo {repo})", err=True)
    handle.wait(progress=progress)
    return handle._run.execution


def _print_records(records: list[dict], summary: dict | None) -> None:
    click.echo(
        f"{'instrument':>10} {'exposure':>14} {'det':>4} {'status':>10} {'seconds':>8} {'peak MiB':>9}  error"
    )
    for r in sorted(records, key=lambda r: (r["exposure"], r["detector"])):
        secs = f"{r['duration_s']:.2f}" if r.get("duration_s") is not None else "-"
        mem = f"{r['peak_memory_mb']:.0f}" if r.get("peak_memory_mb") is not None else "-"
        click.echo(
            f"{r['instrument']:>10} {r['exposure']:>14} {r['detector']:>4} {r['status']:>10} {secs:>8} {mem:>9}  "
            f"{(r.get('error') or '')[:100]}"
        )
    ok = sum(r["status"] == "succeeded" for r in records)
    click.echo(f"{ok} of {len(records)} detectors succeeded")


@click.command("process-visit")
@click.option(
    "--repo", "repo_dir", type=click.Path(file_okay=False, path_type=Path), help="repository (local runs)"
)
@click.option(
    "--where", default=None, help='data query over the raws, e.g. "exposure = 904010 AND detector IN (0..3)"'
)
@click.option("--output-run", required=True, help="RUN collection for the outputs")
@list_option(
    "--input-collections", help="raw collections, space-separated or repeated (default <INSTRUMENT>/raw/all)"
)
@click.option("--calib-collection", default=None, help="calibration collection (default <INSTRUMENT>/calib)")
@click.option(
    "--mode", type=click.Choice(["fail", "skip-existing", "replace"]), default="fail", show_default=True
)
@click.option("--cluster-size", type=count(1), default=DEFAULT_CLUSTER_SIZE, show_default=True)
@click.option("--max-failure-fraction", type=FiniteFloatRange(0, 1), default=0.0, show_default=True)
@click.option(
    "--isr-config", "isr_config_path", type=click.Path(dir_okay=False, path_type=Path), default=None
)
@click.option("--previews", is_flag=True, help="also write a PNG per detector and a mosaic per exposure")
@workers_option
@click.option("--aws", "use_aws", is_flag=True, help="start the deployed state machine instead")
@click.option("--stack", default="isrflow", show_default=True, help="CloudFormation stack (with --aws)")
@json_option
def process_visit_command(
    repo_dir,
    where,
    output_run,
    input_collections,
    calib_collection,
    mode,
    cluster_size,
    max_failure_fraction,
    isr_config_path,
    previews,
    workers,
    use_aws,
    stack,
    as_json,
):
    """Run ISR on every detector the query selects (the ProcessVisit state machine)."""
    from isrflow.client import Client
    from isrflow.isr.config import IsrConfig
    from isrflow.registry import open_repo

    isr_config = IsrConfig.from_file(isr_config_path).model_dump(mode="json") if isr_config_path else {}
    if use_aws:
        if not input_collections or not calib_collection:
            raise click.UsageError("with --aws give --input-collections and --calib-collection")
        client = Client.aws(stack)
    elif repo_dir is None:
        raise click.UsageError("--repo is required for local runs")
    elif where is None:
        raise click.UsageError("--where is required")
    else:
        client = Client.local(repo_dir, workers=workers)
    handle = client.process_visit(
        where,
        output_run,
        input_collections=list(input_collections),
        calib_collection=calib_collection,
        mode=mode,
        cluster_size=cluster_size,
        max_failure_fraction=max_failure_fraction,
        isr_config=isr_config,
        previews=previews,
    )
    if not use_aws and not as_json:
        click.echo(f"started {handle.arn} (isrflow status {handle.name} --repo {repo_dir})", err=True)
    handle.wait(progress=not as_json)
    if use_aws:
        result = handle.result()
        click.echo(json.dumps(result, indent=1, default=str))
        sys.exit(0 if result.get("status") == "SUCCEEDED" else 1)
    _report(open_repo(repo_dir), handle._run.execution, as_json)


def _report(registry, execution, as_json: bool) -> None:
    records = registry.processing_records(execution.execution_arn)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "execution": execution.execution_arn,
                    "status": execution.status,
                    "output": execution.output,
                    "error": execution.error,
                    "cause": execution.cause,
                    "records": records,
                },
                indent=1,
                default=str,
            )
        )
    else:
        click.echo(f"execution {execution.execution_arn}: {execution.status}")
        if records:
            _print_records(records, execution.output)
        if execution.status != "SUCCEEDED":
            click.echo(f"error: {execution.error}: {_cause_text(execution.cause)}", err=True)
    if execution.status != "SUCCEEDED":
        sys.exit(1)


def _cause_text(cause: str | None) -> str:
    try:
        return json.loads(cause or "").get("errorMessage", cause)
    except (ValueError, AttributeError):
        return cause or ""


@click.command("import")
@click.option("--repo", "repo_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--run", required=True, help="RUN collection to register the calibrations in")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
def calib_import_command(repo_dir, run, files):
    """Copy calibration files (bias, dark, flat, defects in the isrflow format) into a RUN."""
    from isrflow.registry import open_repo
    from isrflow.registry.calib_import import import_calibrations

    refs = import_calibrations(open_repo(repo_dir), files, run)
    for ref in refs:
        click.echo(f"{ref.dataset_type:>8} {json.dumps(ref.data_id, sort_keys=True)} -> {ref.uri}")
    click.echo(f"imported {len(refs)} calibrations into {run}; certify them with `isrflow calib certify`")
