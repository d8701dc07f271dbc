"""``isrflow tune FUNCTION``: the real handler at several Lambda memory settings, priced per 1,000
detectors (:mod:`isrflow.ops.tune`; workloads: :mod:`isrflow.ops.tune_workload`).

IsrFunction's workload is a ProcessVisit plan: ``--repo DIR --where QUERY`` over a repository's
raws, or by default a fresh repository of simulated science raws (``--camera``, ``--detectors``,
``--exposures``, ``--small``) with the simulator's true calibrations. Any function takes
``--event FILE`` (one JSON event or a list) instead, run against ``--repo``.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import click

from isrflow.cli.options import FiniteFloatRange, IdList, count, frames, json_option


def register(group: click.Group) -> None:
    group.add_command(tune_command)


def _isr_workload(
    app, env, repo: Path, where, input_collections, calib_collection, cluster_size
) -> tuple[list, int]:
    from isrflow.cli.run_cmds import process_visit_input
    from isrflow.ops.tune_workload import isr_events
    from isrflow.registry import open_repo

    registry = open_repo(repo)
    try:
        run = f"tune/{datetime.now(UTC):%Y%m%dT%H%M%S}"
        payload = process_visit_input(
            registry,
            where,
            None,
            list(input_collections),
            calib_collection,
            run,
            "fail",
            cluster_size,
            0.0,
            {},
        )
    finally:
        registry.close()
    return isr_events(app, payload, env)


@click.command("tune")
@click.argument("function")
@click.option(
    "--memory",
    "memory",
    default=None,
    help="settings to try, MB, comma-separated (default 1024,1536,2048,3008)",
)
@click.option(
    "--invocations",
    type=count(1),
    default=3,
    show_default=True,
    help="invocations per setting: the first is cold, the median of the others prices it",
)
@click.option(
    "--repo",
    "repo_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="repository to read the workload from (default: a fresh simulated one)",
)
@click.option("--where", default=None, help="IsrFunction: data query over the raws to plan (with --repo)")
@click.option(
    "--input-collections", multiple=True, help="IsrFunction: raw collections (default <INSTRUMENT>/raw/all)"
)
@click.option(
    "--calib-collection", default=None, help="IsrFunction: calibrations (default <INSTRUMENT>/calib)"
)
@click.option(
    "--cluster-size",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="IsrFunction: quanta (exposures of one detector) per invocation",
)
@click.option(
    "--camera",
    type=click.Choice(["hsc", "lsstcam", "decam", "generic"]),
    default="hsc",
    show_default=True,
    help="simulated workload: camera",
)
@click.option(
    "--detectors", type=IdList(), default=None, help="simulated workload: detectors (default the first)"
)
@click.option(
    "--exposures", type=frames(1), default=1, show_default=True, help="simulated workload: science exposures"
)
@click.option("--small", is_flag=True, help="simulated workload: tiny generic frames (--camera generic)")
@click.option(
    "--event",
    "event_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the event(s) to invoke FUNCTION with (JSON object or list), against --repo",
)
@click.option(
    "--architecture",
    type=click.Choice(["arm64", "x86_64"]),
    default=None,
    help="price as this architecture (default: the template's)",
)
@click.option(
    "--prices",
    "prices_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="price table overriding the built-in one",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=FiniteFloatRange(min=1),
    default=None,
    help="seconds per setting (default: the function's timeout x invocations + 60)",
)
@json_option
def tune_command(
    function,
    memory,
    invocations,
    repo_dir,
    where,
    input_collections,
    calib_collection,
    cluster_size,
    camera,
    detectors,
    exposures,
    small,
    event_file,
    architecture,
    prices_path,
    timeout_s,
    as_json,
):
    """Run FUNCTION's handler at several memory settings (CPU share and memory limit of Lambda
    emulated on this machine) and print the cost per 1,000 detectors of each: like AWS Lambda
    Power Tuning, on this machine."""
    from isrflow.ops.prices import load_prices
    from isrflow.ops.tune import DEFAULT_SETTINGS_MB, parse_settings, report_lines, tune
    from isrflow.ops.tune_workload import (
        events_from_file,
        find_function,
        local_function,
        scratch_env,
        simulated_repo,
        template_app,
    )

    settings = parse_settings(memory) if memory else list(DEFAULT_SETTINGS_MB)
    prices = load_prices(prices_path)
    app = template_app()
    spec = find_function(app, function)
    if event_file is None and spec.logical_id != "IsrFunction":
        raise click.UsageError(
            f"{spec.logical_id}: give its event(s) with --event FILE (a built-in workload exists "
            "for IsrFunction only)"
        )
    if event_file is not None and repo_dir is None:
        raise click.UsageError("--event needs --repo (the repository the event refers to)")
    if where is not None and repo_dir is None:
        raise click.UsageError("--where goes with --repo")
    if repo_dir is not None and event_file is None and not where:
        raise click.UsageError("--repo needs --where (the raws to plan) for IsrFunction")
    say = (lambda line: None) if as_json else (lambda line: click.echo(line, err=True))
    with tempfile.TemporaryDirectory(prefix="isrflow-tune-") as tmp:
        scratch = Path(tmp)
        if repo_dir is None:
            dets = detectors or ([1] if camera == "decam" else [0])
            say(
                f"simulating {exposures} {camera} science exposure(s) of detector(s) {','.join(map(str, dets))} ..."
            )
            repo, instrument = simulated_repo(
                scratch, camera=camera, detectors=dets, exposures=exposures, small=small
            )
            where = f"instrument = '{instrument}'"
            described = (
                f"simulated {camera}{' (small)' if small else ''}, {exposures} exposure(s) x "
                f"{len(dets)} detector(s)"
            )
        else:
            repo = repo_dir.absolute()
            described = f"{repo}" + (f", where {where}" if where else "")
        env = scratch_env(repo, scratch)
        if event_file is not None:
            events, detectors_total = events_from_file(event_file), None
            described = f"events of {event_file} against {repo}"
        else:
            events, detectors_total = _isr_workload(
                app, env, repo, where, input_collections, calib_collection, cluster_size
            )
        per_invocation = (detectors_total / len(events)) if detectors_total else 1.0
        fn = local_function(spec, env)
        arch = architecture or (spec.architectures or ["x86_64"])[0]
        report = tune(
            fn,
            events,
            settings,
            invocations=invocations,
            detectors_per_invocation=per_invocation,
            architecture=arch,
            prices=prices,
            workload=described,
            workdir=scratch,
            timeout_s=timeout_s,
            progress=say,
        )
    if as_json:
        click.echo(json.dumps(report.model_dump(mode="json"), indent=1))
    else:
        for line in report_lines(report):
            click.echo(line)
