"""Every message isrflow components exchange, as pydantic models.

Sections:

1. Common pieces (UTC time type, message base).
2. Registry messages: what producers (ingest, ISR workers, calibration steps, the state
   machines) send to the registry queue and the writer applies in batches. A discriminated
   union on ``kind`` (:data:`RegistryMessage`) parses any of them.
3. JSON helpers.

(The Step Functions event models are added as further sections of this module.)

All times are timezone-aware UTC datetimes; a naive datetime is refused rather than guessed.
This module imports only pydantic and the pure-Python parts of the registry (no SQLAlchemy,
numpy or astropy), so every Lambda can use it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from isrflow.model.observation import ObservationInfo
from isrflow.registry.ids import (
    CALIBRATION_TYPES,
    DATASET_TYPES,
    canonical_json,
    check_collection_name,
    dataset_id_normalized,
    normalize_data_id,
)

# =============================================================================================
# 1. Common pieces
# =============================================================================================


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("time must be timezone-aware (UTC)")
    return value.astimezone(UTC)


#: A timezone-aware datetime, converted to UTC.
UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


def _collection(value: str) -> str:
    try:
        return check_collection_name(value)
    except Exception as exc:  # CollectionError -> pydantic validation error
        raise ValueError(str(exc)) from None


CollectionName = Annotated[str, AfterValidator(_collection)]


def new_message_id() -> str:
    """A fresh message id (32 hex digits). Redeliveries of one message keep its id."""
    return uuid.uuid4().hex


class _Message(BaseModel):
    """Base of registry messages.

    ``message_id`` identifies the message (not the SQS delivery): the writer counts each
    message id once per execution however often SQS delivers it. ``execution_id`` (optional)
    ties the message to a state-machine execution so ``Registry.wait_applied`` can wait for it.
    """

    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(default_factory=new_message_id, min_length=1, max_length=64)
    execution_id: str | None = Field(default=None, min_length=1, max_length=256)


# =============================================================================================
# 2. Registry messages
# =============================================================================================

# --- 2a. Dimension records -------------------------------------------------------------------


class InstrumentRecord(_Message):
    """An instrument. Detector, exposure and dataset records need it registered first."""

    kind: Literal["instrument"] = "instrument"
    name: str = Field(min_length=1, max_length=64)
    camera: str | None = Field(
        default=None, description="Built-in camera name (hsc, lsstcam, decam, generic)."
    )


class DetectorRecord(_Message):
    """A detector of an instrument: native id and name."""

    kind: Literal["detector"] = "detector"
    instrument: str = Field(min_length=1, max_length=64)
    id: int
    name: str = Field(min_length=1, max_length=64)


class ExposureRecord(_Message):
    """An exposure (a science exposure is a visit). Times UTC; exptime/darktime in seconds."""

    kind: Literal["exposure"] = "exposure"
    instrument: str = Field(min_length=1, max_length=64)
    id: int
    obs_type: str
    physical_filter: str
    band: str
    exptime: float = Field(ge=0)
    darktime: float = Field(ge=0)
    day_obs: int
    begin: UtcDatetime
    end: UtcDatetime

    @model_validator(mode="after")
    def _ordered(self) -> ExposureRecord:
        if self.end < self.begin:
            raise ValueError("exposure end is before its begin")
        return self


def dimension_records(
    obs: ObservationInfo, camera: str | None = None, execution_id: str | None = None
) -> list[_Message]:
    """The instrument, detector and exposure records of one translated raw detector frame."""
    return [
        InstrumentRecord(name=obs.instrument, camera=camera, execution_id=execution_id),
        DetectorRecord(
            instrument=obs.instrument, id=obs.detector, name=obs.detector_name, execution_id=execution_id
        ),
        ExposureRecord(
            instrument=obs.instrument,
            id=obs.exposure,
            obs_type=obs.obs_type,
            physical_filter=obs.physical_filter,
            band=obs.band,
            exptime=obs.exptime,
            darktime=obs.darktime,
            day_obs=obs.day_obs,
            begin=obs.begin,
            end=obs.end,
            execution_id=execution_id,
        ),
    ]


# --- 2b. Datasets and provenance -------------------------------------------------------------


class ProvenanceInput(BaseModel):
    """One input of an output dataset; ``role`` says what it was used as (raw, bias, flat, ...)."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: uuid.UUID
    role: str = Field(min_length=1, max_length=32)


