"""The simulator's process pool: the files do not depend on the number of workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from isrflow.simulate import SimulationRequest, load_manifest, simulate


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.fits"))}


@pytest.mark.parametrize("camera", ["generic", "decam"])
def test_one_and_two_workers_write_identical_files(tmp_path, camera):
    """Every raw, truth signal and true calibration is byte-identical with 1 and 2 workers
    (each frame has its own seeded generator), and the manifests list the same files."""
    if camera == "generic":  # tiny frames: every obs type
        kwargs = {
            "camera": camera,
            "small": True,
            "detectors": [0, 1, 2],
            "bias": 1,
            "dark": 1,
            "flat": 1,
            "science": 1,
        }
    else:  # full size, one file per exposure holding every detector (the pixels come back from the workers)
        kwargs = {"camera": camera, "detectors": [1, 2], "bias": 1, "science": 1}
    kwargs.update(seed=7, crosstalk=True, nonlinearity=True)
    exposures = sum(kwargs.get(k, 0) for k in ("bias", "dark", "flat", "science"))
    progress: list[tuple[int, int]] = []
    one = simulate(SimulationRequest(out=tmp_path / "one", **kwargs), workers=1)
    two = simulate(
        SimulationRequest(out=tmp_path / "two", **kwargs),
        workers=2,
        progress=lambda done, total: progress.append((done, total)),
    )
    a, b = _files(tmp_path / "one"), _files(tmp_path / "two")
    raws = exposures * (1 if camera == "decam" else len(kwargs["detectors"]))
    truths = exposures * len(kwargs["detectors"]) + 3 * len(kwargs["detectors"])  # signals; bias, dark, flat
    assert len(a) == raws + truths + len(kwargs["detectors"])  # + defects
    assert a.keys() == b.keys()
    different = [name for name in a if a[name] != b[name]]
    assert not different, different
    assert progress == [(i, exposures) for i in range(1, exposures + 1)]
    strip = lambda m, root: m.model_dump_json().replace(str(root), "ROOT")  # noqa: E731
    assert strip(one, tmp_path / "one") == strip(two, tmp_path / "two")
    assert strip(load_manifest(tmp_path / "two"), tmp_path / "two") == strip(two, tmp_path / "two")


def test_other_seed_changes_the_frames(tmp_path):
    """The comparison above can fail: another seed gives other raw bytes."""
    kwargs = {"camera": "generic", "small": True, "detectors": [0], "science": 1}
    simulate(SimulationRequest(out=tmp_path / "a", seed=1, **kwargs), workers=2)
    simulate(SimulationRequest(out=tmp_path / "b", seed=2, **kwargs), workers=2)
    raw = lambda root: next((root / "raw").glob("*.fits")).read_bytes()  # noqa: E731
    assert raw(tmp_path / "a") != raw(tmp_path / "b")
