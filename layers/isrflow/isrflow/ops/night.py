"""The night model: what one night of ProcessVisit costs on AWS and how long it takes.

From per-detector figures (measured: an execution's records, :func:`figures_from_status`; or
the defaults below) and the price table, :func:`model_night` builds the AWS usage of a night of
``visits`` x the camera's detectors and prices it with the project's own usage and cost code:
the S3 and SQS requests of each execution come from :func:`isrflow.local.usage.visit_requests`
(the access pattern ``isrflow status`` counts), the registry writer's share from
:func:`isrflow.local.usage.writer_use`, and the dollars from :func:`isrflow.ops.cost.estimate`.

**Executions.** ``visits_per_execution`` visits per ProcessVisit execution (default 1: one per
visit), every detector of the camera; ISR clusters of up to ``cluster_size`` exposures of the same
detector (so at most ``visits_per_execution``). ``prompt``: one execution per raw file, i.e. per
detector of a visit (what the ingest function starts with ``PromptProcessing=true``; LSSTCam
writes one file per detector).

**ISR Lambda duration** of a cluster of ``k`` detectors: ``(k x isr_seconds + calib_decode_seconds
x (1 - cache hit rate)) x max(1, 1769 / memory)`` (compute, measured at one core; below one vCPU it
stretches: ``isr_seconds`` with the calibrations already decoded in the worker, plus reading,
checksumming and decoding them once per cluster whose worker's cache does not hold them) plus the
S3 transfers at ``s3_mbps``: ``k x (raw + output) + calibrations x (1 - cache hit rate)``. Billed at
the ISR function's memory. Plan and Summarize: one invocation each per execution, their measured
seconds plus (or minus) a per-detector part for each detector more (fewer) than the measured
execution had (Summarize mostly waits for the registry writer's batching window, a fixed cost);
ingest: one invocation per raw file.

**State transitions** per execution: ``transitions_per_execution`` (Plan, AnyWork,
ProcessClusters, WantMosaics, Summarize: the success path of ``statemachines/process_visit.asl.json``)
plus ``transitions_per_cluster`` (IsrCluster, in the cluster's child execution).

**Wall time** at ``concurrency`` workers: ``ceil(clusters / concurrency)`` waves of one cluster's
duration, plus one execution's Plan and Summarize: the night's ISR as one fan-out, the pool kept
full (prompt processing spreads the same work over the night as the visits arrive).

**Storage** (not in the nightly total): one night's outputs per month in S3 Standard, and in
Standard-IA once the bucket's lifecycle rule has moved them (``OutputsInfrequentAccessDays``).

Units: seconds, MB (10^6 bytes) for data, MB of memory as Lambda counts it, the price table's
currency.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from isrflow.local.usage import LambdaUse, Usage, visit_requests, writer_use
from isrflow.model.errors import ConfigError
from isrflow.ops.cost import CostEstimate, estimate
from isrflow.ops.prices import PriceTable
from isrflow.ops.tune import LAMBDA_MB_PER_VCPU

#: Calibrations one ISR quantum looks up (bias, dark, flat, defects).
CALIBRATIONS_PER_DETECTOR = 4
#: S3 transfer rate of one worker, MB/s: an assumption (AWS publishes no per-function figure;
#: measure it), applied to raw and calibration reads and to the output's write.
DEFAULT_S3_MBPS = 90.0
#: State transitions of a ProcessVisit execution that succeeds without mosaics: Plan, AnyWork,
#: ProcessClusters, WantMosaics, Summarize (process_visit.asl.json), and one per map child
#: (IsrCluster). A measured execution gives its own.
DEFAULT_TRANSITIONS_PER_EXECUTION = 5
DEFAULT_TRANSITIONS_PER_CLUSTER = 1
#: Defaults per megapixel of an assembled detector (used without a measured execution). ISR: CPU
#: seconds of the worker path (:func:`isrflow.process_visit.worker.process_quantum`: raw read and
#: decode, every default ISR step, quantized RICE encode of the output, sha256, write) for one
#: LSSTCam detector (16.4 Mpix) pinned to one core (Lambda's 1,769 MB), the cluster's calibrations
#: already decoded: median 0.96 s, best 0.90 s of 20 warm quanta (``bench/isr.py --camera lsstcam``
#: reports it as ``worker_warm_cpu_s``; this project's 2-core VM, AMD EPYC x86_64, 2026-12-07;
#: 1.10 s median before the issue-11 changes, HSC 0.45 s). CPU, not wall, seconds: the VM is
#: shared, and its wall times for the same work reach 2.5-3.6 s under load, the likely origin of
#: the 2.9 s this default was before. Decode: the cluster's first quantum less a warm one
#: (``worker_calib_decode_cpu_s``: read, sha256 and decode the tile-compressed bias, dark and
#: flat masters, IMAGE + MASK + VARIANCE): 1.29 s LSSTCam, 0.61 s HSC (~0.075 s per Mpix).
#: Sizes: the tile-compressed products of an HSC demo (isrflow.io.compression): masters bias + dark +
#: flat 45 MB, postISRCCD 12.7 MB per 8.55 Mpix detector. Raws: the camera model's pixels x 2 bytes.
DEFAULT_ISR_SECONDS_PER_MPIX = 0.058
DEFAULT_CALIB_DECODE_SECONDS_PER_MPIX = 0.075
DEFAULT_CALIB_MB_PER_MPIX = 5.3
DEFAULT_OUTPUT_MB_PER_MPIX = 1.5
#: Plan and Summarize seconds of an execution of DEFAULT_FIGURES_DETECTORS detectors, and per
#: detector more or fewer; the ingest function's seconds per raw file: assumptions.
DEFAULT_PLAN_SECONDS = 1.0
DEFAULT_SUMMARIZE_SECONDS = 6.0  # most of it waiting for the writer's 5 s batching window
DEFAULT_FIGURES_DETECTORS = 189
PLAN_SECONDS_PER_DETECTOR = 0.003  # a quantum through the registry query and the manifest
#: a result parsed and its processing record sent (set when each result was its own S3 GET; kept)
SUMMARIZE_SECONDS_PER_DETECTOR = 0.015
DEFAULT_INGEST_SECONDS = 0.3
#: Plan's and Summarize's Timeout (s) unless the setup says (the CLI takes template.yaml's).
DEFAULT_PLAN_TIMEOUT_S = 300
DEFAULT_SUMMARIZE_TIMEOUT_S = 900
#: The nightly budget the model is checked against.
BUDGET_USD = 10.0


class NightFigures(BaseModel):
    """Per-detector figures of the camera modelled, and where each came from."""

    isr_seconds: float = Field(
        gt=0, description="ISR compute seconds per detector at 1 vCPU, calibrations already decoded"
    )
    calib_decode_seconds: float = Field(
        default=0.0,
        ge=0,
        description="compute seconds at 1 vCPU to read, verify and decode one detector's calibrations "
        "(once per cluster whose worker's cache misses)",
    )
    raw_mb: float = Field(ge=0)
    calib_mb: float = Field(
        ge=0, description="calibrations one cluster reads when its worker's cache is cold"
    )
    output_mb: float = Field(ge=0)
    plan_seconds: float = Field(ge=0)
    summarize_seconds: float = Field(ge=0)
    figures_detectors: int = Field(
        ge=1, description="detectors of the execution plan/summarize were measured on"
    )
    ingest_seconds: float = Field(ge=0)
    transitions_per_execution: float = Field(ge=0)
    transitions_per_cluster: float = Field(ge=0)
    sources: dict[str, str] = Field(default_factory=dict)


class NightSetup(BaseModel):
    camera: str
    visits: int = Field(ge=1)
    detectors_per_visit: int = Field(ge=1)
    concurrency: int = Field(ge=1)
    visits_per_execution: int = Field(default=1, ge=1)
    cluster_size: int = Field(default=1, ge=1)
    prompt: bool = False
    cache_hit_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="calibration reads of a cluster served by its warm worker's cache",
    )
    s3_mbps: float = Field(default=DEFAULT_S3_MBPS, gt=0)
    isr_memory_mb: int = Field(ge=128)
    plan_memory_mb: int = Field(ge=128)
    summarize_memory_mb: int = Field(ge=128)
    ingest_memory_mb: int = Field(ge=128)
    writer_memory_mb: int = Field(ge=128)
    writer_batch: int = Field(ge=1)
    plan_timeout_s: int = Field(default=DEFAULT_PLAN_TIMEOUT_S, ge=1)
    summarize_timeout_s: int = Field(default=DEFAULT_SUMMARIZE_TIMEOUT_S, ge=1)
    architecture: str = "arm64"
    outputs_ia_days: int | None = None


class ServiceCost(BaseModel):
    service: str
    usd: float
    detail: str


class NightModel(BaseModel):
    setup: NightSetup
    figures: NightFigures
    detectors: int
    executions: int
    clusters: int
    cluster_seconds: float
    wall_seconds: float
    lambda_gb_seconds: float
    services: list[ServiceCost]
    total_usd: float
    per_1000_detectors_usd: float
    budget_usd: float
    within_budget: bool
    output_tb: float
    storage_month_usd: dict[str, float]
    assumptions: list[str]


# --------------------------------------------------------------------------- figures


def camera_pixels(camera: str) -> tuple[float, float, int]:
    """(mean assembled megapixels, mean raw megapixels, detectors) of a built-in camera."""
    from isrflow.camera import load_camera

    cam = load_camera(camera)
    assembled, raw = [], []
    for det in cam.detectors:
        rows, cols = cam.assembled_shape(det)
        assembled.append(rows * cols / 1e6)
        raw.append(sum(a.raw_box.width * a.raw_box.height for a in cam.amplifiers(det)) / 1e6)
    return statistics.fmean(assembled), statistics.fmean(raw), len(cam.detectors)


def default_figures(camera: str) -> NightFigures:
    """The documented defaults, scaled to ``camera``'s detector size."""
    mpix, raw_mpix, _ = camera_pixels(camera)
    note = f"default (ops/night.py), per megapixel x {mpix:.1f} Mpix"
    return NightFigures(
        isr_seconds=DEFAULT_ISR_SECONDS_PER_MPIX * mpix,
        calib_decode_seconds=DEFAULT_CALIB_DECODE_SECONDS_PER_MPIX * mpix,
        raw_mb=raw_mpix * 2.0,
        calib_mb=DEFAULT_CALIB_MB_PER_MPIX * mpix,
        output_mb=DEFAULT_OUTPUT_MB_PER_MPIX * mpix,
        plan_seconds=DEFAULT_PLAN_SECONDS,
        summarize_seconds=DEFAULT_SUMMARIZE_SECONDS,
        figures_detectors=DEFAULT_FIGURES_DETECTORS,
        ingest_seconds=DEFAULT_INGEST_SECONDS,
        transitions_per_execution=DEFAULT_TRANSITIONS_PER_EXECUTION,
        transitions_per_cluster=DEFAULT_TRANSITIONS_PER_CLUSTER,
        sources=dict.fromkeys(("isr_seconds", "calib_decode_seconds", "calib_mb", "output_mb"), note)
        | {
            "raw_mb": f"camera model: {raw_mpix:.1f} Mpix x 2 bytes",
            "plan_seconds": "default (ops/night.py)",
            "summarize_seconds": "default (ops/night.py)",
            "ingest_seconds": "default (ops/night.py)",
            "transitions": "process_visit.asl.json success path (ops/night.py)",
        },
    )


