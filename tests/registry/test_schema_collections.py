"""Schema and migrations, engines, collections and chains, dataset listing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from registry_helpers import T0, calib_msg, certify_msg, dims, raw_msg

from isrflow.model.errors import CollectionError, RegistryError
from isrflow.registry import Registry
from isrflow.registry import schema as s
from isrflow.registry.migrate import current_revision, head_revision


def test_code_revision_is_the_migration_head() -> None:
    assert head_revision() == s.SCHEMA_REVISION


def test_migrated_database_matches_the_table_definitions(registry: Registry) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    def compare_type(context, inspected, metadata_column, inspected_type, metadata_type):
        if isinstance(metadata_type, s.UtcTime):  # stored as BIGINT
            return not isinstance(inspected_type, sa.BigInteger)
        return None  # default comparison

    with registry.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": compare_type, "compare_server_default": False}
        )
        diff = compare_metadata(context, s.metadata)
    assert diff == []


def test_open_upgrades_and_refuses_empty_or_newer_databases(backend) -> None:
    with pytest.raises(RegistryError, match="no isrflow registry"):
        backend.open(create=False)
    reg = backend.open(create=True)
    with reg.engine.connect() as conn:
        assert current_revision(conn) == s.SCHEMA_REVISION
    backend.open()  # reopening an up-to-date registry is fine
    with reg.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(RegistryError, match="9999"):
        backend.open()


def test_sqlite_uses_wal_and_foreign_keys(tmp_path) -> None:
    reg = Registry.create(f"sqlite:///{tmp_path / 'r.sqlite3'}", tmp_path)
    try:
        with reg.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        reg.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/y", "unsupported registry database"),
        ("sqlite://", "needs a SQLite file"),
        ("not a url", "invalid registry URL"),
    ],
)
def test_bad_registry_urls(url: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        Registry.open(url)


def test_collections_and_chains(registry: Registry) -> None:
    assert registry.register_collection("a/run", "RUN") is True
    assert registry.register_collection("a/run", "RUN") is False
    registry.register_collection("a/calib", "CALIBRATION")
    registry.register_collection("b/run", "RUN")
    with pytest.raises(CollectionError, match="exists as a RUN"):
        registry.register_collection("a/run", "CALIBRATION")
    with pytest.raises(CollectionError, match="use set_chain"):
        registry.register_collection("x", "CHAINED")
    registry.set_chain("inner", ["b/run", "a/calib"])
    registry.set_chain("outer", ["a/run", "inner", "b/run"])
    assert registry.get_chain("outer") == ["a/run", "inner", "b/run"]
    assert registry.resolve_collections("outer") == [
        ("a/run", "RUN"),
        ("b/run", "RUN"),
        ("a/calib", "CALIBRATION"),
    ]
    assert registry.resolve_collections(["a/calib", "outer"])[0] == ("a/calib", "CALIBRATION")
    with pytest.raises(CollectionError, match="cycle: inner -> outer -> inner"):
        registry.set_chain("inner", ["outer"])
    assert registry.get_chain("inner") == ["b/run", "a/calib"]  # the failed redefinition rolled back
    with pytest.raises(CollectionError, match="unknown collection"):
        registry.set_chain("c", ["nope"])
    with pytest.raises(CollectionError, match="exists as a RUN"):
        registry.set_chain("a/run", ["b/run"])
    with pytest.raises(CollectionError, match="twice"):
        registry.set_chain("d", ["a/run", "a/run"])
    with pytest.raises(CollectionError, match="unknown collection 'zzz'"):
        registry.resolve_collections(["zzz"])
    assert ("outer", "CHAINED") in registry.collections()


def test_query_datasets_over_runs_and_calibration_collections(registry: Registry) -> None:
    bias = calib_msg("bias", 1, "HSC/calib/bias")
    registry.apply(
        [
            *dims(detectors=(1, 2)),
            raw_msg(100, 1),
            raw_msg(100, 2),
            bias,
            certify_msg(bias, T0, None),
            certify_msg(bias, None, T0, collection="HSC/old"),
        ]
    )
    assert {r.dataset_type for r in registry.query_datasets()} == {"raw", "bias"}
    assert len(registry.query_datasets("raw", where="detector = 2")) == 1
    certified = registry.query_datasets(collections=["HSC/calib", "HSC/old"])
    assert [(c.validity.collection, c.validity.begin, c.validity.end) for c in certified] == [
        ("HSC/calib", T0, None),
        ("HSC/old", None, T0),
    ]
    assert registry.query_datasets("bias", "HSC/calib", where="detector = 2") == []
    registry.set_chain("HSC/defaults", ["HSC/raw/all", "HSC/calib"])
    assert [r.dataset_type for r in registry.query_datasets(collections="HSC/defaults")] == [
        "raw",
        "raw",
        "bias",
    ]
