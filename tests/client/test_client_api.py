"""The Python API (``from isrflow import Client``) against a small local repository: the same
calls a notebook makes, checked against the registry and the simulator's setup."""

from __future__ import annotations

import pytest
from visit_helpers import CALIB_COLLECTION, CALIB_RUN, make_repo

from isrflow import Client
from isrflow.model.errors import NothingSelectedError


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("client"), detectors=(0, 1), science=1)


@pytest.fixture(scope="module")
def finished(repo):
    client = Client.local(repo.root, workers=2)
    run = client.process_visit("instrument = 'Generic'", "u/test/api", wait=False)
    assert run.wait(progress=False) is run
    return client, run


def test_process_visit_handle_reports_every_detector(repo, finished):
    client, run = finished
    assert run.status() == "SUCCEEDED"
    table = run.detectors()
    science = {(r.exposure, d) for r in repo.manifest.raws if r.obs_type == "science" for d in r.detectors}
    assert {(int(e), int(d)) for e, d in zip(table["exposure"], table["detector"], strict=False)} == science
    assert set(table["status"]) == {"succeeded"}
    assert all(s > 0 for s in table["seconds"]) and str(table["seconds"].unit) == "s"
    assert run.cost().cost_usd > 0
    # the handle and the registry agree: one postISRCCD per science detector in the output run
    assert len(client.datasets(type="postISRCCD", collections="u/test/api")) == len(science)
    # and an existing execution can be found again by name
    again = client.execution(run.name)
    assert again.arn == run.arn and again.status() == "SUCCEEDED"
    assert [r.name for r in client.executions()] == [run.name]


def test_nothing_failed_means_no_rerun(finished):
    _, run = finished
    assert run.rerun_failed() is None


def test_previews_write_pngs_and_a_mosaic(finished):
    _, run = finished
    written = run.previews()
    assert len(written["previews"]) == len(run.detectors()) and len(written["mosaics"]) == 1
    assert all(u.endswith(".png") for u in written["previews"] + written["mosaics"])


def test_query_selecting_nothing_is_refused_before_starting(repo, finished):
    client, _ = finished
    with pytest.raises(NothingSelectedError, match="selects no raws"):
        client.process_visit("instrument = 'Generic' AND detector = 77", "u/test/none")
    with pytest.raises(NothingSelectedError, match="selects no flat raws"):
        client.calib_build("flat", "detector = 0", "u/test/noflat")
    assert not any(r.name.endswith("none") for r in client.executions())
    assert len(client.executions()) == 1  # nothing was started


def test_collections_with_counts(repo, finished):
    client, _ = finished
    found = {c.name: c for c in client.collections()}
    raws = sum(len(r.detectors) for r in repo.manifest.raws)
    assert found["Generic/raw/all"].type == "RUN" and found["Generic/raw/all"].datasets == raws
    calibs = len(repo.manifest.calibrations) * 4  # bias, dark, defects, one flat per detector
    assert found[CALIB_RUN].datasets == calibs
    assert found[CALIB_COLLECTION].type == "CALIBRATION" and found[CALIB_COLLECTION].datasets == calibs
    assert found["u/test/api"].datasets == 2
