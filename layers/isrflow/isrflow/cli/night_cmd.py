"""``isrflow plan-night``: the modelled wall time and cost per service of one night of ProcessVisit
(:mod:`isrflow.ops.night`), from an execution's measured figures or the documented defaults,
checked against the nightly budget. Memory and batch sizes are the template's defaults unless given.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from isrflow.cli.options import FiniteFloatRange, count, json_option


def register(group: click.Group) -> None:
    group.add_command(plan_night_command)


def _template_settings() -> dict:
    """Memory of each function, Plan's and Summarize's timeouts, the writer's batch, the ISR
    concurrency and the lifecycle days, from template.yaml's defaults."""
    from isrflow.ops.tune_workload import find_function, template_app

    app = template_app()
    mapping = next(m for m in app.event_source_mappings if m.enabled)

    def memory(key: str) -> int:
        return find_function(app, key).memory_mb

    params = app.parameters
    return {
        "isr_memory_mb": memory("IsrFunction"),
        "plan_memory_mb": memory("PlanFunction"),
        "summarize_memory_mb": memory("SummarizeFunction"),
        "ingest_memory_mb": memory("IngestFunction"),
        "writer_memory_mb": app.functions[mapping.function].memory_mb,
        "writer_batch": mapping.batch_size,
        "plan_timeout_s": find_function(app, "PlanFunction").timeout_s,
        "summarize_timeout_s": find_function(app, "SummarizeFunction").timeout_s,
        "architecture": (find_function(app, "IsrFunction").architectures or ["arm64"])[0],
        "concurrency": int(str(params.get("IsrMaxConcurrency") or 500)) or 500,
        "outputs_ia_days": int(str(params["OutputsInfrequentAccessDays"]))
        if params.get("OutputsInfrequentAccessDays")
        else None,
    }


@click.command("plan-night")
@click.option("--visits", type=count(1), default=1000, show_default=True)
@click.option(
    "--camera", type=click.Choice(["lsstcam", "hsc", "decam"]), default="lsstcam", show_default=True
)
@click.option(
    "--concurrency",
    type=count(1),
    default=None,
    help="ISR workers at once (default: the template's IsrMaxConcurrency)",
)
@click.option(
    "--visits-per-execution",
    type=count(1),
    default=1,
    show_default=True,
    help="visits one ProcessVisit execution processes",
)
@click.option(
    "--cluster-size",
    type=count(1),
    default=1,
    show_default=True,
    help="exposures of one detector per ISR invocation (at most --visits-per-execution)",
)
@click.option("--prompt", is_flag=True, help="one execution per raw file, as prompt processing starts them")
@click.option(
    "--cache-hit-rate",
    type=FiniteFloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="fraction of a cluster's calibration reads its warm worker's cache serves",
)
@click.option(
    "--memory",
    "isr_memory_mb",
    type=click.IntRange(128, 10240),
    default=None,
    help="ISR function memory, MB (default: the template's)",
)
@click.option("--architecture", type=click.Choice(["arm64", "x86_64"]), default=None)
@click.option(
    "--s3-mbps",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    help="S3 transfer rate of one worker, MB/s (default 90, an assumption)",
)
@click.option(
    "--from-execution",
    "execution",
    default=None,
    help="take the per-detector figures from this local ProcessVisit execution (with --repo)",
)
@click.option("--repo", "repo_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--prices", "prices_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@json_option
def plan_night_command(
    visits,
    camera,
    concurrency,
    visits_per_execution,
    cluster_size,
    prompt,
    cache_hit_rate,
    isr_memory_mb,
    architecture,
    s3_mbps,
    execution,
    repo_dir,
    prices_path,
    as_json,
):
    """Model one night: wall time at a concurrency and the cost per service, with its assumptions,
    checked against the $10 budget."""
    from isrflow.ops.night import (
        DEFAULT_S3_MBPS,
        NightSetup,
        camera_pixels,
        default_figures,
        figures_from_execution,
        model_night,
    )
    from isrflow.ops.night_report import report_lines
    from isrflow.ops.prices import load_prices

    if (execution is None) != (repo_dir is None):
        raise click.UsageError("--from-execution and --repo go together")
    prices = load_prices(prices_path)
    settings = _template_settings()
    settings.update(
        {
            k: v
            for k, v in (
                ("isr_memory_mb", isr_memory_mb),
                ("architecture", architecture),
                ("concurrency", concurrency),
            )
            if v is not None
        }
    )
    figures = (
        figures_from_execution(repo_dir, execution, camera)
        if execution is not None
        else default_figures(camera)
    )
    setup = NightSetup(
        camera=camera,
        visits=visits,
        detectors_per_visit=camera_pixels(camera)[2],
        visits_per_execution=visits_per_execution,
        cluster_size=cluster_size,
        prompt=prompt,
        cache_hit_rate=cache_hit_rate,
        s3_mbps=s3_mbps or DEFAULT_S3_MBPS,
        **settings,
    )
    model = model_night(setup, figures, prices)
    if as_json:
        click.echo(json.dumps(model.model_dump(mode="json"), indent=1))
    else:
        for line in report_lines(model, prices.currency):
            click.echo(line)
