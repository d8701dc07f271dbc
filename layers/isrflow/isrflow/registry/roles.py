"""Least-privilege login roles of a PostgreSQL registry, made by the migration step.

The functions never use the database's master user: the migration (the stack's RegistrySchema
custom resource, :mod:`functions.migrate.app`) creates one login role per access level, each
with its own password (its own rotating Secrets Manager secret on AWS):

- ``writer`` (the registry writer Lambda): SELECT, INSERT and UPDATE on the tables the batched
  writer fills (:data:`WRITER_TABLES`), DELETE on the one table whose rows a ``replace``
  rewrites (``dataset_provenance``). No DDL, no access to ``collection_chain`` writes or to the
  schema revision (``alembic_version``), so it cannot migrate or drop anything.
- ``reader`` (Plan, Summarize, the calibration plan, the command line's read paths): SELECT
  only, and every transaction read-only by default (``default_transaction_read_only``).

Each call sets a role's attributes, password and privileges from scratch (REVOKE ALL, then
GRANT), so it is idempotent and a narrower grant in a newer release takes effect. Passwords are
sent as SCRAM-SHA-256 verifiers (:mod:`.scram`), never in clear. Role names come from the
secrets' ``username`` and must be plain lower-case identifiers. SQLite has no roles: nothing to do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from isrflow.model.errors import ConfigError, RegistryError
from isrflow.registry import schema as s
from isrflow.registry.engine import is_postgres, lock, transaction
from isrflow.registry.scram import scram_verifier

Access = Literal["writer", "reader"]
ACCESS_LEVELS: tuple[str, ...] = ("writer", "reader")

#: Tables the registry writer inserts into and updates.
WRITER_TABLES: tuple[str, ...] = tuple(t for t in s.metadata.tables if t != "collection_chain")
#: Tables whose rows the registry writer deletes (provenance of a replaced output).
WRITER_DELETE_TABLES: tuple[str, ...] = ("dataset_provenance",)
#: Every table a role may read: the registry's and the schema revision.
READ_TABLES: tuple[str, ...] = (*s.metadata.tables, "alembic_version")

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_VERIFIER = re.compile(r"^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")


@dataclass(frozen=True)
class RoleSpec:
    """One login role: its name, its password (clear text, turned into a verifier here) and access level."""

    name: str
    password: str
    access: Access

    def __post_init__(self) -> None:
        if not _ROLE_NAME.match(self.name):
            raise ConfigError(
                f"registry role name {self.name!r}: expected a lower-case identifier (a-z, 0-9, _)"
            )
        if self.access not in ACCESS_LEVELS:
            raise ConfigError(
                f"registry role {self.name}: access {self.access!r} is not one of {ACCESS_LEVELS}"
            )
        if not self.password:
            raise ConfigError(f"registry role {self.name}: empty password")

    def __repr__(self) -> str:  # never show the password
        return f"RoleSpec(name={self.name!r}, access={self.access!r})"


def role_from_secret(secret: dict, where: str, access: str | None = None) -> RoleSpec:
    """A RoleSpec from a role secret (``username``, ``password`` and, unless ``access`` is given, ``access``)."""
    try:
        return RoleSpec(str(secret["username"]), str(secret["password"]), access or str(secret["access"]))  # type: ignore[arg-type]
    except KeyError as exc:
        raise ConfigError(f"registry role secret {where} has no {exc.args[0]!r} field") from None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _existing_tables(conn: Connection, schema: str, names: Iterable[str]) -> list[str]:
    present = set(sa.inspect(conn).get_table_names(schema=schema))
    return [n for n in names if n in present]


def _set_role(conn: Connection, role: RoleSpec, schema: str) -> None:
    verifier = scram_verifier(role.password)
    assert _VERIFIER.match(verifier), "internal: unexpected verifier shape"
    name = _ident(role.name)
    exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": role.name}).scalar()
    attributes = "LOGIN NOCREATEDB NOCREATEROLE NOREPLICATION"
    if exists:
        conn.exec_driver_sql(f"ALTER ROLE {name} WITH {attributes} PASSWORD '{verifier}'")
    else:
        conn.exec_driver_sql(f"CREATE ROLE {name} WITH {attributes} NOSUPERUSER PASSWORD '{verifier}'")
    read_only = "on" if role.access == "reader" else "off"
    conn.exec_driver_sql(f"ALTER ROLE {name} SET default_transaction_read_only = {read_only}")

    schema_q = _ident(schema)
    conn.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema_q} FROM {name}")
    conn.exec_driver_sql(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema_q} FROM {name}")
    conn.exec_driver_sql(f"REVOKE CREATE ON SCHEMA {schema_q} FROM {name}")
    conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema_q} TO {name}")
    qualified = lambda table: f"{schema_q}.{_ident(table)}"  # noqa: E731
    for table in _existing_tables(conn, schema, READ_TABLES):
        conn.exec_driver_sql(f"GRANT SELECT ON {qualified(table)} TO {name}")
    if role.access == "writer":
        for table in _existing_tables(conn, schema, WRITER_TABLES):
            conn.exec_driver_sql(f"GRANT INSERT, UPDATE ON {qualified(table)} TO {name}")
        for table in _existing_tables(conn, schema, WRITER_DELETE_TABLES):
            conn.exec_driver_sql(f"GRANT DELETE ON {qualified(table)} TO {name}")
        conn.exec_driver_sql(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema_q} TO {name}")


def ensure_roles(engine: Engine, roles: Iterable[RoleSpec]) -> list[str]:
    """Create or update ``roles`` in the registry's schema (the connection's ``current_schema()``);
    the role names set, in order. SQLite: nothing to do, []. RegistryError when the migrating user
    may not manage roles (it needs CREATEROLE, as RDS's master user has)."""
    roles = list(roles)
    if not roles:
        return []
    names = [r.name for r in roles]
    if len(set(names)) != len(names):
        raise ConfigError(f"registry roles: a role name is given twice in {names}")
    with transaction(engine, write=True) as conn:
        if not is_postgres(conn):
            return []
        lock(conn, "isrflow-registry-roles")  # concurrent migrations set roles one after the other
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar()
        if schema is None:
            raise RegistryError("registry roles: the connection selects no existing schema")
        try:
            for role in roles:
                _set_role(conn, role, schema)
        except sa.exc.ProgrammingError as exc:
            first = str(exc.orig or exc).splitlines()[0]
            raise RegistryError(
                f"cannot set up registry roles {names} in schema {schema!r}: {first}"
            ) from None
    return names


__all__ = [
    "ACCESS_LEVELS",
    "READ_TABLES",
    "WRITER_DELETE_TABLES",
    "WRITER_TABLES",
    "RoleSpec",
    "ensure_roles",
    "role_from_secret",
]