class DatasetMessage(_Message):
    """A dataset written into a RUN collection, with the inputs it was made from.

    ``id`` is optional; when given it must equal ``dataset_id(dataset_type, run, data_id)``.
    Re-sending the same dataset is a no-op; ``replace=True`` updates URI, size and checksum of
    the existing row and replaces its provenance. ``size`` is in bytes; ``created`` is UTC.
    """

    kind: Literal["dataset"] = "dataset"
    dataset_type: str
    run: CollectionName
    data_id: dict[str, Any]
    uri: str = Field(min_length=1)
    size: int | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    created: UtcDatetime | None = None
    inputs: list[ProvenanceInput] = Field(default_factory=list)
    replace: bool = False
    id: uuid.UUID | None = None
    _data_id_json: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _check_id(self) -> DatasetMessage:
        if self.dataset_type not in DATASET_TYPES:
            raise ValueError(f"unknown dataset type {self.dataset_type!r}")
        try:
            self.data_id = normalize_data_id(self.dataset_type, self.data_id)
        except Exception as exc:  # DataIdError -> validation error
            raise ValueError(str(exc)) from None
        self._data_id_json = canonical_json(self.data_id)
        expected = dataset_id_normalized(self.dataset_type, self.run, self.data_id)
        if self.id is None:
            self.id = expected
        elif self.id != expected:
            raise ValueError(
                f"dataset id {self.id} does not match its type/run/data id (expected {expected})"
            )
        roles = [i.dataset_id for i in self.inputs]
        if len(set(roles)) != len(roles):
            raise ValueError("an input dataset is listed twice")
        if self.id in roles:
            raise ValueError("a dataset cannot be its own input")
        return self

    @property
    def dataset_id(self) -> uuid.UUID:
        assert self.id is not None
        return self.id

    @property
    def data_id_json(self) -> str:
        """The data id as canonical JSON (sorted keys), as stored in the registry."""
        return self._data_id_json or canonical_json(self.data_id)


# --- 2c. Certification -----------------------------------------------------------------------


class CertifyMessage(_Message):
    """Certify a calibration dataset into a CALIBRATION collection for ``[begin, end)`` (UTC).

    ``begin=None`` / ``end=None`` mean unbounded on that side. Validity ranges of the same
    dataset type and data id in one collection must not overlap (adjacent is fine).
    """

    kind: Literal["certify"] = "certify"
    dataset_id: uuid.UUID
    collection: CollectionName
    begin: UtcDatetime | None = None
    end: UtcDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> CertifyMessage:
        if self.begin is not None and self.end is not None and not self.begin < self.end:
            raise ValueError("validity range is empty: begin must be before end")
        return self


# --- 2d. Processing records and execution markers ---------------------------------------------


class ProcessingRecordMessage(_Message):
    """How one detector's step went in one execution (duration s, peak memory MiB, retries)."""

    kind: Literal["processing_record"] = "processing_record"
    execution_id: str = Field(min_length=1, max_length=256)
    instrument: str = Field(min_length=1, max_length=64)
    exposure: int
    detector: int
    step: str = Field(default="isr", min_length=1, max_length=64)
    status: Literal["succeeded", "failed", "skipped"]
    duration_s: float | None = Field(default=None, ge=0)
    peak_memory_mb: float | None = Field(default=None, ge=0)
    retries: int = Field(default=0, ge=0)
    error: str | None = None
    recorded: UtcDatetime | None = None


class ExecutionCompleteMessage(_Message):
    """Sent last by an execution: it produced ``expected`` registry messages before this one."""

    kind: Literal["execution_complete"] = "execution_complete"
    execution_id: str = Field(min_length=1, max_length=256)
    expected: int = Field(ge=0)


