"""``isrflow calib build {bias,dark,flat,defects}``: the BuildCalibration state machine.

Locally by default (the embedded runtime, against ``--repo``), or ``--aws`` against the
deployed stack. With ``--certify`` the masters are certified into ``--collection`` for
``[--begin, --end)`` and the command returns only once the certification is visible in the
registry (the state machine's Summarize waits for the registry writer; the command checks).

The command's options arrive grouped (:mod:`.calib_options`): what to build, where from, how
to combine, what to certify, how to run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from isrflow.cli.calib_options import (
    BuildSource,
    BuildTarget,
    Certification,
    CombineOptions,
    RunOptions,
    grouped_build_options,
)
from isrflow.cli.options import FiniteFloatRange, count, json_option, list_option, subgroup, workers_option
from isrflow.client.inputs import build_input

if TYPE_CHECKING:
    from isrflow.registry.core import Registry

STATE_MACHINE = "BuildCalibrationStateMachine"


def register(group: click.Group) -> None:
    calib = subgroup(group, "calib", "Calibrations: import, certify, build.")
    calib.add_command(build_command)


def build_local(
    repo: Path,
    payload: dict[str, Any],
    workers: int | None,
    *,
    progress: bool = True,
    containers: Any = None,
) -> Any:
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


def certified_visible(registry: Registry, summary: dict[str, Any], collection: str) -> bool:
    """Whether every master the execution built is certified in ``collection`` (per the registry)."""
    uris = set(summary.get("outputs") or [])
    found = {ref.uri for ref in registry.query_datasets(summary["calib_type"], [collection])}
    return uris <= found


def _print_summary(summary: dict[str, Any]) -> None:
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
@grouped_build_options
def build_command(
    target: BuildTarget,
    source: BuildSource,
    combine: CombineOptions,
    certification: Certification,
    run: RunOptions,
) -> None:
    """Build master calibrations of TYPE per detector (the BuildCalibration state machine)."""
    options = _payload_options(target, combine)
    if run.use_aws:
        _build_on_aws(target, source, certification, run, options)
        return
    if run.repo_dir is None:
        raise click.UsageError("--repo is required for local runs")
    execution, summary = _build_locally(run.repo_dir, target, source, certification, run, options)
    _report(execution, summary, run.as_json)
    if execution.status != "SUCCEEDED":
        sys.exit(1)


def _payload_options(target: BuildTarget, combine: CombineOptions) -> dict[str, Any]:
    """The BuildCalibration input fields of the output mode and the combine options."""
    overrides = combine.isr_overrides()
    return {
        "statistic": combine.statistic,
        "clip": combine.clip,
        "iterations": combine.iterations,
        "min_inputs": combine.min_inputs,
        "mode": target.mode,
        "route": combine.route,
        "max_failure_fraction": combine.max_failure_fraction,
        "isr_config": overrides or None,
        "keep_intermediates": combine.keep_intermediates,
    }


def _build_on_aws(
    target: BuildTarget,
    source: BuildSource,
    certification: Certification,
    run: RunOptions,
    options: dict[str, Any],
) -> None:
    """Start the deployed state machine, print its result and exit 0 if it succeeded, else 1."""
    from isrflow.infra.stack_client import run_on_aws
    from isrflow.model.messages import BuildCalibrationInput

    if (
        not source.input_collections
        or (target.calib_type in ("dark", "flat") and not source.calib_collection)
        or (certification.certify and not certification.collection)
    ):
        raise click.UsageError(
            "with --aws give --input-collections, --calib-collection (dark, flat) and "
            "--collection (with --certify)"
        )
    spec = (
        {"collection": certification.collection, "begin": certification.begin, "end": certification.end}
        if certification.certify
        else None
    )
    payload = BuildCalibrationInput(
        calib_type=target.calib_type,
        where=source.where,
        input_collections=list(source.input_collections),
        calib_collection=source.calib_collection,
        output_run=target.output_run,
        certify=spec,
        **{k: v for k, v in options.items() if v is not None},
    ).model_dump(mode="json", exclude_none=True)
    result = run_on_aws(run.stack, STATE_MACHINE, payload)
    click.echo(json.dumps(result, indent=1, default=str))
    sys.exit(0 if result.get("status") == "SUCCEEDED" else 1)


def _build_locally(
    repo_dir: Path,
    target: BuildTarget,
    source: BuildSource,
    certification: Certification,
    run: RunOptions,
    options: dict[str, Any],
) -> tuple[Any, dict[str, Any] | None]:
    """Run the build in the embedded runtime; returns the finished Execution and, if it
    succeeded, its summary. With ``--certify`` a success whose certifications are not in the
    registry is a ClickException."""
    from isrflow.registry import open_repo

    registry = open_repo(repo_dir)
    try:
        payload = build_input(
            registry,
            target.calib_type,
            source.where,
            target.output_run,
            input_collections=source.input_collections,
            calib_collection=source.calib_collection,
            certify=certification.certify,
            collection=certification.collection,
            begin=certification.begin,
            end=certification.end,
            **options,
        )
    finally:
        registry.close()
    execution = build_local(repo_dir, payload, run.workers, progress=not run.as_json)
    summary = execution.output if execution.status == "SUCCEEDED" else None
    if summary and certification.certify:
        registry = open_repo(repo_dir)
        try:
            if not certified_visible(registry, summary, payload["certify"]["collection"]):
                raise click.ClickException(
                    "the execution succeeded but its certifications are not in the registry"
                )
        finally:
            registry.close()
    return execution, summary


def _report(execution: Any, summary: dict[str, Any] | None, as_json: bool) -> None:
    """Print the execution's outcome: JSON, or its summary / error as text."""
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
        return
    click.echo(f"execution {execution.execution_arn}: {execution.status}")
    if summary:
        _print_summary(summary)
    else:
        from isrflow.cli.run_cmds import _cause_text

        click.echo(f"error: {execution.error}: {_cause_text(execution.cause)}", err=True)
