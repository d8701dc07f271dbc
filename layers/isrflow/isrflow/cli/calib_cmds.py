"""``isrflow calib build {bias,dark,flat,defects}``: the BuildCalibration state machine.

Locally by default (the embedded runtime, against ``--repo``), or ``--aws`` against the
deployed stack. With ``--certify`` the masters are certified into ``--collection`` for
``[--begin, --end)`` and the command returns only once the certification is visible in the
registry (the state machine's Summarize waits for the registry writer; the command checks).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from isrflow.cli.options import FiniteFloatRange, count, json_option, list_option, subgroup, workers_option
from isrflow.client.inputs import build_input

STATE_MACHINE = "BuildCalibrationStateMachine"


def register(group: click.Group) -> None:
    calib = subgroup(group, "calib", "Calibrations: import, certify, build.")
    calib.add_command(build_command)


def build_local(repo: Path, payload: dict, workers: int | None, *, progress: bool = True, containers=None):
    """Run BuildCalibration in the embedded runtime through the Python API (the certification
    collection is created if needed; a query selecting no input is refused before the start);
    returns the finished Execution."""
    from isrflow.cli.run_cmds import run_local
    from isrflow.client.inputs import selected_inputs
    from isrflow.registry import open_repo

    registry = open_repo(repo)
    try:
        total = selected_inputs(registry, payload)
        certify = payload.get("certify")
        if certify:
            registry.register_collection(certify["collection"], "CALIBRATION")
    finally:
        registry.close()
    return run_local(
        repo,
        payload,
        workers,
        progress=progress,
        state_machine=STATE_MACHINE,
        containers=containers,
        total=total,
    )


def certified_visible(registry, summary: dict, collection: str) -> bool:
    """Whether every master the execution built is certified in ``collection`` (per the registry)."""
    uris = set(summary.get("outputs") or [])
    found = {ref.uri for ref in registry.query_datasets(summary["calib_type"], [collection])}
    return uris <= found


def _print_summary(summary: dict) -> None:
    click.echo(
        f"{summary['calib_type']}: {summary['succeeded']} of {summary['masters']} masters built into "
        f"{summary['output_run']} ({summary['inputs_failed']} of {summary['inputs']} inputs failed), routes "
        + ", ".join(f"{k} {v}" for k, v in summary.get("routes", {}).items())
    )
    for uri in summary.get("outputs", []):
        click.echo(f"  {uri}")
    for failure in summary.get("failures", []):
        click.echo(f"  FAILED {failure['key']}: {failure.get('error')}")
    if summary.get("certify_collection"):
        click.echo(f"certified {summary['certified']} into {summary['certify_collection']}")


@click.command("build")
@click.argument("calib_type", type=click.Choice(["bias", "dark", "flat", "defects"]))
@click.option(
    "--repo", "repo_dir", type=click.Path(file_okay=False, path_type=Path), help="repository (local runs)"
)
@click.option(
    "--where",
    default=None,
    help="data query over the input raws (the observation type is added); "
    "defects: over the master darks and flats",
)
@click.option("--output-run", required=True, help="RUN collection for the masters and intermediates")
@list_option(
    "--input-collections",
    help="raw collections, space-separated or repeated (default <INSTRUMENT>/raw/all); defects: collections of the master dark and flat",
)
@click.option(
    "--calib-collection",
    default=None,
    help="certified bias (dark, flat) and dark (flat) (default <INSTRUMENT>/calib)",
)
@click.option(
    "--statistic", type=click.Choice(["meanclip", "median", "mean"]), default="meanclip", show_default=True
)
@click.option("--clip", type=FiniteFloatRange(min=0, min_open=True), default=3.0, show_default=True)
@click.option("--iterations", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--min-inputs", type=count(1), default=3, show_default=True, help="good inputs a master needs")
@click.option("--mode", type=click.Choice(["fail", "replace"]), default="fail", show_default=True)
@click.option(
    "--route",
    type=click.Choice(["auto", "lambda", "fargate"]),
    default="auto",
    show_default=True,
    help="where combines run (auto: by estimated time and memory)",
)
@click.option(
    "--isr-config",
    "isr_config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="IsrConfig fields overriding the type's ISR step set",
)
@click.option("--max-failure-fraction", type=FiniteFloatRange(0, 1), default=0.0, show_default=True)
@click.option(
    "--keep-intermediates",
    is_flag=True,
    help="keep the ISR'd input frames (cpBiasProc/cpDarkProc/cpFlatProc); by default they are deleted once "
    "their master is built",
)
@click.option("--certify", is_flag=True, help="certify the masters (returns once visible in the registry)")
@click.option(
    "--collection", default=None, help="CALIBRATION collection to certify into (default <INSTRUMENT>/calib)"
)
@click.option("--begin", default=None, help="validity start, ISO 8601, UTC if no offset (default: unbounded)")
@click.option("--end", default=None, help="validity end (exclusive), ISO 8601 (default: unbounded)")
@workers_option
@click.option("--aws", "use_aws", is_flag=True, help="start the deployed state machine instead")
@click.option("--stack", default="isrflow", show_default=True, help="CloudFormation stack (with --aws)")
@json_option
def build_command(
    calib_type,
    repo_dir,
    where,
    output_run,
    input_collections,
    calib_collection,
    statistic,
    clip,
    iterations,
    min_inputs,
    mode,
    route,
    isr_config_path,
    max_failure_fraction,
    keep_intermediates,
    certify,
    collection,
    begin,
    end,
    workers,
    use_aws,
    stack,
    as_json,
):
    """Build master calibrations of TYPE per detector (the BuildCalibration state machine)."""
    import yaml

    from isrflow.cli.registry_cmds import _parse_time

    t0, t1 = _parse_time(begin, "--begin"), _parse_time(end, "--end")
    if (begin or end or collection) and not certify:
        raise click.UsageError("--collection, --begin and --end go with --certify")
    overrides = {}
    if isr_config_path is not None:
        try:
            overrides = yaml.safe_load(isr_config_path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise click.BadParameter(f"{isr_config_path}: {exc}", param_hint="--isr-config") from None
    options = dict(
        statistic=statistic,
        clip=clip,
        iterations=iterations,
        min_inputs=min_inputs,
        mode=mode,
        route=route,
        max_failure_fraction=max_failure_fraction,
        isr_config=overrides or None,
        keep_intermediates=keep_intermediates,
    )
    if use_aws:
        from isrflow.infra.stack_client import run_on_aws
        from isrflow.model.messages import BuildCalibrationInput

        if (
            not input_collections
            or (calib_type in ("dark", "flat") and not calib_collection)
            or (certify and not collection)
        ):
            raise click.UsageError(
                "with --aws give --input-collections, --calib-collection (dark, flat) and "
                "--collection (with --certify)"
            )
        spec = {"collection": collection, "begin": t0, "end": t1} if certify else None
        payload = BuildCalibrationInput(
            calib_type=calib_type,
            where=where,
            input_collections=list(input_collections),
            calib_collection=calib_collection,
            output_run=output_run,
            certify=spec,
            **{k: v for k, v in options.items() if v is not None},
        ).model_dump(mode="json", exclude_none=True)
        result = run_on_aws(stack, STATE_MACHINE, payload)
        click.echo(json.dumps(result, indent=1, default=str))
        sys.exit(0 if result.get("status") == "SUCCEEDED" else 1)
    if repo_dir is None:
        raise click.UsageError("--repo is required for local runs")
    from isrflow.registry import open_repo

    registry = open_repo(repo_dir)
    try:
        payload = build_input(
            registry,
            calib_type,
            where,
            output_run,
            input_collections=input_collections,
            calib_collection=calib_collection,
            certify=certify,
            collection=collection,
            begin=t0,
            end=t1,
            **options,
        )
    finally:
        registry.close()
    execution = build_local(repo_dir, payload, workers, progress=not as_json)
    summary = execution.output if execution.status == "SUCCEEDED" else None
    if summary and certify:
        registry = open_repo(repo_dir)
        try:
            if not certified_visible(registry, summary, payload["certify"]["collection"]):
                raise click.ClickException(
                    "the execution succeeded but its certifications are not in the registry"
                )
        finally:
            registry.close()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "execution": execution.execution_arn,
                    "status": execution.status,
                    "output": summary,
                    "error": execution.error,
                    "cause": execution.cause,
                },
                indent=1,
                default=str,
            )
        )
    else:
        click.echo(f"execution {execution.execution_arn}: {execution.status}")
        if summary:
            _print_summary(summary)
        else:
            from isrflow.cli.run_cmds import _cause_text

            click.echo(f"error: {execution.error}: {_cause_text(execution.cause)}", err=True)
    if execution.status != "SUCCEEDED":
        sys.exit(1)
