"""find_quanta: raw selection, calibration validity lookup, outputs and output-run modes."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from registry_helpers import T0, calib_msg, certify_msg, dims, output_msg, raw_msg

from isrflow.model.errors import CalibrationLookupError, CollectionError, OutputExistsError, RegistryError
from isrflow.registry import QuantumPlan, Registry, dataset_id, dataset_uri
from isrflow.registry import schema as s

DAY = timedelta(days=1)
US = timedelta(microseconds=1)

# Exposure -> (begin, physical filter). Bias validity: A [T0, T0+1d), B [T0+1d, T0+2d),
# gap [T0+2d, T0+5d), C [T0+5d, +inf). Flats: R from T0-1d, G from T0+9d.
EXPOSURES = {
    1: (T0, "HSC-R"),  # first instant of A
    2: (T0 + DAY - US, "HSC-R"),  # last microsecond of A
    3: (T0 + DAY, "HSC-R"),  # first instant of B (A's end is exclusive)
    4: (T0 + 3 * DAY, "HSC-R"),  # in the gap
    5: (T0 + 10 * DAY, "HSC-G"),  # C, and the G flat
    6: (T0 - DAY - US, "HSC-R"),  # before everything
}


@pytest.fixture
def calibrated(registry: Registry) -> dict:
    msgs = dims(detectors=(0, 1), exposures=EXPOSURES)
    msgs += [raw_msg(e, d) for e in EXPOSURES for d in (0, 1)]
    bias = {k: calib_msg("bias", 0, f"HSC/calib/bias/{k}") for k in "ABC"}
    flat_r = calib_msg("flat", 0, "HSC/calib/flat", physical_filter="HSC-R")
    flat_g = calib_msg("flat", 0, "HSC/calib/flat", physical_filter="HSC-G")
    dark = calib_msg("dark", 0, "HSC/calib/dark")
    defects = calib_msg("defects", 0, "HSC/calib/defects")
    msgs += [*bias.values(), flat_r, flat_g, dark, defects]
    msgs += [
        certify_msg(bias["A"], T0, T0 + DAY),
        certify_msg(bias["B"], T0 + DAY, T0 + 2 * DAY),
        certify_msg(bias["C"], T0 + 5 * DAY, None),
        certify_msg(flat_r, T0 - DAY, None),
        certify_msg(flat_g, T0 + 9 * DAY, None),
        certify_msg(dark, None, None),
        certify_msg(defects, None, None),
    ]
    registry.apply(msgs)
    return {"bias": bias, "flat_r": flat_r, "flat_g": flat_g, "dark": dark, "defects": defects}


def plan(registry: Registry, where: str = "detector = 0", **kw) -> QuantumPlan:
    return registry.find_quanta(where, ["HSC/raw/all"], "HSC/calib", "HSC/runs/isr", **kw)


def by_exposure(p: QuantumPlan) -> dict:
    return {q.exposure: q for q in p.quanta}


def test_validity_boundaries_and_gaps(registry: Registry, calibrated: dict) -> None:
    q = by_exposure(plan(registry))
    bias = calibrated["bias"]
    assert q[1].calibs["bias"].id == bias["A"].id
    assert q[2].calibs["bias"].id == bias["A"].id
    assert q[3].calibs["bias"].id == bias["B"].id
    assert q[4].calibs["bias"] is None and q[4].missing_calibs == ["bias"]
    assert q[5].calibs["bias"].id == bias["C"].id
    assert q[6].calibs["bias"] is None and q[6].missing_calibs == ["bias", "flat"]
    assert q[1].calibs["flat"].id == calibrated["flat_r"].id
    assert q[5].calibs["flat"].id == calibrated["flat_g"].id
    assert all(q[e].calibs["dark"].id == calibrated["dark"].id for e in q)
    assert q[1].calibs["bias"].uri == bias["A"].uri


def test_missing_calibrations_are_reported_per_detector(registry: Registry, calibrated: dict) -> None:
    p = plan(registry, where="exposure = 1")
    assert {(x.detector, x.dataset_type) for x in p.problems} == {
        (1, "bias"),
        (1, "dark"),
        (1, "flat"),
        (1, "defects"),
    }
    assert all(x.problem == "missing calibration" for x in p.problems)
    flat = next(x for x in p.problems if x.dataset_type == "flat")
    assert "for filter 'HSC-R'" in flat.message and "2026-11-20T03:00:00+00:00" in flat.message
    [q1] = [q for q in p.quanta if q.detector == 1]
    assert q1.missing_calibs == ["bias", "dark", "flat", "defects"]
    assert set(q1.calibs.values()) == {None}


def test_ambiguous_validity_is_an_error(registry: Registry, calibrated: dict) -> None:
    # Certification never allows overlaps, so make one behind its back (e.g. a hand-edited DB):
    # a second bias valid [T0+9d, T0+11d) overlaps C, so exposure 5 (T0+10d) has two matches.
    other = calib_msg("bias", 0, "HSC/calib/bias/rogue")
    registry.apply([other])
    with registry.engine.begin() as conn:
        conn.execute(
            sa.insert(s.calib_validity).values(
                collection="HSC/calib",
                dataset_id=other.id,
                dataset_type="bias",
                calib_key='{"detector":0,"instrument":"HSC"}',
                instrument="HSC",
                detector=0,
                physical_filter=None,
                begin=T0 + 9 * DAY,
                end=T0 + 11 * DAY,
                certified=T0,
            )
        )
    with pytest.raises(
        CalibrationLookupError, match=r"bias for HSC exposure 5 detector 0 .* ambiguous"
    ) as info:
        plan(registry)
    assert str(other.id) in str(info.value) and str(calibrated["bias"]["C"].id) in str(info.value)
    # Exposures outside the doubly-covered range still plan fine.
    assert len(plan(registry, where="detector = 0 AND exposure != 5").quanta) == 5


def test_outputs_ids_and_uris(registry: Registry, calibrated: dict) -> None:
    p = plan(registry, where="exposure = 1 AND detector = 0")
    [q] = p.quanta
    data_id = {"instrument": "HSC", "exposure": 1, "detector": 0}
    assert q.output.id == dataset_id("postISRCCD", "HSC/runs/isr", data_id)
    assert q.output.uri == dataset_uri(registry.datastore_root, "HSC/runs/isr", "postISRCCD", data_id)
    assert q.raw.id == raw_msg(1, 0).id and q.raw.uri == raw_msg(1, 0).uri
    assert (q.detector_name, q.physical_filter, q.exposure_begin) == ("D0", "HSC-R", T0)
    assert QuantumPlan.model_validate_json(p.model_dump_json()) == p  # goes into manifests
    other = registry.find_quanta(
        "exposure = 1",
        "HSC/raw/all",
        None,
        "u/me/bias",
        needed_calibs=(),
        dataset_type_out="cpBiasProc",
        datastore_root="s3://bucket/repo",
    )
    assert {q.output.uri for q in other.quanta} == {
        f"s3://bucket/repo/u/me/bias/cpBiasProc/HSC/1/cpBiasProc_HSC_1_{d}.fits" for d in (0, 1)
    }
    assert all(q.calibs == {} for q in other.quanta)


def test_output_run_modes(registry: Registry, calibrated: dict) -> None:
    raws = {e: raw_msg(e, 0) for e in EXPOSURES}
    registry.apply([output_msg(e, 0, [raws[e]]) for e in (1, 2, 3, 4, 5, 6)])
    with pytest.raises(OutputExistsError) as info:
        plan(registry)
    exc = info.value
    assert "already holds 6 postISRCCD dataset(s)" in str(exc) and "and 1 more" in str(exc)
    assert "HSC exposure 1 detector 0" in str(exc) and len(exc.conflicts) == 6
    registry_out = registry.find_quanta(
        "exposure = 1", ["HSC/raw/all"], "HSC/calib", "HSC/runs/isr", mode="skip-existing"
    )
    assert [(q.exposure, q.detector) for q in registry_out.quanta] == [(1, 1)]
    assert [r.data_id["detector"] for r in registry_out.skipped_existing] == [0]
    replaced = registry.find_quanta(
        "exposure = 1", ["HSC/raw/all"], "HSC/calib", "HSC/runs/isr", mode="replace"
    )
    assert {(q.detector, q.replace) for q in replaced.quanta} == {(0, True), (1, False)}
    with pytest.raises(RegistryError, match="unknown output mode"):
        plan(registry, mode="overwrite")  # type: ignore[arg-type]


def test_search_paths_first_match_wins(registry: Registry, calibrated: dict) -> None:
    # A reprocessed raw for exposure 1 detector 0 in another run, searched first.
    registry.apply([raw_msg(1, 0, run="HSC/raw/fixed", uri="file:///fixed.fits")])
    # An override calibration collection covering the gap, chained before the main one.
    gap_bias = calib_msg("bias", 0, "HSC/calib/bias/gap")
    early = calib_msg("bias", 0, "HSC/calib/bias/early")
    registry.apply(
        [
            gap_bias,
            early,
            certify_msg(gap_bias, T0 + 2 * DAY, T0 + 5 * DAY, collection="HSC/calib/override"),
            certify_msg(early, None, T0 + DAY, collection="HSC/calib/override"),
        ]
    )
    registry.set_chain("HSC/calib/chain", ["HSC/calib/override", "HSC/calib"])
    registry.set_chain("HSC/raw/chain", ["HSC/raw/fixed", "HSC/raw/all"])
    p = registry.find_quanta("detector = 0", "HSC/raw/chain", "HSC/calib/chain", "HSC/runs/isr")
    q = by_exposure(p)
    assert q[1].raw.uri == "file:///fixed.fits" and q[2].raw.uri == raw_msg(2, 0).uri
    assert q[4].calibs["bias"].id == gap_bias.id  # filled by the override
    assert q[1].calibs["bias"].id == early.id  # override first, even where the main one matches too
    assert q[3].calibs["bias"].id == calibrated["bias"]["B"].id  # override has nothing: fall through
    assert q[6].calibs["bias"].id == early.id


def test_collection_errors(registry: Registry, calibrated: dict) -> None:
    with pytest.raises(CollectionError, match="not a RUN"):
        registry.find_quanta("", "HSC/raw/all", "HSC/calib", "HSC/calib")
    with pytest.raises(CollectionError, match="unknown collection 'HSC/raw/nope'"):
        registry.find_quanta("", ["HSC/raw/nope"], "HSC/calib", "HSC/runs/isr")
    with pytest.raises(CollectionError, match="holds no CALIBRATION"):
        registry.find_quanta("", "HSC/raw/all", "HSC/raw/all", "HSC/runs/isr")
    with pytest.raises(CollectionError, match="calibration collection is needed"):
        registry.find_quanta("", "HSC/raw/all", None, "HSC/runs/isr")
    with pytest.raises(RegistryError, match="not an exposure-level"):
        registry.find_quanta("", "HSC/raw/all", "HSC/calib", "HSC/runs/isr", dataset_type_out="flat")
    assert registry.find_quanta("detector = 99", "HSC/raw/all", "HSC/calib", "HSC/runs/isr").quanta == []
