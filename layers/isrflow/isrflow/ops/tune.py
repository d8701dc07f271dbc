"""``isrflow tune``: a function's real handler at several Lambda memory settings, priced per
1,000 detectors, like AWS Lambda Power Tuning.

Lambda gives a function CPU in proportion to its memory, 1 vCPU per 1,769 MB (at most 6 vCPU,
at 10,240 MB), and kills it when it uses more memory than configured. Each setting runs in a
fresh process on this machine (:mod:`.tune_child`), which invokes the handler through the local
runtime's Lambda machinery (:func:`isrflow.local.lambdas.invoke_here_timed`), with:

- **CPU**: the process pinned (``sched_setaffinity``) to ``ceil(vCPU)`` cores of this machine
  (at most all of them: a setting above this machine's cores is marked ``capped``) and, when
  the share is fractional, a duty cycle: it is continued (SIGCONT) for ``vCPU / cores`` of every
  :data:`DUTY_PERIOD_S` and stopped (SIGSTOP) for the rest, as the cgroup CPU quota of a Lambda
  sandbox does. The handler's wall time, stops included, is its billed duration.
- **memory**: the process's peak resident set (``wait4``'s ``ru_maxrss``: interpreter, imports,
  every invocation); a setting below it **fails** (on Lambda: ``Runtime.OutOfMemory``).
  ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` is set to the setting, as Lambda sets it (the calibration
  cache sizes its memory tier from it).

The first invocation of a setting is cold (it imports the handler module); the others are warm,
and the warm median is what a setting costs: GB-s x the price table's Lambda price
(:mod:`.prices`) plus the request, through :func:`isrflow.ops.cost.estimate`, divided by the
detectors one invocation processes. The cheapest setting is the cheapest that fits.

Units: memory in MB (Lambda's MB are MiB), durations in seconds, cost in the price table's
currency.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pydantic import BaseModel, Field

from isrflow.io.calib_cache import ENV_CACHE_DIR
from isrflow.local.lambdas import LocalFunction
from isrflow.local.usage import LambdaUse, Usage
from isrflow.model.errors import ConfigError
from isrflow.ops.cost import estimate
from isrflow.ops.prices import PriceTable

#: Lambda's CPU allocation: one vCPU per this many MB of configured memory.
LAMBDA_MB_PER_VCPU = 1769
#: The most vCPUs a Lambda function gets (at 10,240 MB).
LAMBDA_MAX_VCPUS = 6
#: Lambda's memory range (MB).
LAMBDA_MIN_MB, LAMBDA_MAX_MB = 128, 10240
#: Settings tried when none are given (MB): below, at and above one vCPU, and the new-account maximum.
DEFAULT_SETTINGS_MB = (1024, 1536, 2048, 3008)
#: Period of the CPU duty cycle (s): the process runs ``duty x`` of each period.
DUTY_PERIOD_S = 0.1
#: How often the parent checks whether the child has exited (s).
POLL_S = 0.05


def lambda_vcpus(memory_mb: float) -> float:
    """vCPUs Lambda gives a function of ``memory_mb`` MB."""
    return min(memory_mb / LAMBDA_MB_PER_VCPU, float(LAMBDA_MAX_VCPUS))


@dataclass(frozen=True)
class CpuShare:
    """How one setting's CPU is emulated here: the cores the process may use, and the fraction
    ``duty`` of each period it runs (1: no duty cycle). ``capped``: the setting has more vCPUs
    than this machine offers, so it runs on all of them, unthrottled."""

    vcpus: float
    cores: tuple[int, ...]
    duty: float
    capped: bool


def cpu_share(memory_mb: float, available: Sequence[int]) -> CpuShare:
    """The emulation of ``memory_mb``'s CPU on the cores in ``available`` (sorted core ids)."""
    if not available:
        raise ConfigError("tune: no CPU core is available to this process")
    vcpus = lambda_vcpus(memory_mb)
    n = min(max(1, math.ceil(vcpus - 1e-9)), len(available))
    capped = vcpus > len(available) + 1e-9
    duty = 1.0 if capped else min(1.0, vcpus / n)
    return CpuShare(vcpus=vcpus, cores=tuple(sorted(available)[:n]), duty=duty, capped=capped)


