"""The registry schema: SQLAlchemy 2 Core tables, one definition for SQLite and PostgreSQL.

Times are stored as signed 64-bit integers of microseconds since 1970-01-01T00:00:00 UTC
(:class:`UtcTime`), so comparisons are exact and identical on both engines. Unbounded
validity ends are stored as :data:`TIME_MIN` / :data:`TIME_MAX`.

Integrity of the two high-volume tables (``dataset``, ``dataset_provenance``) is enforced by
the writer, not by FOREIGN KEY constraints: it checks every parent of a batch (run, instrument,
detector, exposure, input datasets) with one set-based query per kind, holds back items whose
parents are missing, and nothing ever deletes those parents. Per-row FK triggers would roughly
double the database time of a batch. Low-volume tables keep their foreign keys.

The schema is created and upgraded only by the Alembic migrations in ``migrations/``;
``SCHEMA_REVISION`` is the head revision this code expects (a test checks both agree, and
another compares the migrated database with these tables).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: Alembic head revision the code expects.
SCHEMA_REVISION = "0001"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(value: datetime) -> int:
    """Aware datetime -> integer microseconds since the Unix epoch (UTC). Naive -> ValueError."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: registry times must be timezone-aware UTC")
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    """Integer microseconds since the Unix epoch -> aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=int(value))


#: Stored values of an unbounded validity begin / end: the first and last representable instants.
TIME_MIN = to_micros(datetime.min.replace(tzinfo=UTC))
TIME_MAX = to_micros(datetime.max.replace(tzinfo=UTC))


class UtcTime(TypeDecorator[datetime]):
    """An aware UTC datetime stored as BIGINT microseconds since the Unix epoch."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | int | None, dialect: Dialect) -> int | None:
        """An aware datetime -> microseconds since the epoch (UTC); ints pass unchanged."""
        if value is None or isinstance(value, int):
            return value
        return to_micros(value)

    def process_result_value(self, value: int | None, dialect: Dialect) -> datetime | None:
        """Microseconds since the epoch -> an aware UTC datetime."""
        return None if value is None else from_micros(value)


metadata = MetaData()

instrument = Table(
    "instrument",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("camera", String(32), nullable=True),
)

detector = Table(
    "detector",
    metadata,
    Column("instrument", String(64), ForeignKey("instrument.name"), primary_key=True),
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(64), nullable=False),
)

exposure = Table(
    "exposure",
    metadata,
    Column("instrument", String(64), ForeignKey("instrument.name"), primary_key=True),
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("obs_type", String(16), nullable=False),
    Column("physical_filter", String(128), nullable=False),
    Column("band", String(32), nullable=False),
    Column("exptime", Float, nullable=False),
    Column("darktime", Float, nullable=False),
    Column("day_obs", Integer, nullable=False),
    Column("begin", UtcTime, nullable=False),
    Column("end", UtcTime, nullable=False),
    Index("ix_exposure_begin", "instrument", "begin"),
)

collection = Table(
    "collection",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("type", String(16), nullable=False),
    Column("doc", Text, nullable=False, server_default=""),
    CheckConstraint("type IN ('RUN', 'CALIBRATION', 'CHAINED')", name="ck_collection_type"),
)

collection_chain = Table(
    "collection_chain",
    metadata,
    Column("parent", String(256), ForeignKey("collection.name"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("child", String(256), ForeignKey("collection.name"), nullable=False),
)

dataset = Table(
    "dataset",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("dataset_type", String(32), nullable=False),
    Column("run", String(256), nullable=False),
    Column("instrument", String(64), nullable=False),
    Column("detector", Integer, nullable=False),
    Column("exposure", BigInteger, nullable=True),
    Column("physical_filter", String(128), nullable=True),
    Column("data_id", Text, nullable=False),
    Column("uri", Text, nullable=False),
    Column("size", BigInteger, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("created", UtcTime, nullable=False),
    Index("ix_dataset_run_type", "run", "dataset_type"),
    Index("ix_dataset_data_id", "instrument", "exposure", "detector"),
)

dataset_provenance = Table(
    "dataset_provenance",
    metadata,
    Column("output_id", Uuid, primary_key=True),
    Column("input_id", Uuid, primary_key=True),
    Column("role", String(32), nullable=False),
    Index("ix_provenance_input", "input_id"),
)

calib_validity = Table(
    "calib_validity",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("collection", String(256), ForeignKey("collection.name"), nullable=False),
    Column("dataset_id", Uuid, ForeignKey("dataset.id"), nullable=False),
    Column("dataset_type", String(32), nullable=False),
    Column("calib_key", Text, nullable=False),
    Column("instrument", String(64), nullable=False),
    Column("detector", Integer, nullable=False),
    Column("physical_filter", String(128), nullable=True),
    Column("begin", UtcTime, nullable=False),
    Column("end", UtcTime, nullable=False),
    Column("certified", UtcTime, nullable=False),
    CheckConstraint('"begin" < "end"', name="ck_validity_order"),
    UniqueConstraint("collection", "dataset_type", "calib_key", "begin", name="uq_validity_begin"),
    Index("ix_validity_lookup", "collection", "dataset_type", "instrument", "detector"),
)

processing_record = Table(
    "processing_record",
    metadata,
    Column("execution_id", String(256), primary_key=True),
    Column("instrument", String(64), primary_key=True),
    Column("exposure", BigInteger, primary_key=True, autoincrement=False),
    Column("detector", Integer, primary_key=True, autoincrement=False),
    Column("step", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("duration_s", Float, nullable=True),
    Column("peak_memory_mb", Float, nullable=True),
    Column("retries", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("recorded", UtcTime, nullable=False),
)

execution = Table(
    "execution",
    metadata,
    Column("execution_id", String(256), primary_key=True),
    Column("expected", Integer, nullable=False),
    Column("completed", UtcTime, nullable=False),
)

applied_message = Table(
    "applied_message",
    metadata,
    Column("execution_id", String(256), primary_key=True),
    Column("message_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("applied", UtcTime, nullable=False),
    CheckConstraint("status IN ('applied', 'rejected')", name="ck_applied_status"),
)

rejected_message = Table(
    "rejected_message",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(128), nullable=True),
    Column("message_id", String(64), nullable=True),
    Column("kind", String(32), nullable=True),
    Column("execution_id", String(256), nullable=True),
    Column("reason", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("rejected", UtcTime, nullable=False),
)
