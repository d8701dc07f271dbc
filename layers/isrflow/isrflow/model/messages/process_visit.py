"""Step Functions events of ProcessVisit: state input, Plan, ISR cluster, failure record,
Summarize and mosaics.

Only small JSON travels through the state machine (256 KB payload limit): the cluster list
goes into a manifest in the datastore, and the quantum results into small JSON files (one per
cluster, :mod:`isrflow.process_visit.results`) under ``results/<execution>/``. Durations in seconds, memory in MB, sizes in bytes (see each field).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from isrflow.model.datasets import Quantum
from isrflow.model.defaults import DEFAULT_CLUSTER_SIZE
from isrflow.model.messages.common import CollectionName

OutputRunMode = Literal["fail", "skip-existing", "replace"]


class QuantumKey(BaseModel):
    """An explicit (instrument, exposure, detector) to process (prompt processing, reruns)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instrument: str = Field(min_length=1)
    exposure: int
    detector: int


class ProcessVisitInput(BaseModel):
    """The ProcessVisit state machine's input (``events/process_visit_input.json``).

    Give either ``where`` (a data query over the raws) or ``quanta`` (an explicit list).
    ``max_failure_fraction`` is the fraction of quanta allowed to fail before the execution
    fails; ``isr_config`` is an :class:`isrflow.isr.IsrConfig` as JSON.
    """

    model_config = ConfigDict(extra="forbid")

    where: str | None = None
    quanta: list[QuantumKey] | None = None
    input_collections: list[str] = Field(min_length=1)
    calib_collection: str
    output_run: CollectionName
    mode: OutputRunMode = "fail"
    cluster_size: int = Field(default=DEFAULT_CLUSTER_SIZE, ge=1, le=1000)
    max_concurrency: int = Field(default=100, ge=1, le=10000)
    max_failure_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    isr_config: dict[str, Any] = Field(default_factory=dict)
    previews: bool = Field(
        default=False, description="also write a PNG per detector and a mosaic per exposure"
    )

    @model_validator(mode="after")
    def _one_selection(self) -> ProcessVisitInput:
        if (self.where is None) == (self.quanta is None):
            raise ValueError("give exactly one of 'where' and 'quanta'")
        if self.quanta is not None and not self.quanta:
            raise ValueError("'quanta' is empty")
        return self


class PlanEvent(BaseModel):
    """What the Plan state sends the plan function: the state input and the execution id."""

    model_config = ConfigDict(extra="forbid")

    input: ProcessVisitInput
    execution_id: str = Field(min_length=1)


class Cluster(BaseModel):
    """Quanta one ISR worker processes together (same detector: calibrations read once)."""

    cluster_id: str
    quanta: list[Quantum] = Field(min_length=1)


class PlanResult(BaseModel):
    """The plan function's small answer; the clusters themselves are in the manifest."""

    execution_id: str
    execution_key: str = Field(description="filesystem/S3-safe form of the execution id")
    manifest_key: str = Field(description="key of the manifest under the data bucket / datastore root")
    manifest_uri: str
    results_prefix: str
    clusters: int
    quanta: int
    failed_at_plan: int = Field(description="quanta failed while planning (e.g. missing calibration)")
    skipped_existing: int
    output_run: str
    isr_config: dict[str, Any]
    max_concurrency: int
    max_failure_fraction: float
    previews: bool = False


class IsrClusterEvent(BaseModel):
    """One Map item: a cluster plus what every worker needs to know."""

    model_config = ConfigDict(extra="forbid")

    cluster: Cluster
    execution_id: str
    results_prefix: str
    output_run: CollectionName
    isr_config: dict[str, Any] = Field(default_factory=dict)
    previews: bool = False
    measure: bool = Field(
        default=False, description="also measure each output's statistics (calibration inputs)"
    )


class QuantumReads(BaseModel):
    """What one quantum read: datastore (S3 GET) bytes, and where each calibration came from
    (:mod:`isrflow.io.calib_cache`). A calibration already decoded in the worker (for an earlier
    quantum of the cluster, or a warm earlier invocation) is a memory hit."""

    raw_bytes: int = Field(default=0, ge=0, description="bytes of the raw read from the datastore")
    calib_bytes: int = Field(default=0, ge=0, description="calibration bytes read from the datastore")
    calib_memory_hits: int = Field(default=0, ge=0)
    calib_disk_hits: int = Field(default=0, ge=0, description="served from the worker's local disk cache")
    calib_misses: int = Field(default=0, ge=0, description="read from the datastore")


class QuantumResult(BaseModel):
    """One quantum's outcome, written as JSON under the execution's results prefix."""

    instrument: str
    exposure: int
    detector: int
    status: Literal["succeeded", "failed"]
    output_uri: str | None = None
    duration_s: float = Field(default=0.0, ge=0, description="wall seconds")
    peak_memory_mb: float | None = Field(default=None, ge=0, description="worker process peak RSS, MiB")
    retries: int = Field(default=0, ge=0)
    error: str | None = None
    messages_sent: int = Field(default=0, ge=0, description="registry messages sent for this quantum")
    output_size: int | None = Field(default=None, ge=0, description="bytes of the output file")
    stats: dict[str, Any] | None = Field(
        default=None,
        description="the output's statistics when measured (isrflow.calibration.stats.measure_input)",
    )
    reads: QuantumReads | None = None


class ClusterSummary(BaseModel):
    """The ISR function's small answer for one cluster."""

    cluster_id: str
    succeeded: int
    failed: int


class RecordFailureEvent(BaseModel):
    """Sent by a Map item's Catch: the worker itself failed, so record every quantum of its cluster."""

    model_config = ConfigDict(extra="ignore")

    cluster: Cluster
    results_prefix: str
    error: dict[str, Any] = Field(default_factory=dict, description="the Catch output: Error and Cause")


class SummarizeEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    plan: PlanResult


class VisitSummary(BaseModel):
    """What Summarize returns (and the CLI prints): counts, failures with reasons, durations."""

    execution_id: str
    quanta: int
    succeeded: int
    failed: int
    skipped_existing: int
    failures: list[QuantumResult] = Field(
        default_factory=list, description="at most 50, for the state output"
    )
    total_isr_seconds: float
    max_isr_seconds: float
    registry_messages: int


class MosaicEvent(BaseModel):
    """ProcessVisit's Mosaics state (with ``previews``): one focal-plane mosaic PNG per exposure
    of the manifest, from the per-detector thumbnails the workers wrote next to the outputs."""

    model_config = ConfigDict(extra="forbid")

    manifest_uri: str = Field(min_length=1)
    output_run: CollectionName
