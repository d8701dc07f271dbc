"""Data repositories: a directory with a small config file naming the registry and datastore.

``DIR/isrflow-repo.yaml``::

    registry: sqlite:///registry.sqlite3     # relative SQLite paths are relative to DIR
    datastore: .                             # relative paths are relative to DIR; or s3://...
    schema: null                             # PostgreSQL schema (search_path), optional

Relative entries keep a local repository relocatable. :func:`open_repo` is how the rest of
isrflow gets a :class:`Registry` for a ``--repo DIR`` option.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from isrflow.model.errors import RepoError
from isrflow.registry.core import Registry
from isrflow.registry.engine import normalize_url

REPO_CONFIG = "isrflow-repo.yaml"
DEFAULT_REGISTRY = "sqlite:///registry.sqlite3"
DEFAULT_DATASTORE = "."


class RepoConfig(BaseModel):
    """Contents of ``isrflow-repo.yaml``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    registry: str = DEFAULT_REGISTRY
    datastore: str = DEFAULT_DATASTORE
    db_schema: str | None = Field(
        default=None, alias="schema", description="PostgreSQL schema (search_path)."
    )

    def registry_url(self, directory: Path) -> str:
        """The registry URL with a relative SQLite path resolved against the repo directory.

        With a PostgreSQL ``schema`` the URL selects it by itself (``?options=-csearch_path=...``),
        so processes that get only the URL (the functions, through ``ISRFLOW_REGISTRY_URL``)
        use the repository's schema too.
        """
        url = normalize_url(self.registry)
        if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_absolute():
            url = url.set(database=str((directory / (url.database or "")).absolute()))
        if url.get_backend_name() == "postgresql" and self.db_schema and "options" not in url.query:
            if not self.db_schema.replace("_", "").isalnum():
                raise RepoError(f"invalid schema name {self.db_schema!r}")
            url = url.update_query_dict({"options": f"-csearch_path={self.db_schema}"})
        return url.render_as_string(hide_password=False)

    def datastore_root(self, directory: Path) -> str:
        """The datastore root with a relative path resolved against the repo directory."""
        if "://" in self.datastore:
            return self.datastore
        path = Path(self.datastore)
        return str(path if path.is_absolute() else (directory / path).absolute())


def read_repo_config(directory: str | Path) -> RepoConfig:
    """Read ``DIR/isrflow-repo.yaml``; RepoError if missing or invalid."""
    import yaml

    path = Path(directory) / REPO_CONFIG
    if not path.is_file():
        raise RepoError(
            f"{directory}: not an isrflow repository (no {REPO_CONFIG}); create one with "
            "`isrflow repo create`"
        )
    try:
        return RepoConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except (ValidationError, yaml.YAMLError) as exc:
        raise RepoError(f"{path}: invalid repository config: {exc}") from None


def create_repo(
    directory: str | Path,
    registry_url: str | None = None,
    datastore: str | None = None,
    schema: str | None = None,
) -> Registry:
    """Create a repository: the directory, its config file and the registry schema.

    Defaults: a SQLite registry ``DIR/registry.sqlite3`` and ``DIR`` as file datastore.
    RepoError if DIR already holds a repository.
    """
    import yaml

    root = Path(directory)
    if (root / REPO_CONFIG).exists():
        raise RepoError(f"{root} already holds an isrflow repository ({REPO_CONFIG})")
    config = RepoConfig(
        registry=registry_url or DEFAULT_REGISTRY, datastore=datastore or DEFAULT_DATASTORE, db_schema=schema
    )
    normalize_url(config.registry)  # validate before touching the disk
    root.mkdir(parents=True, exist_ok=True)
    registry = Registry.create(
        config.registry_url(root), config.datastore_root(root), schema=config.db_schema
    )
    tmp = root / (REPO_CONFIG + ".tmp")
    tmp.write_text(yaml.safe_dump(config.model_dump(by_alias=True), sort_keys=False))
    tmp.replace(root / REPO_CONFIG)
    return registry


def open_repo(directory: str | Path) -> Registry:
    """Open the registry of a repository directory (upgrading its schema if it is behind)."""
    root = Path(directory)
    config = read_repo_config(root)
    return Registry.open(config.registry_url(root), config.datastore_root(root), schema=config.db_schema)