def figures_from_execution(repo, execution: str, camera: str) -> NightFigures:
    """Per-detector figures measured by one local ProcessVisit execution of ``repo`` (its record,
    quantum results and registry rows, as ``isrflow status`` reads them), scaled to
    ``camera`` by assembled pixels when the execution ran on another built-in camera."""
    from isrflow.camera import camera_for_instrument
    from isrflow.local.records import load_record
    from isrflow.ops.prices import load_prices
    from isrflow.ops.status import _manifest, _results, local_status, plan_result

    record = load_record(repo, execution)
    st = local_status(repo, execution, load_prices())
    ok = [r for r in st.rows if r.status == "succeeded" and r.duration_s is not None]
    if not ok:
        raise ConfigError(f"{execution}: no succeeded detector to take figures from")
    plan = plan_result(record.history)
    results = _results(plan)
    figures = default_figures(camera)
    sources = dict(figures.sources)
    source_camera = camera_for_instrument(ok[0].instrument)
    scale, where = 1.0, f"execution {st.name}"
    if source_camera and source_camera != camera:
        scale = camera_pixels(camera)[0] / camera_pixels(source_camera)[0]
        where += f" x {scale:.2f} ({source_camera} -> {camera} pixels)"
    figures.isr_seconds = statistics.median(r.duration_s for r in ok if r.duration_s is not None) * scale
    sources["isr_seconds"] = f"median of {len(ok)} detectors, {where}"
    figures.calib_decode_seconds = 0.0  # measured durations include the calibrations' decode
    sources["calib_decode_seconds"] = "included in the measured ISR seconds"
    quanta = [q for c in _manifest(plan) for q in c.get("quanta", [])]
    raws = [q["raw"]["size"] for q in quanta if (q.get("raw") or {}).get("size")]
    if raws:
        figures.raw_mb = statistics.fmean(raws) / 1e6 * scale
        sources["raw_mb"] = f"mean registered raw size, {where}"
    calibs = [sum(c["size"] for c in (q.get("calibs") or {}).values() if c and c.get("size")) for q in quanta]
    if any(calibs):
        figures.calib_mb = statistics.fmean(calibs) / 1e6 * scale
        sources["calib_mb"] = f"mean registered size of a detector's calibrations, {where}"
    sizes = [r["output_size"] for r in results if r.get("status") == "succeeded" and r.get("output_size")]
    if sizes:
        figures.output_mb = statistics.fmean(sizes) / 1e6 * scale
        sources["output_mb"] = f"mean output size, {where}"
    for attr, key in (("plan_seconds", "Plan"), ("summarize_seconds", "Summarize")):
        durations = [i.duration_s for i in record.invocations if key in i.function]
        if durations:
            setattr(figures, attr, sum(durations))
            sources[attr] = f"execution {st.name} ({len(st.rows)} detectors)"
    figures.figures_detectors = max(1, len(st.rows))
    if record.child_executions:
        figures.transitions_per_execution = record.state_transitions_top
        figures.transitions_per_cluster = (
            record.state_transitions - record.state_transitions_top
        ) / record.child_executions
        sources["transitions"] = (
            f"execution {st.name}: {record.state_transitions_top} + "
            f"{record.state_transitions - record.state_transitions_top} in "
            f"{record.child_executions} children"
        )
    figures.sources = sources
    return figures