#: Any registry message, discriminated on ``kind``.
RegistryMessage = Annotated[
    InstrumentRecord
    | DetectorRecord
    | ExposureRecord
    | DatasetMessage
    | CertifyMessage
    | ProcessingRecordMessage
    | ExecutionCompleteMessage,
    Field(discriminator="kind"),
]

#: Order the writer applies kinds in (parents before children).
KIND_ORDER: tuple[str, ...] = (
    "instrument",
    "detector",
    "exposure",
    "dataset",
    "certify",
    "processing_record",
    "execution_complete",
)

# =============================================================================================
# 3. JSON helpers
# =============================================================================================

_REGISTRY_ADAPTER: TypeAdapter[Any] = TypeAdapter(RegistryMessage)


def parse_message(data: str | bytes | dict[str, Any]) -> RegistryMessage:
    """Parse one registry message from JSON text/bytes or a dict; pydantic ValidationError if invalid."""
    if isinstance(data, (str, bytes, bytearray)):
        return _REGISTRY_ADAPTER.validate_json(data)
    return _REGISTRY_ADAPTER.validate_python(data)


def dump_message(message: BaseModel) -> str:
    """A registry message as compact JSON (what goes into an SQS message body)."""
    return message.model_dump_json(exclude_none=True)


def message_error_summary(exc: ValidationError, limit: int = 3) -> str:
    """A short one-line description of a validation error (for the rejects table and logs)."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


# =============================================================================================
# 4. Step Functions events: ProcessVisit (state input, Plan, ISR cluster, Summarize)
# =============================================================================================
#
# Only small JSON travels through the state machine (256 KB payload limit): the cluster list
# goes into a manifest in the datastore, and per-quantum results into small JSON files under
# ``results/<execution>/``.

from isrflow.registry.models import Quantum  # noqa: E402  (pydantic only; keeps the section self-contained)

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
    cluster_size: int = Field(default=4, ge=1, le=1000)
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

    action: Literal["record_failure"] = "record_failure"
    cluster: Cluster
    results_prefix: str
    error: dict[str, Any] = Field(default_factory=dict, description="the Catch output: Error and Cause")


class SummarizeEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action: Literal["summarize"] = "summarize"
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

    action: Literal["mosaic"] = "mosaic"
    manifest_uri: str = Field(min_length=1)
    output_run: CollectionName


# =============================================================================================
# 5. Triggers: S3 Object Created (EventBridge) -> ingest -> prompt processing
# =============================================================================================
#
# The ingest function receives EventBridge's S3 "Object Created" events for keys under raw/ in
# the data bucket (locally ``isrflow ingest --watch`` builds the same events). Field names
# follow the event (``detail-type``, ``version-id``, ...); unknown fields are ignored.


class S3ObjectCreatedEvent(S3EventNotificationEventBridgeModel):
    """An EventBridge event ``source: aws.s3``, ``detail-type: Object Created``: Powertools'
    :class:`S3EventNotificationEventBridgeModel` narrowed to that source and detail type, with a
    timezone-aware ``time``. Size in bytes; the ETag without quotes."""

    detail_type: Literal["Object Created"] = Field(alias="detail-type")  # type: ignore[assignment]
    source: Literal["aws.s3"]  # type: ignore[assignment]
    time: UtcDatetime  # type: ignore[assignment]

    @property
    def bucket(self) -> str:
        return self.detail.bucket.name

    @property
    def key(self) -> str:
        return self.detail.object.key

    @property
    def etag(self) -> str | None:
        return (self.detail.object.etag or "").strip('"') or None

    @property
    def size(self) -> int | None:
        """The object's size in bytes (Powertools types it as a float), None when absent."""
        size = self.detail.object.size
        return None if size is None else int(size)


class PromptExecution(BaseModel):
    """The ProcessVisit execution an upload started (or found already started)."""

    state_machine_arn: str
    name: str = Field(min_length=1, max_length=80)
    execution_arn: str
    outcome: Literal["started", "already_started"]


