"""Result models of registry reads: dataset references, quanta, plans, write status.

Pydantic only (no SQLAlchemy): quanta travel in manifests to workers that never open the
registry. All times are timezone-aware UTC.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class DatasetRef(BaseModel):
    """One registered dataset: id, type, RUN collection, data id and where its file is."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    dataset_type: str
    run: str
    data_id: dict[str, Any]
    uri: str
    size: int | None = None
    sha256: str | None = None


class Validity(BaseModel):
    """A validity range ``[begin, end)`` in UTC; None = unbounded on that side."""

    model_config = ConfigDict(frozen=True)

    collection: str
    begin: datetime | None
    end: datetime | None


class CertifiedRef(DatasetRef):
    """A dataset as certified in a CALIBRATION collection, with its validity range."""

    validity: Validity


class Quantum(BaseModel):
    """One unit of work: one detector of one exposure, with its inputs and its output.

    ``calibs`` maps each needed calibration type to the certified dataset chosen for the
    exposure's begin time, or None when none is certified (then the type is also listed in
    ``missing_calibs`` and the plan has a matching problem). ``replace`` is True when the output
    already exists and the plan was made in ``replace`` mode.
    """

    instrument: str
    exposure: int
    detector: int
    detector_name: str
    physical_filter: str
    exposure_begin: datetime
    raw: DatasetRef
    calibs: dict[str, DatasetRef | None]
    missing_calibs: list[str] = Field(default_factory=list)
    output: DatasetRef
    replace: bool = False


class QuantumProblem(BaseModel):
    """A per-detector problem found while planning (the quantum is still listed)."""

    instrument: str
    exposure: int
    detector: int
    problem: Literal["missing calibration"]
    dataset_type: str
    message: str


class QuantumPlan(BaseModel):
    """What ``find_quanta`` returns: the quanta, their problems, and outputs skipped as existing."""

    quanta: list[Quantum]
    problems: list[QuantumProblem] = Field(default_factory=list)
    skipped_existing: list[DatasetRef] = Field(default_factory=list)


class AppliedStatus(BaseModel):
    """How many of an execution's messages the writer has processed (applied + rejected)."""

    execution_id: str
    applied: int
    rejected: int
    expected: int | None

    @property
    def processed(self) -> int:
        return self.applied + self.rejected

    @property
    def complete(self) -> bool:
        return self.expected is not None and self.processed >= self.expected


class RejectedRecord(BaseModel):
    """A row of the rejects table: a message that can never be applied, and why."""

    id: int
    item_id: str | None
    message_id: str | None
    kind: str | None
    execution_id: str | None
    reason: str
    body: str
    rejected: datetime