# --------------------------------------------------------------------------- the model


def _synthetic_execution(instrument: str, detectors: int, visits: int, cluster_size: int):
    """(plan, clusters, results) of one execution in the shapes :func:`visit_requests` reads."""
    calibs = {
        d: {k: {"id": f"{k}-{d}"} for k in ("bias", "dark", "flat", "defects")} for d in range(detectors)
    }
    clusters: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for d in range(detectors):
        for start in range(0, visits, cluster_size):
            quanta = [
                {"instrument": instrument, "exposure": v, "detector": d, "calibs": calibs[d]}
                for v in range(start, min(visits, start + cluster_size))
            ]
            clusters.append({"quanta": quanta})
            results.extend(
                {"instrument": instrument, "exposure": v, "detector": d, "status": "succeeded"}
                for v in range(start, min(visits, start + cluster_size))
            )
    return {"previews": False, "failed_at_plan": 0}, clusters, results


def model_night(setup: NightSetup, figures: NightFigures, prices: PriceTable) -> NightModel:
    """Price the night (see the module docstring)."""
    if setup.prompt:
        executions, det_per_exec, visits_per_exec = setup.visits * setup.detectors_per_visit, 1, 1
    else:
        if setup.visits % setup.visits_per_execution:
            raise ConfigError(
                f"--visits {setup.visits} is not a multiple of --visits-per-execution "
                f"{setup.visits_per_execution}"
            )
        executions = setup.visits // setup.visits_per_execution
        det_per_exec, visits_per_exec = setup.detectors_per_visit, setup.visits_per_execution
    k = min(setup.cluster_size, visits_per_exec)
    plan, clusters, results = _synthetic_execution("CAM", det_per_exec, visits_per_exec, k)
    quanta = len(results)
    messages = 2 * quanta + 1  # a dataset message and a processing record per detector, the completion marker
    puts, gets, sqs = visit_requests(plan, clusters, results, Counter({"Summarize": 1}), messages)
    calib_gets = len(clusters) * CALIBRATIONS_PER_DETECTOR
    gets -= round(calib_gets * setup.cache_hit_rate)
    cpu = max(1.0, LAMBDA_MB_PER_VCPU / setup.isr_memory_mb)

    def transfer(n: int) -> float:  # S3 seconds of a cluster of n detectors
        return (
            n * (figures.raw_mb + figures.output_mb) + figures.calib_mb * (1.0 - setup.cache_hit_rate)
        ) / setup.s3_mbps

    more = quanta - figures.figures_detectors  # detectors of one execution: every visit's
    plan_s = max(figures.plan_seconds + PLAN_SECONDS_PER_DETECTOR * more, 0.1 * figures.plan_seconds)
    summarize_s = max(
        figures.summarize_seconds + SUMMARIZE_SECONDS_PER_DETECTOR * more, 0.1 * figures.summarize_seconds
    )
    arch = setup.architecture
    per_exec: list[LambdaUse] = [
        LambdaUse(
            function="PlanFunction", memory_mb=setup.plan_memory_mb, architecture=arch, duration_s=plan_s
        ),
        LambdaUse(
            function="SummarizeFunction",
            memory_mb=setup.summarize_memory_mb,
            architecture=arch,
            duration_s=summarize_s,
        ),
    ]
    per_exec += [
        LambdaUse(
            function="IsrFunction",
            memory_mb=setup.isr_memory_mb,
            architecture=arch,
            duration_s=(
                len(c["quanta"]) * figures.isr_seconds
                + figures.calib_decode_seconds * (1.0 - setup.cache_hit_rate)
            )
            * cpu
            + transfer(len(c["quanta"])),
        )
        for c in clusters
    ]
    per_exec += writer_use(messages, setup.writer_memory_mb, arch, setup.writer_batch)
    ingest = LambdaUse(
        function="IngestFunction",
        memory_mb=setup.ingest_memory_mb,
        architecture=arch,
        duration_s=figures.ingest_seconds,
    )
    one = Usage(
        lambda_invocations=per_exec + [ingest] * quanta,
        detectors=quanta,
        state_transitions=round(
            figures.transitions_per_execution + figures.transitions_per_cluster * len(clusters)
        ),
        sqs_requests=sqs + quanta,  # + the ingest's registry messages, one batch per raw file
        s3_put_requests=puts,
        s3_get_requests=gets + 2 * quanta,
    )  # + the ingest's ranged header GETs
    cost: CostEstimate = estimate(one, prices)
    b = cost.breakdown
    n = executions
    detectors = setup.visits * setup.detectors_per_visit
    isr = [u for u in per_exec if u.function == "IsrFunction"]
    cluster_s = statistics.fmean(u.duration_s for u in isr)
    total_clusters = len(isr) * n
    wall = plan_s + summarize_s + math.ceil(total_clusters / setup.concurrency) * cluster_s
    by_fn: dict[str, tuple[int, float, float]] = {}
    for u in one.lambda_invocations:
        count, gbs, usd = by_fn.get(u.function, (0, 0.0, 0.0))
        price = prices.per_architecture(prices.lambda_.gb_second, u.architecture, "Lambda GB-s")
        by_fn[u.function] = (
            count + 1,
            gbs + u.gb_seconds,
            usd + u.gb_seconds * price + prices.lambda_.requests_per_million / 1e6,
        )
    services = [
        ServiceCost(
            service=f"Lambda {fn.split(' ')[0].removesuffix('Function')}",
            usd=usd * n,
            detail=f"{count * n:,} invocations, {gbs * n:,.0f} GB-s",
        )
        for fn, (count, gbs, usd) in sorted(by_fn.items(), key=lambda kv: -kv[1][2])
    ]
    services += [
        ServiceCost(
            service="Step Functions",
            usd=b.stepfunctions.usd * n,
            detail=f"{b.stepfunctions.transitions * n:,} state transitions",
        ),
        ServiceCost(service="SQS", usd=b.sqs.usd * n, detail=f"{b.sqs.requests * n:,} requests"),
        ServiceCost(
            service="S3 requests",
            usd=b.s3.usd * n,
            detail=f"{b.s3.put_copy_post_list * n:,} PUT/LIST, {b.s3.get_select * n:,} GET",
        ),
    ]
    total = sum(s.usd for s in services)
    output_gb = figures.output_mb * detectors / 1e3
    storage = {cls: output_gb * price for cls, price in prices.s3.storage_gb_month.items()}
    assumptions = [
        f"{setup.visits:,} visits x {setup.detectors_per_visit} {setup.camera} detectors = {detectors:,} detector-ISRs",
        (
            "prompt: one ProcessVisit per raw file (detector)"
            if setup.prompt
            else f"{n:,} ProcessVisit executions of {visits_per_exec} visit(s), clusters of {k} exposure(s) of one detector"
        ),
        f"ISR {figures.isr_seconds:.2f} s compute per detector ({figures.sources.get('isr_seconds', '')})"
        + f", + {figures.calib_decode_seconds:.2f} s decoding the calibrations per cluster x "
        f"{1 - setup.cache_hit_rate:.0%}" + (f", x {cpu:.2f} below one vCPU" if cpu > 1 else ""),
        f"ISR Lambda {setup.isr_memory_mb} MB {arch}; S3 at {setup.s3_mbps:g} MB/s per worker: raw "
        f"{figures.raw_mb:.1f} MB + output {figures.output_mb:.1f} MB per detector, calibrations "
        f"{figures.calib_mb:.1f} MB per cluster x {1 - setup.cache_hit_rate:.0%} (warm-cache hit rate "
        f"{setup.cache_hit_rate:.0%})",
        f"Plan {plan_s:.2f} s and Summarize {summarize_s:.2f} s per execution of {quanta:,} detector(s) "
        f"({figures.plan_seconds:.2f} s and {figures.summarize_seconds:.2f} s measured at {figures.figures_detectors}, "
        f"{PLAN_SECONDS_PER_DETECTOR * 1000:g} and {SUMMARIZE_SECONDS_PER_DETECTOR * 1000:g} ms per detector more); "
        f"ingest {figures.ingest_seconds:.2f} s per raw file ({setup.ingest_memory_mb} MB)",
        f"{figures.transitions_per_execution:g} state transitions per execution + {figures.transitions_per_cluster:g} "
        f"per cluster ({figures.sources.get('transitions', '')})",
        f"wall: {total_clusters:,} clusters of {cluster_s:.1f} s in waves of {setup.concurrency} workers, plus one "
        "execution's Plan and Summarize",
        f"prices: {prices.source} ({prices.region}); free tiers not subtracted; storage not in the nightly total",
    ]
    for name, seconds, limit in (
        ("Plan", plan_s, setup.plan_timeout_s),
        ("Summarize", summarize_s, setup.summarize_timeout_s),
    ):
        if seconds > limit:
            assumptions.append(
                f"WARNING: an execution of {quanta:,} detectors needs {name} {seconds:.0f} s, past its "
                f"{limit} s timeout: use fewer visits per execution"
            )
    return NightModel(
        setup=setup,
        figures=figures,
        detectors=detectors,
        executions=n,
        clusters=total_clusters,
        cluster_seconds=cluster_s,
        wall_seconds=wall,
        lambda_gb_seconds=b.lambda_.gb_seconds * n,
        services=services,
        total_usd=total,
        per_1000_detectors_usd=total / detectors * 1000,
        budget_usd=BUDGET_USD,
        within_budget=total <= BUDGET_USD,
        output_tb=output_gb / 1e3,
        storage_month_usd=storage,
        assumptions=assumptions,
    )


__all__ = [
    "BUDGET_USD",
    "NightFigures",
    "NightModel",
    "NightSetup",
    "camera_pixels",
    "default_figures",
    "figures_from_execution",
    "model_night",
]