def parse_settings(text: str) -> list[int]:
    """``"1024,1769,3008"`` -> sorted unique MB values within Lambda's range (ConfigError otherwise)."""
    values: set[int] = set()
    for word in text.split(","):
        word = word.strip()
        if not word:
            continue
        try:
            mb = int(word)
        except ValueError:
            raise ConfigError(f"--memory: {word!r} is not a whole number of MB") from None
        if not LAMBDA_MIN_MB <= mb <= LAMBDA_MAX_MB:
            raise ConfigError(f"--memory: {mb} MB is outside Lambda's {LAMBDA_MIN_MB}-{LAMBDA_MAX_MB} MB")
        values.add(mb)
    if not values:
        raise ConfigError("--memory: give at least one setting (MB)")
    return sorted(values)


# --------------------------------------------------------------------------- one setting


class Invocation(BaseModel):
    ok: bool
    duration_s: float = Field(ge=0, description="handler wall seconds in the child, stops included")
    error: str | None = None


class Measurement(BaseModel):
    """What one setting's child process did: its invocations, peak RSS (MiB), exit."""

    invocations: list[Invocation]
    peak_rss_mb: float
    exit_code: int | None
    timed_out: bool = False


def _duty_cycle(pid: int, duty: float, period_s: float, stop: threading.Event) -> None:
    """Stop/continue ``pid`` so that it runs ``duty`` of every ``period_s`` until ``stop`` is set."""
    run_s, pause_s = duty * period_s, (1.0 - duty) * period_s
    try:
        while not stop.is_set():
            os.kill(pid, signal.SIGCONT)
            if stop.wait(run_s):
                break
            os.kill(pid, signal.SIGSTOP)
            stop.wait(pause_s)
    except ProcessLookupError:
        return
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _exited(pid: int) -> bool:
    """Whether ``pid`` (our child) has exited, without reaping it: a zombie cannot be replaced by
    another process, so the duty cycle never signals a recycled pid."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None


def measure(
    fn: LocalFunction,
    events: Sequence[dict],
    share: CpuShare,
    *,
    timeout_s: float,
    workdir: Path,
    period_s: float = DUTY_PERIOD_S,
) -> Measurement:
    """Invoke ``fn`` once per event in one fresh process under ``share``; its peak RSS and timings."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path, out_path = workdir / "spec.json", workdir / "invocations.jsonl"
    spec_path.write_text(json.dumps({"function": asdict(fn), "events": list(events)}))
    out_path.unlink(missing_ok=True)
    cores = list(share.cores)
    with open(workdir / "child.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "isrflow.ops.tune_child", str(spec_path), str(out_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, cores),
        )
    stop = threading.Event()
    duty = None
    if share.duty < 1.0:
        duty = threading.Thread(target=_duty_cycle, args=(proc.pid, share.duty, period_s, stop), daemon=True)
        duty.start()
    deadline = time.monotonic() + timeout_s
    timed_out = False
    while not _exited(proc.pid):
        if time.monotonic() > deadline:
            timed_out = True
            proc.kill()
            while not _exited(proc.pid):
                time.sleep(POLL_S)
            break
        time.sleep(POLL_S)
    stop.set()
    if duty is not None:
        duty.join()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    invocations = []
    if out_path.exists():
        invocations = [
            Invocation.model_validate_json(line) for line in out_path.read_text().splitlines() if line
        ]
    return Measurement(
        invocations=invocations,
        peak_rss_mb=usage.ru_maxrss / 1024.0,
        exit_code=proc.returncode,
        timed_out=timed_out,
    )


# --------------------------------------------------------------------------- the report


class SettingResult(BaseModel):
    memory_mb: int
    vcpus: float
    cores: int = Field(description="cores of this machine the process was pinned to")
    duty: float = Field(description="fraction of each period the process ran")
    capped: bool = Field(description="the setting has more vCPUs than this machine: run on all cores")
    invocations: int
    failed_invocations: int
    cold_s: float | None
    warm_s: float | None = Field(description="median of the warm invocations (the cold one if it is alone)")
    peak_rss_mb: float
    fits: bool = Field(description="every invocation succeeded within the memory and the timeout")
    why_not: str | None = None
    usd_per_invocation: float | None = None
    cost_per_1000_detectors: float | None = None


