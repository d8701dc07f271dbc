"""Defect 9 of issue 10: a PostgreSQL repository made with `repo create --schema` works with every
command: a missing schema is created (or is one typed error line when a repository is opened),
and a local `run process-visit` uses the repository's schema (the URL selects it)."""

from __future__ import annotations

import json
import os
import uuid

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from isrflow.cli import cli
from isrflow.registry.engine import normalize_url
from isrflow.simulate import SimulationRequest, simulate

PG_URL = os.environ.get("REGISTRY_TEST_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")

pytestmark = pytest.mark.postgres


@pytest.fixture
def schema():
    """A schema name that does not exist yet (dropped afterwards); skip without a server (not in CI)."""
    engine = sa.create_engine(normalize_url(PG_URL), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        if IN_CI:
            pytest.fail(f"PostgreSQL not reachable at {PG_URL}: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    name = f"isrflow_rel_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()


def _cli(*args, code: int = 0) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def test_repo_create_schema_then_ingest_and_process_visit(tmp_path, schema):
    repo = tmp_path / "repo"
    _cli("repo", "create", repo, "--registry", PG_URL, "--schema", schema)  # the schema is created
    night = simulate(
        SimulationRequest(
            camera="generic", small=True, detectors=[0], science=1, seed=11, out=tmp_path / "sim"
        )
    )
    _cli("ingest", "--repo", repo, *[r.path for r in night.raws])
    (cal,) = night.calibrations.values()
    _cli(
        "calib",
        "import",
        "--repo",
        repo,
        "--run",
        "Generic/calib/truth",
        cal.bias,
        cal.dark,
        cal.defects,
        *cal.flat.values(),
    )
    for kind in ("bias", "dark", "flat", "defects"):
        _cli("calib", "certify", "--repo", repo, "--type", kind, "--run", "Generic/calib/truth")
    report = json.loads(
        _cli(
            "run",
            "process-visit",
            "--repo",
            repo,
            "--where",
            "instrument = 'Generic'",
            "--output-run",
            "Generic/runs/pg",
            "--workers",
            1,
            "--json",
        )
    )
    assert report["status"] == "SUCCEEDED", report
    listing = json.loads(_cli("datasets", "--repo", repo, "--type", "postISRCCD", "--json"))
    assert [d["run"] for d in listing] == ["Generic/runs/pg"]
    engine = sa.create_engine(normalize_url(PG_URL))
    try:
        with engine.connect() as conn:  # the rows are in the repository's schema, not in public
            count = conn.execute(
                sa.text(f'SELECT COUNT(*) FROM "{schema}".dataset WHERE dataset_type = :t'),
                {"t": "postISRCCD"},
            ).scalar()
            assert count == 1
    finally:
        engine.dispose()


def test_opening_a_repository_whose_schema_is_gone_is_one_error_line(tmp_path, schema):
    repo = tmp_path / "repo"
    _cli("repo", "create", repo, "--registry", PG_URL, "--schema", schema)
    engine = sa.create_engine(normalize_url(PG_URL))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        engine.dispose()
    result = CliRunner().invoke(cli, ["datasets", "--repo", str(repo)])
    assert result.exit_code == 1
    expected = (
        f"error: RegistryError: PostgreSQL schema '{schema}' does not exist in "
        "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        f"?options=-csearch_path%3D{schema}: create it first (`isrflow repo create --schema` creates it)"
    )
    assert result.output.strip().splitlines() == [expected]
