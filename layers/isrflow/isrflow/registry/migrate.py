"""Schema creation and upgrades, run programmatically (no alembic.ini needed).

Alembic is imported only when the database is behind the code (or empty), so opening an
up-to-date registry costs one small query.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from isrflow.model.errors import RegistryError
from isrflow.registry.engine import is_postgres, lock, transaction
from isrflow.registry.schema import SCHEMA_REVISION

if TYPE_CHECKING:  # alembic is imported only when a migration runs (not by the writer Lambda)
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def current_revision(conn: Connection) -> str | None:
    """The database's Alembic revision, or None when it holds no registry."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    """The head revision of the migration scripts (imports Alembic)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def upgrade(engine: Engine, *, create: bool = True) -> str:
    """Bring the registry schema to the head revision; return the revision now in the database.

    ``create=False`` refuses to create a registry in an empty database (RegistryError). The
    upgrade runs in one write transaction under the registry lock, so concurrent openers
    serialise and only the first one migrates.
    """
    with transaction(engine, write=True) as conn:
        if is_postgres(conn):
            lock(conn, "isrflow-registry-migrate")
        revision = current_revision(conn)
        if revision == SCHEMA_REVISION:
            return revision
        if revision is None and not create:
            raise RegistryError(
                f"no isrflow registry in {engine.url.render_as_string(hide_password=True)}; "
                "create one with `isrflow repo create`"
            )
        from alembic import command
        from alembic.util import CommandError

        cfg = _config()
        cfg.attributes["connection"] = conn
        try:
            command.upgrade(cfg, "head")
        except CommandError as exc:
            raise RegistryError(
                f"cannot upgrade registry schema from revision {revision!r} (made by a newer isrflow?): {exc}"
            ) from None
        revision = current_revision(conn)
    if revision != SCHEMA_REVISION:
        raise RegistryError(
            f"registry schema is at revision {revision!r}, this isrflow expects {SCHEMA_REVISION!r}"
        )
    return revision
