"""Shared pieces of the calibration tests (the fixture itself is in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from isrflow.local.runtime import LocalRuntime

MACHINE = "BuildCalibrationStateMachine"
DETECTORS = [0, 1, 2, 3]
COUNTS = {"bias": 16, "dark": 8, "flat": 5}
CALIB = "Generic/calib"


@dataclass
class BuiltNight:
    root: Path
    registry: object
    manifest: object
    runtime: LocalRuntime
    executions: dict = field(default_factory=dict)

    def run(self, payload: dict, name: str | None = None):
        return self.runtime.run(MACHINE, payload, name=name)


def build_payload(calib_type: str, run: str, **extra) -> dict:
    payload = {
        "calib_type": calib_type,
        "where": "instrument = 'Generic'",
        "input_collections": ["Generic/raw/all"],
        "calib_collection": CALIB,
        "output_run": run,
        "min_inputs": 3,
    }
    payload.update(extra)
    return payload
