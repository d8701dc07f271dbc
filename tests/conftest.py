"""Shared fixtures: simulated data sets (small by default; a few full-size ones)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from isrflow.simulate import SimulationRequest, simulate

# The small local repository helpers (tests/process_visit/visit_helpers.py) serve other suites too.
sys.path.insert(0, str(Path(__file__).resolve().parent / "process_visit"))

# The project's shared reference material sits beside the clone (../shared/reference), as in CI;
# ISRFLOW_REFERENCE points elsewhere.
REFERENCE = Path(
    os.environ.get("ISRFLOW_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference")
)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.exists():
        pytest.fail(f"shared reference material not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def small_night(tmp_path_factory):
    """Small generic camera, detectors 0 and 1: 2 bias, 2 science frames (seed 7)."""
    out = tmp_path_factory.mktemp("small_night")
    return simulate(
        SimulationRequest(camera="generic", small=True, detectors=[0, 1], bias=2, science=2, seed=7, out=out)
    )


@pytest.fixture
def local_repo(tmp_path, monkeypatch, request):
    """A small local repository (generic camera, detectors 0-1, true calibrations certified), its
    handler environment set."""
    from visit_helpers import make_repo

    repo = make_repo(tmp_path)
    for k, v in repo.env.items():
        monkeypatch.setenv(k, v)
    yield repo
    if request.node.get_closest_marker("corrupts_datastore") is None:
        assert_registry_intact(repo.registry)


def assert_registry_intact(registry) -> None:
    """``isrflow registry verify`` after an end-to-end test: every registered file exists with its
    registered size and sha256, and no two datasets share a file."""
    from isrflow.registry.verify import verify_registry

    report = verify_registry(registry, scan=False)
    assert report.ok(), "registry verify: " + "; ".join(p.line() for p in report.problems[:5])


#: Fixtures that need the PostgreSQL test server (directly or through ``backend[postgresql]``).
POSTGRES_FIXTURES = frozenset({"pg_admin", "pg_schema_url"})


def needs_postgres(item: pytest.Item) -> bool:
    """Whether a collected test needs the PostgreSQL server: it uses a PostgreSQL fixture or is
    the ``postgresql`` case of a backend-parametrized test."""
    if POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "postgresql" in callspec.params.values()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``postgres`` marker on every test that needs the server, so ``-m "not postgres"`` (``make
    unit``) leaves them out; such tests skip with a message without a server, and fail in CI."""
    for item in items:
        if item.get_closest_marker("postgres") is None and needs_postgres(item):
            item.add_marker(pytest.mark.postgres)
