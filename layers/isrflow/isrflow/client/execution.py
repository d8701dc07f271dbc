"""An execution handle: status, waiting with progress, per-detector table, cost, reruns, previews.

Returned by :meth:`isrflow.Client.process_visit`, :meth:`~isrflow.Client.calib_build`,
:meth:`~isrflow.Client.rerun_failed` and :meth:`~isrflow.Client.execution`. One class for both
backends: what differs (following a local runtime or DescribeExecution) is the backend's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from isrflow.client import Client

#: Columns of :meth:`Execution.detectors`: name, dtype, unit.
DETECTOR_COLUMNS = (
    ("instrument", "U16", None),
    ("exposure", "i8", None),
    ("detector", "i4", None),
    ("status", "U20", None),
    ("seconds", "f8", "s"),
    ("peak_memory_mb", "f8", "MiB"),
    ("retries", "i4", None),
    ("error", "U200", None),
)
FINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class Execution:
    """A state machine execution, running or ended, local or on AWS."""

    def __init__(
        self,
        client: Client,
        *,
        name: str,
        arn: str,
        state_machine: str,
        run: Any = None,
        total: int | None = None,
    ):
        self.client, self.name, self.arn, self.state_machine = client, name, arn, state_machine
        self._run = run  # LocalRun / AwsRun while this process follows it
        self.total = total  # quanta (detectors; inputs of a calibration build) it was started with
        self._info = None

    def __repr__(self) -> str:
        return f"<Execution {self.name} ({self.state_machine}): {self.status()}>"

    # ---------------------------------------------------------------- state

    def _describe(self) -> dict:
        if self._run is not None:
            if hasattr(self._run, "execution"):  # a LocalRun: the live interpreter execution
                ex = self._run.execution
                return {"status": ex.status, "output": ex.output, "error": ex.error, "cause": ex.cause}
            desc = self._run.describe()
        else:
            desc = self.client.backend.describe(self.arn)
        import json

        out = desc.get("output")
        return {
            "status": desc["status"],
            "output": json.loads(out) if isinstance(out, str) else out,
            "error": desc.get("error"),
            "cause": desc.get("cause"),
        }

    def status(self) -> str:
        """RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED (now)."""
        return self._describe()["status"]

    @property
    def output(self) -> Any:
        """The execution's output (its summary) once it has succeeded, else None."""
        return self._describe()["output"]

    def result(self) -> dict:
        """``{"execution", "status", "output", "error", "cause"}`` (what the CLI prints with --json)."""
        return {"execution": self.arn, **self._describe()}

    def wait(self, progress: bool = True, timeout: float | None = None) -> Execution:
        """Block until the execution ends (``timeout`` s at most), showing quanta done of the total
        with an ETA when ``progress`` (a bar on a terminal, plain lines elsewhere)."""
        from isrflow.infra.progress import Progress

        if self._run is None:
            return self
        bar = Progress(self.name, self.total, enabled=progress)
        try:
            self._run.wait(timeout, on_poll=bar.set)
        finally:
            if self._run.done:
                bar.close()
        return self

    # ---------------------------------------------------------------- what it did

    def info(self):
        """The full :class:`~isrflow.ops.status.ExecutionStatus` (rows, totals, usage, cost);
        read again until the execution has ended."""
        if self._info is None or self._info.status not in FINAL:
            self._info = self.client.backend.status(self.arn)
        return self._info

    def detectors(self):
        """Per-detector status, ISR seconds, peak memory (MiB), retries and error as an astropy Table."""
        from astropy.table import Table

        rows = self.info().rows
        table = Table(names=[c[0] for c in DETECTOR_COLUMNS], dtype=[c[1] for c in DETECTOR_COLUMNS])
        for name, _, unit in DETECTOR_COLUMNS:
            table[name].unit = unit
        for r in rows:
            table.add_row(
                (
                    r.instrument,
                    r.exposure,
                    r.detector,
                    r.status,
                    float("nan") if r.duration_s is None else r.duration_s,
                    float("nan") if r.peak_memory_mb is None else r.peak_memory_mb,
                    r.retries,
                    (r.error or "")[:200],
                )
            )
        return table

    def masters(self):
        """Per-master calib type, detector, filter, status, route, inputs, combine seconds and peak
        memory (MiB) of a calibration build, as an astropy Table (empty for ProcessVisit)."""
        from astropy.table import Table

        columns = (
            ("calib_type", "U8", None),
            ("instrument", "U16", None),
            ("detector", "i4", None),
            ("physical_filter", "U32", None),
            ("status", "U20", None),
            ("route", "U16", None),
            ("n_inputs", "i4", None),
            ("seconds", "f8", "s"),
            ("peak_memory_mb", "f8", "MiB"),
            ("error", "U200", None),
        )
        table = Table(names=[c[0] for c in columns], dtype=[c[1] for c in columns])
        for name, _, unit in columns:
            table[name].unit = unit
        nan = float("nan")
        for m in self.info().masters:
            table.add_row(
                (
                    m.calib_type,
                    m.instrument,
                    m.detector,
                    m.physical_filter or "",
                    m.status,
                    m.route or "",
                    -1 if m.n_inputs is None else m.n_inputs,
                    nan if m.duration_s is None else m.duration_s,
                    nan if m.peak_memory_mb is None else m.peak_memory_mb,
                    (m.error or "")[:200],
                )
            )
        return table

    def cost(self):
        """The estimated AWS cost (:class:`~isrflow.ops.cost.CostEstimate`, US dollars)."""
        return self.info().cost

    def rerun_failed(self, wait: bool = False, progress: bool = True) -> Execution | None:
        """A new execution with exactly the failed quanta, into the same output run (None when
        nothing failed); see :mod:`isrflow.ops.rerun`."""
        return self.client.rerun_failed(self.arn, wait=wait, progress=progress)

    def previews(self) -> dict[str, list[str]]:
        """Write a PNG per output detector and a focal-plane mosaic per exposure next to the outputs;
        ``{"previews": [...], "mosaics": [...]}`` (URIs)."""
        st = self.info()
        if not st.output_run:
            from isrflow.model.errors import ConfigError

            raise ConfigError(f"{self.name} has no output run to preview")
        return self.client.previews(st.output_run, st.input.get("where"))


__all__ = ["DETECTOR_COLUMNS", "Execution"]
