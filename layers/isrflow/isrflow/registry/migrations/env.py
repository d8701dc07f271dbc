"""Alembic environment: always runs on a connection handed over by isrflow.registry.migrate."""

from __future__ import annotations

from alembic import context

from isrflow.registry.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run registry migrations through isrflow.registry.migrate.upgrade(engine)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