class TuneReport(BaseModel):
    function: str
    workload: str
    detectors_per_invocation: float
    architecture: str
    prices: str
    currency: str
    settings: list[SettingResult]
    cheapest_mb: int | None
    fastest_mb: int | None
    notes: list[str] = Field(default_factory=list)


def judge(
    memory_mb: int,
    share: CpuShare,
    m: Measurement,
    *,
    detectors_per_invocation: float,
    architecture: str,
    prices: PriceTable,
    function: str,
) -> SettingResult:
    """One setting's row: does it fit (memory, errors, timeout), its durations and its cost."""
    durations = [i.duration_s for i in m.invocations]
    failed = sum(not i.ok for i in m.invocations)
    cold = durations[0] if durations else None
    warm = statistics.median(durations[1:]) if len(durations) > 1 else cold
    why = None
    if m.peak_rss_mb > memory_mb:
        why = f"peak {m.peak_rss_mb:.0f} MiB > {memory_mb} MB (Runtime.OutOfMemory on Lambda)"
    elif m.timed_out:
        why = "timed out"
    elif failed:
        first = next(i.error for i in m.invocations if not i.ok)
        why = f"{failed} invocation(s) failed: {first}"
    elif not m.invocations or m.exit_code not in (0, None):
        why = f"the process exited with {m.exit_code} after {len(m.invocations)} invocation(s)"
    usd = per_1000 = None
    if warm is not None:
        use = LambdaUse(function=function, memory_mb=memory_mb, architecture=architecture, duration_s=warm)
        cost = estimate(Usage(lambda_invocations=[use], detectors=1), prices)
        usd = cost.cost_usd
        per_1000 = usd / detectors_per_invocation * 1000.0 if detectors_per_invocation > 0 else None
    return SettingResult(
        memory_mb=memory_mb,
        vcpus=round(share.vcpus, 3),
        cores=len(share.cores),
        duty=round(share.duty, 3),
        capped=share.capped,
        invocations=len(m.invocations),
        failed_invocations=failed,
        cold_s=cold,
        warm_s=warm,
        peak_rss_mb=round(m.peak_rss_mb, 1),
        fits=why is None,
        why_not=why,
        usd_per_invocation=usd,
        cost_per_1000_detectors=per_1000,
    )


def tune(
    fn: LocalFunction,
    events: Sequence[dict],
    settings_mb: Sequence[int],
    *,
    invocations: int,
    detectors_per_invocation: float,
    architecture: str,
    prices: PriceTable,
    workload: str,
    workdir: Path | None = None,
    timeout_s: float | None = None,
    available: Sequence[int] | None = None,
    progress=None,
) -> TuneReport:
    """Run ``fn`` at every setting (``invocations`` invocations each, cycling over ``events``)."""
    if not events:
        raise ConfigError(f"tune {fn.name}: the workload has no event to invoke it with")
    if invocations < 1:
        raise ConfigError("tune: --invocations must be at least 1")
    cores = sorted(available if available is not None else os.sched_getaffinity(0))
    run_events = [events[i % len(events)] for i in range(invocations)]
    limit = timeout_s if timeout_s is not None else fn.timeout_s * invocations + 60.0
    rows: list[SettingResult] = []
    with tempfile.TemporaryDirectory(prefix="isrflow-tune-", dir=workdir) as tmp:
        for mb in settings_mb:
            share = cpu_share(mb, cores)
            if progress is not None:
                progress(
                    f"{mb} MB: {share.vcpus:.2f} vCPU on {len(share.cores)} core(s) at duty {share.duty:.2f}, "
                    f"{invocations} invocation(s) ..."
                )
            env = dict(fn.environment) | {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(mb)}
            if ENV_CACHE_DIR in env:  # a fresh sandbox: its /tmp cache starts empty
                env[ENV_CACHE_DIR] = str(Path(tmp) / f"{mb}" / "calib-cache")
            m = measure(
                replace(fn, memory_mb=mb, environment=env),
                run_events,
                share,
                timeout_s=limit,
                workdir=Path(tmp) / str(mb),
            )
            rows.append(
                judge(
                    mb,
                    share,
                    m,
                    detectors_per_invocation=detectors_per_invocation,
                    architecture=architecture,
                    prices=prices,
                    function=fn.name,
                )
            )
    fitting = [r for r in rows if r.fits and r.cost_per_1000_detectors is not None]
    cheapest = min(fitting, key=lambda r: (r.cost_per_1000_detectors, r.memory_mb), default=None)
    fastest = min(fitting, key=lambda r: (r.warm_s, r.memory_mb), default=None)
    notes = [
        f"CPU emulated on {len(cores)} core(s) of this machine: 1 vCPU per {LAMBDA_MB_PER_VCPU} MB, "
        f"duty cycle of {DUTY_PERIOD_S * 1000:.0f} ms below a whole core",
        "memory: a setting below the process's peak RSS fails (Lambda stops the sandbox)",
        "cost: warm median duration x memory x the Lambda price + one request, per detector",
    ]
    if any(r.capped for r in rows):
        notes.append(
            "capped settings have more vCPUs than this machine: their times are what all its cores do"
        )
    return TuneReport(
        function=fn.name,
        workload=workload,
        detectors_per_invocation=detectors_per_invocation,
        architecture=architecture,
        prices=prices.source,
        currency=prices.currency,
        settings=rows,
        cheapest_mb=cheapest.memory_mb if cheapest else None,
        fastest_mb=fastest.memory_mb if fastest else None,
        notes=notes,
    )


