"""Shared fixtures: simulated data sets (small by default; a few full-size ones)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isrflow.simulate import SimulationRequest, simulate

# The project's shared reference material sits beside the clone (../shared/reference), as in CI;
# ISRFLOW_REFERENCE points elsewhere.
REFERENCE = Path(os.environ.get("ISRFLOW_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.exists():
        pytest.fail(f"shared reference material not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def small_night(tmp_path_factory):
    """Small generic camera, detectors 0 and 1: 2 bias, 2 science frames (seed 7)."""
    out = tmp_path_factory.mktemp("small_night")
    return simulate(SimulationRequest(camera="generic", small=True, detectors=[0, 1], bias=2, science=2, seed=7, out=out))
