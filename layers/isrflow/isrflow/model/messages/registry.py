"""Registry messages and their JSON helpers.

What producers (ingest, ISR workers, calibration steps, the state machines) send to the
registry queue and the writer applies in batches: dimension records, datasets with their
provenance, certifications, processing records and execution markers. A discriminated union
on ``kind`` (:data:`RegistryMessage`) parses any of them. Times are timezone-aware UTC.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from isrflow.model.ids import (
    DATASET_TYPES,
    canonical_json,
    dataset_id_from_json,
    normalize_data_id,
)
from isrflow.model.messages.common import CollectionName, UtcDatetime, new_message_id
from isrflow.model.observation import ObservationInfo


class _Message(BaseModel):
    """Base of registry messages.

    ``message_id`` identifies the message (not the SQS delivery): the writer counts each
    message id once per execution however often SQS delivers it. ``execution_id`` (optional)
    ties the message to a state-machine execution so ``Registry.wait_applied`` can wait for it.
    """

    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(default_factory=new_message_id, min_length=1, max_length=64)
    execution_id: str | None = Field(default=None, min_length=1, max_length=256)


# --- Dimension records -------------------------------------------------------------------


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


# --- Datasets and provenance -------------------------------------------------------------


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
        expected = dataset_id_from_json(self.dataset_type, self.run, self._data_id_json)
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


# --- Certification -----------------------------------------------------------------------


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


# --- Processing records and execution markers ---------------------------------------------


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

# --- JSON helpers ----------------------------------------------------------------------------

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
