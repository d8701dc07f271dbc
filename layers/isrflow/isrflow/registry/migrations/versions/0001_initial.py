"""Initial registry schema: dimensions, collections, datasets, provenance, validity, records.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# dataset and dataset_provenance deliberately have no foreign keys (see isrflow.registry.schema).
# Times are BIGINT microseconds since the Unix epoch, UTC (isrflow.registry.schema.UtcTime).
_TIME = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "instrument",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("camera", sa.String(32), nullable=True),
    )
    op.create_table(
        "detector",
        sa.Column("instrument", sa.String(64), sa.ForeignKey("instrument.name"), primary_key=True),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(64), nullable=False),
    )
    op.create_table(
        "exposure",
        sa.Column("instrument", sa.String(64), sa.ForeignKey("instrument.name"), primary_key=True),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("obs_type", sa.String(16), nullable=False),
        sa.Column("physical_filter", sa.String(128), nullable=False),
        sa.Column("band", sa.String(32), nullable=False),
        sa.Column("exptime", sa.Float, nullable=False),
        sa.Column("darktime", sa.Float, nullable=False),
        sa.Column("day_obs", sa.Integer, nullable=False),
        sa.Column("begin", _TIME, nullable=False),
        sa.Column("end", _TIME, nullable=False),
    )
    op.create_index("ix_exposure_begin", "exposure", ["instrument", "begin"])
    op.create_table(
        "collection",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("doc", sa.Text, nullable=False, server_default=""),
        sa.CheckConstraint("type IN ('RUN', 'CALIBRATION', 'CHAINED')", name="ck_collection_type"),
    )
    op.create_table(
        "collection_chain",
        sa.Column("parent", sa.String(256), sa.ForeignKey("collection.name"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("child", sa.String(256), sa.ForeignKey("collection.name"), nullable=False),
    )
    op.create_table(
        "dataset",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("dataset_type", sa.String(32), nullable=False),
        sa.Column("run", sa.String(256), nullable=False),
        sa.Column("instrument", sa.String(64), nullable=False),
        sa.Column("detector", sa.Integer, nullable=False),
        sa.Column("exposure", sa.BigInteger, nullable=True),
        sa.Column("physical_filter", sa.String(128), nullable=True),
        sa.Column("data_id", sa.Text, nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("created", _TIME, nullable=False),
    )
    op.create_index("ix_dataset_run_type", "dataset", ["run", "dataset_type"])
    op.create_index("ix_dataset_data_id", "dataset", ["instrument", "exposure", "detector"])
    op.create_table(
        "dataset_provenance",
        sa.Column("output_id", sa.Uuid, primary_key=True),
        sa.Column("input_id", sa.Uuid, primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
    )
    op.create_index("ix_provenance_input", "dataset_provenance", ["input_id"])
    op.create_table(
        "calib_validity",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("collection", sa.String(256), sa.ForeignKey("collection.name"), nullable=False),
        sa.Column("dataset_id", sa.Uuid, sa.ForeignKey("dataset.id"), nullable=False),
        sa.Column("dataset_type", sa.String(32), nullable=False),
        sa.Column("calib_key", sa.Text, nullable=False),
        sa.Column("instrument", sa.String(64), nullable=False),
        sa.Column("detector", sa.Integer, nullable=False),
        sa.Column("physical_filter", sa.String(128), nullable=True),
        sa.Column("begin", _TIME, nullable=False),
        sa.Column("end", _TIME, nullable=False),
        sa.Column("certified", _TIME, nullable=False),
        sa.CheckConstraint('"begin" < "end"', name="ck_validity_order"),
        sa.UniqueConstraint("collection", "dataset_type", "calib_key", "begin", name="uq_validity_begin"),
    )
    op.create_index(
        "ix_validity_lookup", "calib_validity", ["collection", "dataset_type", "instrument", "detector"]
    )
    op.create_table(
        "processing_record",
        sa.Column("execution_id", sa.String(256), primary_key=True),
        sa.Column("instrument", sa.String(64), primary_key=True),
        sa.Column("exposure", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("detector", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("step", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("peak_memory_mb", sa.Float, nullable=True),
        sa.Column("retries", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("recorded", _TIME, nullable=False),
    )
    op.create_table(
        "execution",
        sa.Column("execution_id", sa.String(256), primary_key=True),
        sa.Column("expected", sa.Integer, nullable=False),
        sa.Column("completed", _TIME, nullable=False),
    )
    op.create_table(
        "applied_message",
        sa.Column("execution_id", sa.String(256), primary_key=True),
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("applied", _TIME, nullable=False),
        sa.CheckConstraint("status IN ('applied', 'rejected')", name="ck_applied_status"),
    )
    op.create_table(
        "rejected_message",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.String(128), nullable=True),
        sa.Column("message_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(32), nullable=True),
        sa.Column("execution_id", sa.String(256), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("rejected", _TIME, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "rejected_message",
        "applied_message",
        "execution",
        "processing_record",
        "calib_validity",
        "dataset_provenance",
        "dataset",
        "collection_chain",
        "collection",
        "exposure",
        "detector",
        "instrument",
    ):
        op.drop_table(table)