def report_lines(report: TuneReport) -> list[str]:
    """The report as the table ``isrflow tune`` prints."""
    lines = [
        f"{report.function}: {report.workload}",
        f"{report.detectors_per_invocation:g} detector(s) per invocation, {report.architecture} prices "
        f"({report.prices})",
        f"{'memory MB':>9} {'vCPU':>5} {'cores':>5} {'duty':>5} {'cold s':>7} {'warm s':>7} {'peak MiB':>8} "
        f"{'fits':>4} {'$/invocation':>13} {'$/1000 det':>11}",
    ]
    for r in report.settings:
        cold = f"{r.cold_s:.2f}" if r.cold_s is not None else "-"
        warm = f"{r.warm_s:.2f}" if r.warm_s is not None else "-"
        inv = f"{r.usd_per_invocation:.8f}" if r.usd_per_invocation is not None else "-"
        per = f"{r.cost_per_1000_detectors:.5f}" if r.cost_per_1000_detectors is not None else "-"
        lines.append(
            f"{r.memory_mb:>9} {r.vcpus:>5.2f} {r.cores:>5} {r.duty:>5.2f} {cold:>7} {warm:>7} "
            f"{r.peak_rss_mb:>8.0f} {'yes' if r.fits else 'NO':>4} {inv:>13} {per:>11}"
            + (f"  {r.why_not}" if r.why_not else "")
            + ("  (capped)" if r.capped else "")
        )
    by_mb = {r.memory_mb: r for r in report.settings}
    if report.cheapest_mb is None:
        lines.append("no setting fits")
    else:
        # a setting that fits is both the cheapest and the fastest of one at least
        c = by_mb[report.cheapest_mb]
        f = by_mb[report.fastest_mb if report.fastest_mb is not None else report.cheapest_mb]
        lines.append(
            f"cheapest: {c.memory_mb} MB, {report.currency} {c.cost_per_1000_detectors:.5f} per 1,000 "
            f"detectors (warm {c.warm_s:.2f} s, peak {c.peak_rss_mb:.0f} MiB)"
        )
        lines.append(
            f"fastest:  {f.memory_mb} MB, warm {f.warm_s:.2f} s, {report.currency} "
            f"{f.cost_per_1000_detectors:.5f} per 1,000 detectors"
        )
    lines.extend(f"note: {n}" for n in report.notes)
    return lines


__all__ = [
    "DEFAULT_SETTINGS_MB",
    "LAMBDA_MB_PER_VCPU",
    "CpuShare",
    "Invocation",
    "Measurement",
    "SettingResult",
    "TuneReport",
    "cpu_share",
    "judge",
    "lambda_vcpus",
    "measure",
    "parse_settings",
    "report_lines",
    "tune",
]
