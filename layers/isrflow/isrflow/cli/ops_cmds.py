"""Operations: ``isrflow status`` (per-detector table, totals, estimated AWS cost), ``isrflow rerun
--failed`` and ``isrflow preview``.

An EXECUTION is a name or an execution ARN: with ``--repo`` a local execution (its record under
``DIR/executions/``); an ARN with a real region is looked up in AWS (boto3 credentials).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from isrflow.cli.options import json_option, workers_option

_repo_option = click.option(
    "--repo",
    "repo_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="repository (local executions; for AWS ones, a repository on the AWS registry)",
)


def register(group: click.Group) -> None:
    group.add_command(status_command)
    group.add_command(rerun_command)
    group.add_command(preview_command)


def _progress(line: str) -> None:
    if sys.stderr.isatty():
        click.echo(f"\r  {line} ", nl=False, err=True)


def _usd(value: float) -> str:
    return f"${value:.6f}" if value < 1 else f"${value:,.2f}"


def status_json(st) -> dict:
    from isrflow.ops.cost import breakdown_json

    cost = breakdown_json(st.cost)
    usage = st.usage.model_dump(mode="json", exclude={"lambda_invocations", "fargate_tasks", "notes"})
    usage["lambda_requests"] = len(st.usage.lambda_invocations)
    usage["lambda_gb_seconds"] = cost["breakdown"]["lambda"]["gb_seconds"]
    usage["fargate_vcpu_seconds"] = cost["breakdown"]["fargate"]["vcpu_seconds"]
    usage["fargate_gb_seconds"] = cost["breakdown"]["fargate"]["gb_seconds"]
    return {
        "execution": st.execution_arn,
        "name": st.name,
        "state_machine": st.state_machine_arn,
        "source": st.source,
        "status": st.status,
        "start": st.start_date,
        "stop": st.stop_date,
        "error": st.error,
        "cause": st.cause,
        "output_run": st.output_run,
        "rows_from": st.rows_from,
        "detectors": [r.model_dump(mode="json") for r in st.rows],
        "totals": st.totals.model_dump(mode="json"),
        "cost_usd": cost["cost_usd"],
        "cost_per_1000_detectors": cost["cost_per_1000_detectors"],
        "breakdown": cost["breakdown"],
        "usage": usage,
        "invocations": [i.model_dump(mode="json") for i in st.usage.lambda_invocations],
        "prices": {"table": cost["prices"], "region": cost["region"], "currency": cost["currency"]},
        "notes": cost["notes"],
        "reads": st.reads.model_dump(mode="json") if st.reads is not None else None,
        "masters": [m.model_dump(mode="json") for m in st.masters],
    }


def _print_masters(masters) -> None:
    """The per-master table of a BuildCalibration execution."""
    click.echo(
        f"{'type':>8} {'instrument':>10} {'det':>4} {'filter':>8} {'status':>10} {'route':>7} {'inputs':>6} "
        f"{'seconds':>8} {'peak MiB':>9}  error"
    )
    for m in masters:
        secs = f"{m.duration_s:.2f}" if m.duration_s is not None else "-"
        mem = f"{m.peak_memory_mb:.0f}" if m.peak_memory_mb is not None else "-"
        inputs = "-" if m.n_inputs is None else str(m.n_inputs)
        click.echo(
            f"{m.calib_type:>8} {m.instrument:>10} {m.detector:>4} {m.physical_filter or '-':>8} {m.status:>10} "
            f"{m.route or '-':>7} {inputs:>6} {secs:>8} {mem:>9}  {(m.error or '')[:100]}"
        )
    ok = sum(m.status == "succeeded" for m in masters)
    click.echo(f"masters: {ok} of {len(masters)} built")


def _print_status(st) -> None:
    click.echo(f"execution {st.execution_arn}: {st.status} ({st.source})")
    if st.start_date is not None:
        stop = f" -> {st.stop_date.isoformat(timespec='seconds')}" if st.stop_date else ""
        click.echo(
            f"  {st.start_date.isoformat(timespec='seconds')}{stop}   output run: {st.output_run or '-'}"
        )
    if st.error:
        cause = st.cause or ""
        with contextlib.suppress(ValueError, AttributeError):
            cause = json.loads(cause).get("errorMessage", cause)
        click.echo(f"  error: {st.error}: {cause[:300]}")
    if st.masters:
        _print_masters(st.masters)
        click.echo("ISR of the inputs:")
    click.echo(
        f"{'instrument':>10} {'exposure':>14} {'det':>4} {'status':>10} {'seconds':>8} {'peak MiB':>9} "
        f"{'retries':>7}  error"
    )
    for r in st.rows:
        secs = f"{r.duration_s:.2f}" if r.duration_s is not None else "-"
        mem = f"{r.peak_memory_mb:.0f}" if r.peak_memory_mb is not None else "-"
        click.echo(
            f"{r.instrument:>10} {r.exposure:>14} {r.detector:>4} {r.status:>10} {secs:>8} {mem:>9} "
            f"{r.retries:>7}  {(r.error or '')[:100]}"
        )
    t = st.totals
    mem = f"{t.max_peak_memory_mb:.0f} MiB" if t.max_peak_memory_mb is not None else "-"
    click.echo(
        f"totals: {t.detectors} detectors ({st.rows_from}), {t.succeeded} succeeded, {t.failed} failed, "
        f"{t.skipped_existing} skipped as existing; ISR {t.isr_seconds:.2f} s; max peak memory {mem}"
    )
    if st.reads is not None:
        from isrflow.ops.reads import reads_line

        click.echo(reads_line(st.reads))
    c, b = st.cost, st.cost.breakdown
    per = (
        f" ({_usd(c.cost_per_1000_detectors)} per 1000 detectors)"
        if c.cost_per_1000_detectors is not None
        else ""
    )
    click.echo(f"estimated AWS cost ({c.region} list prices, {c.prices}): {_usd(c.cost_usd)}{per}")
    lines = [
        ("Lambda", f"{b.lambda_.requests} requests, {b.lambda_.gb_seconds:.3f} GB-s", b.lambda_.usd),
        (
            "Fargate",
            f"{b.fargate.tasks} tasks, {b.fargate.vcpu_seconds:.1f} vCPU-s, {b.fargate.gb_seconds:.1f} GB-s",
            b.fargate.usd,
        ),
        ("Step Functions", f"{b.stepfunctions.transitions} state transitions", b.stepfunctions.usd),
        ("SQS", f"{b.sqs.requests} requests", b.sqs.usd),
        ("S3", f"{b.s3.put_copy_post_list} PUT/LIST, {b.s3.get_select} GET", b.s3.usd),
    ]
    for label, detail, usd in lines:
        click.echo(f"  {label:<15} {detail:<44} {_usd(usd):>12}")
    for note in c.notes:
        click.echo(f"  note: {note}")


def _list_executions(repo_dir: Path | None, as_json: bool) -> None:
    """The repository's executions, newest first (killed ones show as ABORTED)."""
    from isrflow.client import Client

    if repo_dir is None:
        raise click.UsageError("give an EXECUTION, or --repo DIR to list the repository's executions")
    records = Client.local(repo_dir).executions()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "execution": r.execution_arn,
                        "state_machine": r.state_machine_name,
                        "status": r.status,
                        "start": r.start_date,
                        "stop": r.stop_date,
                        "error": r.error,
                    }
                    for r in records
                ],
                indent=1,
                default=str,
            )
        )
        return
    click.echo(f"{'start (UTC)':<20} {'status':<10} {'state machine':<28} name")
    for r in records:
        click.echo(
            f"{r.start_date.strftime('%Y-%m-%d %H:%M:%S'):<20} {r.status:<10} {r.state_machine_name[:28]:<28} "
            f"{r.name}"
        )
    if not records:
        click.echo(f"no executions recorded in {repo_dir}")


