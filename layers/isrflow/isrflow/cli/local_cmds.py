"""``isrflow local serve`` (the Step Functions API of the local runtime) and the body of
``isrflow ingest --watch`` (uploads -> the ingest function -> prompt processing, locally)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import click

from isrflow.cli.options import subgroup, workers_option

DEFAULT_PORT = 8083  # the port Step Functions Local uses


def register(group: click.Group) -> None:
    local = subgroup(group, "local", "The local runtime: the template's state machines on this machine.")
    local.add_command(serve_command)


def parse_parameters(items: tuple[str, ...]) -> dict[str, str]:
    """``KEY=VALUE`` template parameter overrides (as ``sam deploy --parameter-overrides``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--parameter")
        out[key.strip()] = value
    return out


def _sigterm_is_interrupt() -> None:
    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@click.command("serve")
@click.option(
    "--repo",
    "repo_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-repo"),
    show_default=True,
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="TCP port on 127.0.0.1 (0 = any free port)",
)
@workers_option
@click.option(
    "--parameter", "parameters", multiple=True, metavar="KEY=VALUE", help="template parameter override"
)
@click.option("--verbose", is_flag=True, help="log every request")
@click.option(
    "--token",
    envvar="ISRFLOW_LOCAL_TOKEN",
    default=None,
    metavar="TOKEN",
    help="require this token of every request: the X-Isrflow-Token header, or the access key id "
    "(AWS_ACCESS_KEY_ID=TOKEN with the aws CLI) [env ISRFLOW_LOCAL_TOKEN]",
)
def serve_command(repo_dir, port, workers, parameters, verbose, token):
    """Serve the Step Functions API (AWS JSON 1.0) for the template's state machines on 127.0.0.1, so
    `aws --endpoint-url http://127.0.0.1:PORT stepfunctions ...` and boto3 work against the local runtime.

    Only requests addressed to 127.0.0.1 or localhost (Host header) with a body of at most 1 MiB are
    served; with --token, only those that carry the token."""
    from isrflow.local.runtime import LocalRuntime
    from isrflow.local.sfn_api import LocalStepFunctionsServer

    runtime = LocalRuntime(repo_dir, processes=workers, parameters=parse_parameters(parameters)).start()
    try:
        server = LocalStepFunctionsServer(runtime, port, verbose=verbose, token=token)
    except OSError as exc:
        runtime.close()
        raise click.ClickException(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    click.echo(f"isrflow local serve: {server.endpoint} (repository {Path(repo_dir).absolute()})", err=False)
    for sm in runtime.app.state_machines.values():
        click.echo(f"  state machine {sm.arn}")
    first = next(iter(runtime.app.state_machines.values()), None)
    if first is not None:
        click.echo(
            f"  try: aws --endpoint-url {server.endpoint} stepfunctions start-execution "
            f"--state-machine-arn {first.arn} --input file://events/process_visit_input.json"
        )
    click.echo(
        "  (credentials: AWS_ACCESS_KEY_ID=<token>; Ctrl-C stops)"
        if token
        else "  (any credentials; Ctrl-C stops)",
        nl=True,
    )
    _sigterm_is_interrupt()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        runtime.close()


def watch(
    repo_dir: Path,
    watch_dir: Path,
    *,
    once: bool,
    interval: float,
    parameters: dict[str, str],
    workers: int | None,
    as_json: bool = False,
) -> int:
    """Feed uploads under ``watch_dir`` through the ingest function until Ctrl-C (``once``: one poll,
    then wait for the executions it started). Returns how many executions ended other than
    SUCCEEDED (the caller's exit status: a failed prompt execution is not exit 0)."""
    from isrflow.local.runtime import LocalRuntime
    from isrflow.local.sfn_api import LocalStepFunctionsServer
    from isrflow.prompt.watch import UploadWatcher

    parameters = {"PromptProcessing": "true", **parameters}
    runtime = LocalRuntime(repo_dir, processes=workers, parameters=parameters).start()
    server = LocalStepFunctionsServer(runtime, 0).start()
    reported: set[str] = set()
    try:
        watcher = UploadWatcher(runtime, watch_dir, endpoint=server.endpoint, settle_s=0.0 if once else 2.0)
        if not once and not as_json:
            click.echo(
                f"watching {watcher.watch_dir} (prompt processing {parameters['PromptProcessing']}); Ctrl-C stops"
            )
        _sigterm_is_interrupt()
        while True:
            for outcome in watcher.poll_once():
                _report_outcome(outcome, as_json)
            _report_ended(runtime, reported, as_json)
            if once:
                watcher.wait_idle()
                _report_ended(runtime, reported, as_json)
                return _failed_count(runtime)
            time.sleep(interval)
    except KeyboardInterrupt:
        running = [e for e in runtime.interpreter.list_executions() if e.status == "RUNNING"]
        if running:
            click.echo(f"waiting for {len(running)} running execution(s) ...", err=True)
            for e in running:
                e.wait()
            _report_ended(runtime, reported, as_json)
        return _failed_count(runtime)
    finally:
        server.stop()
        runtime.close()


def _failed_count(runtime) -> int:
    """Executions of this watch that ended other than SUCCEEDED (reported on stderr)."""
    failed = [e for e in runtime.interpreter.list_executions() if e.status not in ("RUNNING", "SUCCEEDED")]
    if failed:
        click.echo(
            f"error: {len(failed)} prompt execution(s) did not succeed: "
            + ", ".join(f"{e.name} {e.status} ({e.error})" for e in failed),
            err=True,
        )
    return len(failed)


def _report_outcome(outcome, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"upload": outcome.model_dump(mode="json")}))
        return
    if outcome.status == "ingested":
        started = ""
        if outcome.execution is not None:
            started = f"; ProcessVisit {outcome.execution.name} {outcome.execution.outcome.replace('_', ' ')}"
        click.echo(
            f"ingested {outcome.key}: {outcome.instrument} {outcome.obs_type} exposure {outcome.exposure} "
            f"detectors {','.join(map(str, outcome.detectors))}{started}"
        )
    else:
        click.echo(f"{outcome.status} {outcome.key}: {outcome.reason}")


def _report_ended(runtime, reported: set[str], as_json: bool) -> None:
    for e in runtime.interpreter.list_executions():
        if e.status != "RUNNING" and e.execution_arn not in reported:
            reported.add(e.execution_arn)
            if as_json:
                click.echo(json.dumps({"execution": e.execution_arn, "status": e.status, "error": e.error}))
            else:
                summary = e.output if isinstance(e.output, dict) else {}
                detail = (
                    f"{summary.get('succeeded', 0)} of {summary.get('quanta', 0)} detectors succeeded"
                    if summary
                    else f"{e.error}"
                )
                click.echo(f"execution {e.name}: {e.status} ({detail})")
