"""Alembic migrations of the registry schema (run by :mod:`isrflow.registry.migrate`)."""