@click.command("status")
@click.argument("execution", required=False)
@_repo_option
@click.option(
    "--prices",
    "prices_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="price table YAML merged over the built-in one (see ops/prices.yaml)",
)
@json_option
def status_command(execution, repo_dir, prices_path, as_json):
    """Per-detector status, duration, peak memory, retries and errors of an execution, its totals and
    its estimated AWS cost (Lambda, Fargate, Step Functions, SQS, S3). Without EXECUTION: the
    executions recorded in --repo, newest first."""
    from isrflow.client import Client

    if execution is None:
        _list_executions(repo_dir, as_json)
        return

    client = Client.local(repo_dir) if repo_dir is not None else Client.aws()
    st = client.status(execution, prices=prices_path, progress=_progress)
    if sys.stderr.isatty() and st.source == "aws":
        click.echo("", err=True)
    if as_json:
        click.echo(json.dumps(status_json(st), indent=1, default=str))
    else:
        _print_status(st)


@click.command("rerun")
@click.argument("execution")
@_repo_option
@click.option(
    "--failed",
    "failed_only",
    is_flag=True,
    required=True,
    help="rerun exactly the quanta that failed (the only kind of rerun)",
)
@workers_option
@click.option("--dry-run", is_flag=True, help="print the new execution's input, start nothing")
@json_option
def rerun_command(execution, repo_dir, failed_only, workers, dry_run, as_json):
    """Start a new execution with exactly the failed quanta of EXECUTION, into the same output run
    (mode replace; see isrflow.ops.rerun)."""
    from isrflow.client import Client

    if not failed_only:
        raise click.UsageError("only --failed reruns are supported")
    client = Client.local(repo_dir, workers=workers) if repo_dir is not None else Client.aws()
    plan = client.plan_rerun(execution, dry_run=dry_run)
    found = plan.found
    if plan.removed and not as_json:
        click.echo(f"removed {len(plan.removed)} unregistered files {found.name} left behind", err=True)
    if plan.payload is None:
        click.echo(
            json.dumps({"execution": found.execution_arn, "failed": 0, "rerun": None})
            if as_json
            else f"{found.execution_arn}: no failed quanta, nothing to rerun"
        )
        return
    if dry_run:
        click.echo(
            json.dumps({"execution": found.execution_arn, "name": plan.name, "input": plan.payload}, indent=1)
        )
        return
    if not as_json:
        click.echo(f"rerunning {plan.what} of {found.execution_arn} as {plan.name}")
    handle = client.start_rerun(plan)
    if found.source == "aws":
        handle.wait(progress=False)
        result = handle.result()
        click.echo(json.dumps(result, indent=1, default=str))
        sys.exit(0 if result.get("status") == "SUCCEEDED" else 1)
    from isrflow.cli.run_cmds import _report
    from isrflow.registry import open_repo

    if not as_json:
        click.echo(f"started {handle.arn} (isrflow status {handle.name} --repo {repo_dir})", err=True)
    handle.wait(progress=not as_json)
    _report(open_repo(repo_dir), handle._run.execution, as_json)


