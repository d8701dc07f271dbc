"""DeleteIntermediates: the ISR'd inputs of the masters built are deleted after the combine unless
the input keeps them; their registry rows stay (the masters' provenance)."""

from __future__ import annotations

from calib_helpers import COUNTS, DETECTORS

from isrflow.local.usage import state_output
from isrflow.registry import uri_to_path


def _intermediates(night, dataset_type: str, run: str):
    return night.registry.query_datasets(dataset_type, [run])


def test_intermediates_of_built_masters_are_deleted_by_default(built_night):
    refs = _intermediates(built_night, "cpDarkProc", "Generic/calib/dark")
    assert len(refs) == COUNTS["dark"] * len(DETECTORS)  # registered: the masters' provenance
    assert not any(uri_to_path(r.uri).exists() for r in refs)
    deleted = state_output(built_night.executions["dark"].history, "DeleteIntermediates")["intermediates"][
        "result"
    ]
    assert deleted == {"masters": len(DETECTORS), "deleted": len(refs)}
    flats = _intermediates(built_night, "cpFlatProc", "Generic/calib/flat")
    assert flats and not any(uri_to_path(r.uri).exists() for r in flats)


def test_keep_intermediates_keeps_them(built_night):
    refs = _intermediates(built_night, "cpBiasProc", "Generic/calib/bias")
    assert len(refs) == COUNTS["bias"] * len(DETECTORS)
    assert all(uri_to_path(r.uri).exists() for r in refs)
    assert state_output(built_night.executions["bias"].history, "DeleteIntermediates") is None


def test_defects_never_delete_their_input_masters(built_night):
    for calib_type in ("dark", "flat"):
        masters = built_night.registry.query_datasets(calib_type, [f"Generic/calib/{calib_type}"])
        assert masters and all(uri_to_path(r.uri).exists() for r in masters)
    result = state_output(built_night.executions["defects"].history, "DeleteIntermediates")
    assert result is None or result["intermediates"]["result"]["deleted"] == 0