class IngestOutcome(BaseModel):
    """What the ingest function did with one upload (its return value; also logged)."""

    bucket: str
    key: str
    etag: str | None = None
    size: int | None = None
    status: Literal["ingested", "quarantined", "superseded"]
    reason: str | None = Field(default=None, description="why it was quarantined or superseded")
    camera: str | None = None
    instrument: str | None = None
    exposure: int | None = None
    obs_type: str | None = None
    detectors: list[int] = Field(default_factory=list)
    datasets: list[uuid.UUID] = Field(default_factory=list, description="raw dataset ids registered")
    messages_sent: int = 0
    execution: PromptExecution | None = None
    quarantine_uri: str | None = None
    header_reads: int = Field(default=0, description="ranged reads made to parse the headers")
    header_bytes: int = Field(default=0, description="bytes read to parse the headers")


class QuarantineRecord(BaseModel):
    """Why an upload was not ingested, written as JSON under ``quarantine/`` in the data bucket.

    The object itself stays where it was uploaded; nothing is registered for it.
    """

    bucket: str
    key: str
    uri: str = Field(description="the uploaded object")
    etag: str | None = None
    size: int | None = None
    error: str = Field(description="error class, e.g. TruncatedFitsError, NotFitsError")
    reason: str
    event_id: str | None = None
    quarantined: UtcDatetime


# =============================================================================================
# 6. Step Functions events: BuildCalibration (input, Plan, Normalize, PrepareCombine, Combine,
#    Certify, Summarize)
# =============================================================================================
#
# As in ProcessVisit only small JSON travels through the state machine: the ISR clusters, the
# per-master input groups and the combine items are manifests in the datastore; each combine
# request is a JSON object in the datastore whose URI is all a Lambda payload or a Fargate
# container override carries (overrides are capped at 8 KiB).

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
    cluster_size: int = Field(default=4, ge=1, le=1000)
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

    action: Literal["plan"] = "plan"
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
    """Normalize, PrepareCombine, Certify and Summarize: the action and the plan."""

    model_config = ConfigDict(extra="ignore")

    action: Literal[
        "normalize", "prepare_combine", "delete_intermediates", "certify_calib", "summarize_calib"
    ]
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

    action: Literal["record_combine_failure"] = "record_combine_failure"
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


__all__ = [
    "CALIBRATION_TYPES",
    "CertifyMessage",
    "DatasetMessage",
    "DetectorRecord",
    "ExecutionCompleteMessage",
    "ExposureRecord",
    "InstrumentRecord",
    "KIND_ORDER",
    "ProcessingRecordMessage",
    "ProvenanceInput",
    "RegistryMessage",
    "UtcDatetime",
    "dimension_records",
    "dump_message",
    "message_error_summary",
    "new_message_id",
    "parse_message",
    # Step Functions events
    "Cluster",
    "ClusterSummary",
    "IsrClusterEvent",
    "PlanEvent",
    "PlanResult",
    "ProcessVisitInput",
    "QuantumKey",
    "QuantumReads",
    "QuantumResult",
    "RecordFailureEvent",
    "SummarizeEvent",
    "VisitSummary",
    "MosaicEvent",
    # Triggers
    "IngestOutcome",
    "PromptExecution",
    "QuarantineRecord",
    "S3ObjectCreatedEvent",
    # BuildCalibration
    "BuildCalibrationInput",
    "CalibPlanEvent",
    "CalibPlanResult",
    "CalibStepEvent",
    "CalibSummary",
    "CertifyResult",
    "CertifySpec",
    "CombineChildState",
    "CombineEvent",
    "CombineFailureEvent",
    "CombineInputRef",
    "CombineItem",
    "CombineRequest",
    "CommonCalibrationRef",
    "FlatScalesDoc",
    "MasterGroup",
    "MasterInput",
    "MasterResult",
    "NormalizeResult",
    "PrepareCombineResult",
]