@click.command("preview")
@click.option("--repo", "repo_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--collection", "run", required=True, help="RUN collection holding the postISRCCD outputs")
@click.option("--where", default=None, help='data query, e.g. "exposure = 5000 AND detector IN (0..3)"')
@json_option
def preview_command(repo_dir, run, where, as_json):
    """Write a PNG per detector (zscale, masked pixels coloured) and a focal-plane mosaic per exposure
    next to the outputs of a run."""
    from isrflow.io.exposure_io import read_exposure
    from isrflow.io.storage import storage_for
    from isrflow.registry import open_repo
    from isrflow.render.previews import exposure_directories, write_detector_preview, write_mosaic

    registry = open_repo(repo_dir)
    try:
        refs = registry.query_datasets("postISRCCD", [run], where)
    finally:
        registry.close()
    if not refs:
        raise click.ClickException(f"no postISRCCD datasets in {run}" + (f" where {where}" if where else ""))
    pngs = []
    for i, ref in enumerate(refs, 1):
        exposure = read_exposure(storage_for(ref.uri).read_bytes(ref.uri), ref.uri)
        png, _ = write_detector_preview(exposure, ref.uri, ref.data_id["instrument"], ref.data_id["detector"])
        pngs.append(png)
        _progress(f"previews: {i}/{len(refs)}")
    if sys.stderr.isatty():
        click.echo("", err=True)
    outputs = [(r.data_id["instrument"], r.data_id["exposure"], r.uri) for r in refs]
    mosaics = [
        m
        for (inst, exp), d in sorted(exposure_directories(outputs).items())
        if (m := write_mosaic(d, inst, exp)) is not None
    ]
    if as_json:
        click.echo(json.dumps({"previews": pngs, "mosaics": mosaics}, indent=1))
    else:
        click.echo(f"wrote {len(pngs)} detector previews and {len(mosaics)} mosaics:")
        for m in mosaics:
            click.echo(f"  {m}")
