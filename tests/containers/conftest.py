"""Fixtures of the container tests: built images, moto in server mode, a PostgreSQL schema.

Nothing here skips: without a Docker engine the session installs and starts one
(isrflow.local.containers.engine), and any failure to get images built is an error. The
registry of every test is a fresh schema of the PostgreSQL test database, reached by the
containers through a forwarder on the Docker bridge (isrflow.local.containers.services).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from isrflow.local.containers import prepare_images
from isrflow.local.containers.sam import Invocation, SamProject
from isrflow.local.containers.services import LocalAwsStack
from isrflow.registry import Registry
from isrflow.registry.engine import normalize_url
from tests.event_chains import REPO, ROOT

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_SESSION = uuid.uuid4().hex[:8]
_counter = itertools.count()
#: Every invocation of the session, for the figures printed at the end (cold start, duration, memory).
INVOCATIONS: list[Invocation] = []


@pytest.fixture(scope="session")
def sam_project() -> SamProject:
    """Docker engine, the Lambda base (stand-in), ``sam build`` for x86_64: all or an error."""
    return prepare_images(REPO, "x86_64", log=lambda line: print(line, flush=True))


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A fresh PostgreSQL schema, as a URL selecting it; dropped afterwards."""
    schema = f"isrflow_c{_SESSION}_{next(_counter)}"
    admin = sa.create_engine(normalize_url(PG_URL), connect_args={"connect_timeout": 5})
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def stack(pg_schema_url) -> Iterator[LocalAwsStack]:
    with LocalAwsStack(pg_schema_url) as s:
        yield s


@pytest.fixture
def registry(stack, pg_schema_url) -> Iterator[Registry]:
    reg = Registry.create(pg_schema_url, ROOT)
    yield reg
    reg.close()


class Lambdas:
    """``sam local invoke`` of the built functions with the stack's environment."""

    def __init__(self, project: SamProject, stack: LocalAwsStack, tmp: Path):
        self.project, self.stack, self.tmp = project, stack, tmp
        self.env_file = project.env_vars_file(tmp, stack.function_env())

    def with_env(self, function: str, values: dict[str, str]) -> None:
        """Extra environment for one function (names it declares in template.yaml)."""
        data = json.loads(self.env_file.read_text())
        data.setdefault(function, {}).update(values)
        self.env_file.write_text(json.dumps(data, indent=1))

    def invoke(self, function: str, event: Any) -> Invocation:
        inv = self.project.invoke(function, event, self.env_file)
        INVOCATIONS.append(inv)
        return inv

    def __call__(self, function: str, event: Any) -> Any:
        """The function's answer; a function error fails the test with its message."""
        inv = self.invoke(function, event)
        assert inv.error_type is None, f"{function}: {inv.payload}\n{inv.logs[-3000:]}"
        return inv.payload


@pytest.fixture
def lambdas(sam_project, stack, tmp_path) -> Lambdas:
    return Lambdas(sam_project, stack, tmp_path)


def pytest_terminal_summary(terminalreporter) -> None:
    """Per function: cold start (init), warm-ish duration and peak memory inside the containers."""
    if not INVOCATIONS:
        return
    rows: dict[str, list[dict]] = {}
    for inv in INVOCATIONS:
        rows.setdefault(inv.function, []).extend(inv.reports)
    terminalreporter.write_sep("-", "functions in their containers (stand-in Lambda base, sam local invoke)")
    for function, reports in sorted(rows.items()):
        inits = [r["init_ms"] for r in reports if r.get("init_ms") is not None]
        durations = [r["duration_ms"] for r in reports]
        peak = max((r["max_rss_mb"] for r in reports), default=0)
        terminalreporter.write_line(
            f"{function:24s} invocations {len(reports):3d}  init ms (median) {_median(inits):8.0f}  "
            f"duration ms (median/max) {_median(durations):8.0f}/{max(durations, default=0):8.0f}  "
            f"peak RSS MiB {peak:7.1f}"
        )


def _median(values: list[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2] if s else 0.0
