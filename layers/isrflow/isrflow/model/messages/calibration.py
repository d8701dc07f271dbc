"""Step Functions events of BuildCalibration: input, Plan, Normalize, PrepareCombine, Combine,
Certify and Summarize.

As in ProcessVisit only small JSON travels through the state machine: the ISR clusters, the
per-master input groups and the combine items are manifests in the datastore; each combine
request is a JSON object in the datastore whose URI is all a Lambda payload or a Fargate
container override carries (overrides are capped at 8 KiB). Durations in seconds, memory in
MB, sizes in bytes (see each field).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from isrflow.model.defaults import DEFAULT_CLUSTER_SIZE
from isrflow.model.messages.common import CollectionName, UtcDatetime
from isrflow.model.messages.process_visit import (
    QuantumResult,
)

CalibBuildType = Literal["bias", "dark", "flat", "defects"]
CombineStatistic = Literal["meanclip", "median", "mean"]
CombineRouteChoice = Literal["auto", "lambda", "fargate"]


class CertifySpec(BaseModel):
    """Certify the built masters into a CALIBRATION collection for ``[begin, end)`` (UTC; None = unbounded)."""

    model_config = ConfigDict(extra="forbid")

    collection: CollectionName
    begin: UtcDatetime | None = None
    end: UtcDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> CertifySpec:
        if self.begin is not None and self.end is not None and not self.begin < self.end:
            raise ValueError("validity range is empty: begin must be before end")
        return self


class BuildCalibrationInput(BaseModel):
    """The BuildCalibration state machine's input (``events/build_calibration_input.json``).

    ``where`` selects the input raws (bias, dark, flat: the observation type is added) or the
    detectors whose master dark and flat(s) the defects are found from (defects). Raws come from
    ``input_collections`` (masters too, for defects); the bias (darks, flats) and dark (flats)
    their ISR needs from ``calib_collection``. ``isr_config`` overrides fields of the type's ISR
    step set; ``route`` forces the combine onto the Lambda or Fargate (``auto``: by estimated
    time and memory); ``combine_memory_mb`` sets the combine's strip budget explicitly
    (default: from the worker's memory). ``max_failure_fraction`` is the fraction of masters
    allowed to fail; a master needs ``min_inputs`` successfully ISR'd inputs.
    ``keep_intermediates``: keep the ISR'd input frames (cpBiasProc, cpDarkProc, cpFlatProc) of
    the masters built; by default the DeleteIntermediates state removes them after the combine
    (their registry rows stay, as the masters' provenance).
    """

    model_config = ConfigDict(extra="forbid")

    calib_type: CalibBuildType
    where: str | None = None
    input_collections: list[str] = Field(min_length=1)
    calib_collection: str | None = None
    output_run: CollectionName
    mode: Literal["fail", "replace"] = "fail"
    statistic: CombineStatistic = "meanclip"
    clip: float = Field(default=3.0, gt=0)
    iterations: int = Field(default=3, ge=1, le=20)
    min_inputs: int = Field(default=3, ge=1)
    cluster_size: int = Field(default=DEFAULT_CLUSTER_SIZE, ge=1, le=1000)
    max_concurrency: int = Field(default=100, ge=1, le=10000)
    max_failure_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    isr_config: dict[str, Any] = Field(default_factory=dict)
    route: CombineRouteChoice = "auto"
    combine_memory_mb: float | None = Field(default=None, gt=0)
    certify: CertifySpec | None = None
    keep_intermediates: bool = False

    @model_validator(mode="after")
    def _calibs_needed(self) -> BuildCalibrationInput:
        if self.calib_type in ("dark", "flat") and not self.calib_collection:
            raise ValueError(
                f"a {self.calib_type} build needs 'calib_collection' (the certified bias"
                + (" and dark" if self.calib_type == "flat" else "")
                + " its inputs' ISR uses)"
            )
        if self.calib_type == "defects" and self.isr_config:
            raise ValueError("defects are found from master calibrations: 'isr_config' does not apply")
        return self


class CalibPlanEvent(BaseModel):
    """What the Plan state sends the calib_plan function."""

    model_config = ConfigDict(extra="forbid")

    input: BuildCalibrationInput
    execution_id: str = Field(min_length=1)


class CalibPlanResult(BaseModel):
    """The calib_plan function's answer (``$.plan.result``); the lists are in the datastore."""

    execution_id: str
    execution_key: str
    calib_type: CalibBuildType
    output_run: str
    mode: Literal["fail", "replace"]
    manifest_key: str = Field(description="ISR clusters manifest (ItemReader key)")
    manifest_uri: str
    clusters: int
    inputs: int = Field(description="input frames planned (ISR quanta, or master dark/flats for defects)")
    failed_at_plan: int
    groups_uri: str = Field(description="JSON list of MasterGroup")
    masters: int
    isr_results_prefix: str
    master_results_prefix: str
    requests_prefix: str
    isr_config: dict[str, Any]
    statistic: CombineStatistic
    clip: float
    iterations: int
    min_inputs: int
    route: CombineRouteChoice
    combine_memory_mb: float | None = None
    certify: CertifySpec | None = None
    certify_requested: bool = False
    max_concurrency: int
    max_failure_fraction: float
    keep_intermediates: bool = False


class MasterInput(BaseModel):
    """One input of a master: an ISR'd frame (role ``input``) or, for defects, a master dark/flat."""

    dataset_id: uuid.UUID
    uri: str
    exposure: int | None = None
    role: str = "input"
    calibs: dict[str, MasterInput] = Field(
        default_factory=dict, description="calibrations its ISR subtracts (bias, dark), with their URIs"
    )


class MasterGroup(BaseModel):
    """One master to build: its data id and output, and its planned inputs."""

    key: str
    calib_type: CalibBuildType
    instrument: str
    detector: int
    detector_name: str
    physical_filter: str | None = None
    data_id: dict[str, Any]
    dataset_id: uuid.UUID
    output_uri: str
    replace: bool = False
    inputs: list[MasterInput]


class CalibStepEvent(BaseModel):
    """Normalize, PrepareCombine, DeleteIntermediates, Certify and Summarize: the plan."""

    model_config = ConfigDict(extra="ignore")

    plan: CalibPlanResult


class IntermediatesDeleted(BaseModel):
    """DeleteIntermediates: the ISR'd inputs of the masters built, removed from the datastore."""

    masters: int = Field(description="masters built whose inputs were deleted")
    deleted: int = Field(description="objects deleted (S3: asked for; missing ones count too)")


class NormalizeResult(BaseModel):
    """Flat normalisation: one scale per exposure (the JSON at ``scales_uri``) per physical filter."""

    scales_uri: str
    filters: int
    exposures: int
    detectors: int


class FlatScalesDoc(BaseModel):
    """What Normalize writes: per physical filter, each exposure's scale E and each detector's response G."""

    exposure: dict[str, dict[str, float]] = Field(description="filter -> {exposure id: E (e-)}")
    detector: dict[str, dict[str, float]] = Field(description="filter -> {detector id: G (mean 1)}")


class CombineItem(BaseModel):
    """One combine Map item (a line of the combine manifest)."""

    key: str
    instrument: str
    detector: int
    physical_filter: str | None = None
    route: Literal["lambda", "fargate"]
    request_uri: str
    result_uri: str


class PrepareCombineResult(BaseModel):
    manifest_key: str
    manifest_uri: str
    masters: int = Field(description="masters to combine (Map items)")
    failed_before_combine: int = Field(description="masters with too few good inputs, recorded failed")
    routes: dict[str, int]


class CombineInputRef(BaseModel):
    uri: str
    dataset_id: uuid.UUID
    exposure: int | None = None
    role: str = "input"
    scale: float = Field(default=1.0, gt=0, description="the input is divided by this (dark time s; flat E)")


class CommonCalibrationRef(BaseModel):
    """A calibration subtracted from the inputs in their ISR (see isrflow.calibration.combine.CommonCalibration)."""

    uri: str
    fraction: float = Field(gt=0, le=1)
    factor2: float = Field(ge=0)


class CombineRequest(BaseModel):
    """Everything one combine (Lambda or Fargate task) needs, stored in the datastore."""

    model_config = ConfigDict(extra="forbid")

    execution_id: str
    key: str
    calib_type: CalibBuildType
    instrument: str
    detector: int
    detector_name: str
    physical_filter: str | None = None
    inputs: list[CombineInputRef] = Field(min_length=1)
    common: list[CommonCalibrationRef] = Field(default_factory=list)
    statistic: CombineStatistic = "meanclip"
    clip: float = Field(default=3.0, gt=0)
    iterations: int = Field(default=3, ge=1)
    mask_planes: list[str]
    output_run: CollectionName
    data_id: dict[str, Any]
    dataset_id: uuid.UUID
    output_uri: str
    replace: bool = False
    result_uri: str
    route: Literal["lambda", "fargate"]
    route_reason: str = ""
    memory_budget_mb: float | None = Field(
        default=None, gt=0, description="strip budget; None = from the worker"
    )


class CombineEvent(BaseModel):
    """The combine Lambda's payload: where its request is."""

    model_config = ConfigDict(extra="forbid")

    request_uri: str = Field(min_length=1)


class MasterResult(BaseModel):
    """One master's outcome, written as JSON under the execution's master results prefix."""

    key: str
    calib_type: CalibBuildType
    instrument: str
    detector: int
    physical_filter: str | None = None
    status: Literal["succeeded", "failed"]
    route: Literal["lambda", "fargate", "none"] = "none"
    output_uri: str | None = None
    dataset_id: uuid.UUID | None = None
    n_inputs: int = 0
    strips: int = 0
    rows_per_strip: int = 0
    no_data_pixels: int = 0
    #: What combined the strips: forked worker processes or threads (None: no combine ran).
    workers: Literal["processes", "threads"] | None = None
    defects: dict[str, int] | None = None
    duration_s: float = Field(default=0.0, ge=0)
    peak_memory_mb: float | None = Field(default=None, ge=0)
    exit_code: int | None = None
    error: str | None = None
    messages_sent: int = Field(default=0, ge=0)


class CombineChildState(BaseModel):
    """A combine Map child's state when it fails: its item, the Catch error (``{"Error",
    "Cause"}``) and, for a Fargate task that stopped (``States.TaskFailed``: the essential
    container exited non-zero), the described task parsed from the Cause and that container's
    ``exit_code`` (read by the state machine from ``Containers[0].ExitCode``)."""

    item: CombineItem
    error: dict[str, Any] | None = None
    task: dict[str, Any] | None = None
    exit_code: int | None = None


class CombineFailureEvent(BaseModel):
    """RecordCombineFailure: a combine failed (Lambda error, Fargate task error or non-zero exit)."""

    model_config = ConfigDict(extra="ignore")

    state: CombineChildState


class CertifyResult(BaseModel):
    certified: int
    collection: str | None = None
    skipped_reason: str | None = None


class CalibSummary(BaseModel):
    """What the BuildCalibration Summarize returns (and ``isrflow calib build`` prints)."""

    execution_id: str
    calib_type: CalibBuildType
    output_run: str
    masters: int
    succeeded: int
    failed: int
    inputs: int
    inputs_failed: int
    certified: int
    certify_collection: str | None = None
    failures: list[MasterResult] = Field(default_factory=list, description="at most 50")
    input_failures: list[QuantumResult] = Field(default_factory=list, description="at most 50")
    routes: dict[str, int] = Field(default_factory=dict)
    total_combine_seconds: float
    max_combine_seconds: float
    registry_messages: int
    outputs: list[str] = Field(
        default_factory=list, description="output URIs of the succeeded masters (at most 200)"
    )
