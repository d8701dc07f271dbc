"""The fast paths of a dataset message's validation (issue 12: the writer parses every body).

- ``normalize_data_id``'s fast path gives exactly what its checks give, for every data id of a
  corpus (valid ones in several shapes, each kind of refusal);
- the dataset id assembled around the data id's canonical JSON is the UUID5 of the whole name.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from isrflow.model.errors import DataIdError
from isrflow.model.ids import (
    DATASET_NAMESPACE,
    DATASET_TYPES,
    _checked_data_id,
    canonical_json,
    dataset_id_from_json,
    dataset_id_normalized,
    normalize_data_id,
)
from isrflow.model.messages import (
    CertifyMessage,
    DatasetMessage,
    DetectorRecord,
    ExecutionCompleteMessage,
    InstrumentRecord,
    ProvenanceInput,
    parse_message,
)

RAW = uuid.UUID(int=7)
BIAS = uuid.UUID(int=8)


def _body(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "dataset",
        "message_id": "m1",
        "execution_id": "ex",
        "dataset_type": "postISRCCD",
        "run": "u/run",
        "data_id": {"instrument": "HSC", "exposure": 5, "detector": 3},
        "uri": "s3://b/x.fits",
        "size": 12,
        "sha256": "0" * 64,
        "inputs": [{"dataset_id": str(RAW), "role": "raw"}, {"dataset_id": str(BIAS), "role": "bias"}],
    }
    body.update(kw)
    return {k: v for k, v in body.items() if v is not ...}


def _corpus() -> list[Any]:
    good = DatasetMessage.model_validate(_body())
    return [
        _body(),
        _body(id=str(good.id)),
        _body(id=str(uuid.UUID(int=1))),  # wrong id
        _body(id=None),
        _body(inputs=[]),
        _body(inputs=...),
        _body(inputs=[{"dataset_id": str(RAW), "role": "raw"}, {"dataset_id": str(RAW), "role": "x"}]),
        _body(inputs=[{"dataset_id": str(good.id), "role": "self"}]),
        _body(data_id={"instrument": "HSC", "detector": 3, "exposure": 5}),  # other key order
        _body(data_id={"instrument": "HSC", "exposure": 5}),  # missing key
        _body(data_id={"instrument": "HSC", "exposure": 5, "detector": 3, "physical_filter": "r"}),
        _body(data_id={"instrument": "", "exposure": 5, "detector": 3}),
        _body(data_id={"instrument": "HSC", "exposure": True, "detector": 3}),
        _body(data_id={"instrument": "HSC", "exposure": 5.0, "detector": 3}),
        _body(data_id={"instrument": "HSC", "exposure": "5", "detector": 3}),
        _body(data_id={"instrument": 7, "exposure": 5, "detector": 3}),
        _body(data_id={"instrument": "HSC", "exposure": 2**70, "detector": 3}),
        _body(data_id={"instrument": 'ÉCU "q" \\', "exposure": 5, "detector": 3}),
        _body(data_id=[1, 2]),
        _body(dataset_type="flat", data_id={"instrument": "HSC", "detector": 1, "physical_filter": "HSC-R"}),
        _body(dataset_type="flat", data_id={"instrument": "HSC", "detector": 1}),
        _body(dataset_type="bias", data_id={"instrument": "HSC", "detector": 1}, inputs=[]),
        _body(dataset_type="nonsense"),
        _body(run="bad run name"),
        _body(run="a/../b"),
        _body(size=-1),
        _body(sha256="xyz"),
        _body(created="2026-11-20T03:00:00+02:00"),
        _body(created="2026-11-20T03:00:00"),  # naive
        _body(replace=True),
        _body(extra_field=1),
        _body(message_id=...),
        _body(kind="nonsense"),
        InstrumentRecord(name="HSC").model_dump(mode="json"),
        DetectorRecord(instrument="HSC", id=1, name="D1").model_dump(mode="json"),
        CertifyMessage(dataset_id=RAW, collection="HSC/calib").model_dump(mode="json"),
        ExecutionCompleteMessage(execution_id="ex", expected=3).model_dump(mode="json"),
        "{not json",
        "[]",
    ]


def _normalized(normalize: Any, dataset_type: str, data_id: Any) -> Any:
    try:
        return ("ok", normalize(dataset_type, data_id))
    except DataIdError as exc:
        return ("error", str(exc))


def test_the_fast_data_id_path_gives_what_the_checks_give() -> None:
    """Every data id of the corpus: the same normalised dict (key order included) or the same error."""
    compared = 0
    for body in _corpus():
        if (
            not isinstance(body, dict)
            or body.get("kind") != "dataset"
            or body.get("dataset_type") not in DATASET_TYPES
        ):
            continue
        dataset_type, data_id = body["dataset_type"], body["data_id"]
        keys = DATASET_TYPES[dataset_type]
        fast = _normalized(normalize_data_id, dataset_type, data_id)
        checked = _normalized(lambda t, d, keys=keys: _checked_data_id(t, keys, d), dataset_type, data_id)
        assert fast == checked, data_id
        if fast[0] == "ok":
            assert list(fast[1]) == list(keys)
        compared += 1
    assert compared >= 15


def test_a_parsed_dataset_carries_its_data_id_json() -> None:
    m = parse_message(json.dumps(_body()).encode())
    assert isinstance(m, DatasetMessage)
    assert m.data_id_json == '{"detector":3,"exposure":5,"instrument":"HSC"}'
    assert m.inputs == [
        ProvenanceInput(dataset_id=RAW, role="raw"),
        ProvenanceInput(dataset_id=BIAS, role="bias"),
    ]


@pytest.mark.parametrize(
    ("dataset_type", "run", "data_id"),
    [
        ("raw", "HSC/raw/all", {"instrument": "HSC", "exposure": 1, "detector": 0}),
        ("flat", "u/ü/run", {"instrument": 'Ü"\\', "detector": 2**40, "physical_filter": "a b"}),
        ("bias", "r", {"instrument": "x", "detector": -3}),
    ],
)
def test_the_id_assembled_around_the_data_id_json_is_the_uuid5_of_the_whole(
    dataset_type: str, run: str, data_id: dict
) -> None:
    name = canonical_json({"type": dataset_type, "run": run, "data_id": data_id})
    expected = uuid.uuid5(DATASET_NAMESPACE, name)
    assert dataset_id_from_json(dataset_type, run, canonical_json(data_id)) == expected
    assert dataset_id_normalized(dataset_type, run, data_id) == expected
