"""A small generic night (4 detectors: 16 bias, 8 dark, 5 flat, 1 science) built into master
calibrations by the real BuildCalibration state machine on the local runtime, once per session.

Biases and flats combine on the combine Lambda, darks as Fargate tasks (the local runtime runs
the task's entry point as a subprocess), defects from the built dark and flat; every type is
certified into ``Generic/calib`` before the next is built from it.
"""

from __future__ import annotations

import pytest
from calib_helpers import CALIB, COUNTS, DETECTORS, BuiltNight, build_payload

from isrflow.local.runtime import LocalRuntime
from isrflow.registry import create_repo, ingest
from isrflow.simulate import SimulationRequest, simulate


@pytest.fixture(scope="session")
def built_night(tmp_path_factory):
    base = tmp_path_factory.mktemp("built_night")
    registry = create_repo(base / "repo")
    manifest = simulate(
        SimulationRequest(
            camera="generic", small=True, detectors=DETECTORS, science=1, seed=21, out=base / "sim", **COUNTS
        )
    )
    assert ingest(registry, [r.path for r in manifest.raws]).ok
    registry.register_collection(CALIB, "CALIBRATION")
    with LocalRuntime(base / "repo", processes=2) as runtime:
        night = BuiltNight(base / "repo", registry, manifest, runtime)
        certify = {"collection": CALIB}
        # the bias intermediates are kept (test_truth measures the frames' noise on them); the
        # other types' are deleted after their combine, the default
        for calib_type, extra in (
            ("bias", {"keep_intermediates": True}),
            ("dark", {"route": "fargate"}),
            ("flat", {}),
            ("defects", {"input_collections": ["Generic/calib/dark", "Generic/calib/flat"]}),
        ):
            execution = night.run(
                build_payload(calib_type, f"Generic/calib/{calib_type}", certify=certify, **extra),
                name=f"build-{calib_type}",
            )
            assert execution.status == "SUCCEEDED", (calib_type, execution.error, execution.cause)
            night.executions[calib_type] = execution
        yield night
