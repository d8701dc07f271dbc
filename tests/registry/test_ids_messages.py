"""Dataset ids, data ids, the datastore URI template and the registry message models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from registry_helpers import REPO_ROOT, T0, calib_msg, output_msg, raw_msg

from isrflow.io.datastore import dataset_uri, normalize_root, path_to_uri, uri_to_path
from isrflow.model.errors import CollectionError, DataIdError
from isrflow.model.ids import (
    DATASET_NAMESPACE,
    canonical_json,
    check_collection_name,
    dataset_id,
    normalize_data_id,
)
from isrflow.model.messages import (
    CertifyMessage,
    ExecutionCompleteMessage,
    ExposureRecord,
    InstrumentRecord,
    ProcessingRecordMessage,
    dimension_records,
    dump_message,
    parse_message,
)
from isrflow.model.observation import ObservationInfo

RAW_ID = {"instrument": "HSC", "exposure": 903334, "detector": 50}


def test_dataset_id_is_uuid5_of_canonical_json() -> None:
    expected = uuid.uuid5(
        DATASET_NAMESPACE,
        '{"data_id":{"detector":50,"exposure":903334,"instrument":"HSC"},"run":"HSC/raw/all","type":"raw"}',
    )
    assert dataset_id("raw", "HSC/raw/all", RAW_ID) == expected
    # Pinned value: changing the namespace or the recipe would orphan every stored id.
    assert str(expected) == "58596de7-13c7-5951-a41e-028bd4e64271"
    assert expected.version == 5


def test_dataset_id_ignores_key_order_and_int_flavour_but_not_content() -> None:
    import numpy as np

    base = dataset_id("raw", "HSC/raw/all", RAW_ID)
    assert dataset_id("raw", "HSC/raw/all", dict(reversed(list(RAW_ID.items())))) == base
    assert dataset_id("raw", "HSC/raw/all", {**RAW_ID, "detector": np.int64(50)}) == base
    assert dataset_id("raw", "HSC/raw/other", RAW_ID) != base
    assert dataset_id("postISRCCD", "HSC/raw/all", RAW_ID) != base
    assert dataset_id("raw", "HSC/raw/all", {**RAW_ID, "detector": 51}) != base


_SUBPROCESS_IDS = """
import json, sys
from isrflow.model.ids import dataset_id
cases = json.loads(sys.argv[1])
print(json.dumps([str(dataset_id(t, r, d)) for t, r, d in cases]))
"""


def test_dataset_ids_equal_across_processes() -> None:
    cases = [
        ("raw", "HSC/raw/all", RAW_ID),
        ("flat", "HSC/calib/flat/2026", {"physical_filter": "HSC-R", "instrument": "HSC", "detector": 5}),
        ("bias", "DECam/calib", {"instrument": "DECam", "detector": 25}),
        ("postISRCCD", "u/é/run", {"instrument": "LSSTCam", "exposure": 2026112000123, "detector": 94}),
    ]
    here = [str(dataset_id(t, r, d)) for t, r, d in cases]
    outs = []
    for seed in ("0", "12345"):  # different hash seeds: set/dict ordering must not matter
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", _SUBPROCESS_IDS, json.dumps(cases)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        outs.append(json.loads(proc.stdout))
    assert outs[0] == here and outs[1] == here


@pytest.mark.parametrize(
    ("dataset_type", "data_id", "message"),
    [
        ("raw", {"instrument": "HSC", "detector": 1}, "missing exposure"),
        ("bias", {"instrument": "HSC", "detector": 1, "exposure": 5}, "unexpected exposure"),
        ("raw", {"instrument": "HSC", "exposure": "5", "detector": 1}, "exposure must be an integer"),
        ("raw", {"instrument": "HSC", "exposure": True, "detector": 1}, "exposure must be an integer"),
        ("flat", {"instrument": "HSC", "detector": 1, "physical_filter": ""}, "non-empty string"),
        ("rawr", {"instrument": "HSC"}, "unknown dataset type"),
    ],
)
def test_bad_data_ids(dataset_type: str, data_id: dict, message: str) -> None:
    with pytest.raises(DataIdError, match=message):
        normalize_data_id(dataset_type, data_id)


@pytest.mark.parametrize("name", ["", "/abs", "a//b", "a/../b", "a/./b", "trailing/", "sp ace", "semi;colon"])
def test_bad_collection_names(name: str) -> None:
    with pytest.raises(CollectionError):
        check_collection_name(name)


def test_canonical_json_is_compact_sorted_and_keeps_unicode() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


# --- datastore URI template ------------------------------------------------------------------


def test_uri_template_same_for_file_and_s3(tmp_path) -> None:
    s3 = dataset_uri("s3://bucket/prefix/", "HSC/runs/isr", "postISRCCD", RAW_ID)
    assert s3 == "s3://bucket/prefix/HSC/runs/isr/postISRCCD/HSC/903334/postISRCCD_HSC_903334_50.fits"
    local = dataset_uri(tmp_path, "HSC/runs/isr", "postISRCCD", RAW_ID)
    assert (
        local == path_to_uri(tmp_path) + "/HSC/runs/isr/postISRCCD/HSC/903334/postISRCCD_HSC_903334_50.fits"
    )
    assert uri_to_path(local) == tmp_path / "HSC/runs/isr/postISRCCD/HSC/903334/postISRCCD_HSC_903334_50.fits"
    assert dataset_uri("file://" + str(tmp_path), "r", "raw", RAW_ID) == dataset_uri(
        tmp_path, "r", "raw", RAW_ID
    )


def test_uri_template_calibrations_and_sanitising() -> None:
    flat = {"instrument": "DECam", "detector": 25, "physical_filter": "g DECam SDSS c0001 4720.0 1520.0"}
    assert dataset_uri("s3://b", "DECam/calib/flat", "flat", flat) == (
        "s3://b/DECam/calib/flat/flat/DECam/g_DECam_SDSS_c0001_4720.0_1520.0/"
        "flat_DECam_g_DECam_SDSS_c0001_4720.0_1520.0_25.fits"
    )
    assert (
        dataset_uri("s3://b", "HSC/calib/bias", "bias", {"instrument": "HSC", "detector": 3})
        == "s3://b/HSC/calib/bias/bias/HSC/all/bias_HSC_all_3.fits"
    )
    # One file for many detectors: no detector suffix.
    assert (
        dataset_uri("s3://b", "DECam/raw/all", "raw", {"instrument": "DECam", "exposure": 7})
        == "s3://b/DECam/raw/all/raw/DECam/7/raw_DECam_7.fits"
    )


def test_normalize_root_rejects_unknown_schemes() -> None:
    from isrflow.model.errors import RegistryError

    with pytest.raises(RegistryError, match="unsupported datastore root"):
        normalize_root("gs://bucket")
    with pytest.raises(RegistryError, match="not a local file"):
        uri_to_path("s3://bucket/key")


# --- messages --------------------------------------------------------------------------------


def _all_kinds() -> list:
    raw = raw_msg(100, 1, execution_id="ex-1")
    bias = calib_msg("bias", 1, "HSC/calib/bias")
    return [
        InstrumentRecord(name="HSC", camera="hsc"),
        *dimension_records(
            ObservationInfo(
                instrument="HSC",
                detector=1,
                detector_name="1_54",
                exposure=100,
                obs_type="science",
                physical_filter="HSC-R",
                band="r",
                exptime=30,
                darktime=30,
                begin=T0,
                end=T0 + timedelta(seconds=30),
                day_obs=20261119,
            )
        )[1:],
        raw,
        bias,
        output_msg(100, 1, [raw, bias], execution_id="ex-1", created=T0),
        CertifyMessage(dataset_id=bias.id, collection="HSC/calib", begin=T0, end=None),
        ProcessingRecordMessage(
            execution_id="ex-1",
            instrument="HSC",
            exposure=100,
            detector=1,
            status="failed",
            duration_s=1.5,
            peak_memory_mb=800,
            retries=2,
            error="IsrInputError: truncated",
        ),
        ExecutionCompleteMessage(execution_id="ex-1", expected=3),
    ]


def test_every_kind_round_trips_through_json() -> None:
    kinds = set()
    for msg in _all_kinds():
        text = dump_message(msg)
        back = parse_message(text)
        assert type(back) is type(msg)
        assert back == msg
        assert parse_message(json.loads(text)) == msg
        kinds.add(msg.kind)
    assert kinds == {
        "instrument",
        "detector",
        "exposure",
        "dataset",
        "certify",
        "processing_record",
        "execution_complete",
    }


def test_dataset_message_computes_and_checks_its_id() -> None:
    m = raw_msg(100, 1)
    assert m.id == dataset_id("raw", "HSC/raw/all", {"instrument": "HSC", "exposure": 100, "detector": 1})
    body = json.loads(dump_message(m))
    body["id"] = str(uuid.uuid4())
    with pytest.raises(ValidationError, match="does not match"):
        parse_message(body)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"kind": "nonsense"}, "kind"),
        ({"dataset_type": "postISR"}, "unknown dataset type"),
        ({"data_id": {"instrument": "HSC", "detector": 1}}, "missing exposure"),
        ({"run": "../etc"}, "invalid collection name"),
        ({"sha256": "xyz"}, "sha256"),
        ({"size": -1}, "size"),
        ({"surprise": 1}, "surprise"),
        ({"created": "2026-11-20T03:00:00"}, "timezone-aware"),
    ],
)
def test_invalid_dataset_messages(patch: dict, message: str) -> None:
    body = {**json.loads(dump_message(raw_msg(100, 1))), **patch}
    body.pop("id", None)
    with pytest.raises(ValidationError, match=message):
        parse_message(body)


def test_times_are_converted_to_utc_and_naive_refused() -> None:
    tz = timezone(timedelta(hours=-10))
    m = CertifyMessage(
        dataset_id=uuid.uuid4(), collection="HSC/calib", begin=datetime(2026, 11, 19, 17, tzinfo=tz)
    )
    assert m.begin == T0 and m.begin.tzinfo == UTC
    with pytest.raises(ValidationError, match="timezone-aware"):
        CertifyMessage(dataset_id=uuid.uuid4(), collection="c", begin=datetime(2026, 1, 1))
    with pytest.raises(ValidationError, match="empty"):
        CertifyMessage(dataset_id=uuid.uuid4(), collection="c", begin=T0, end=T0)
    with pytest.raises(ValidationError, match="before its begin"):
        ExposureRecord(
            instrument="HSC",
            id=1,
            obs_type="bias",
            physical_filter="NONE",
            band="",
            exptime=0,
            darktime=0,
            day_obs=1,
            begin=T0,
            end=T0 - timedelta(seconds=1),
        )


def test_dataset_message_rejects_self_and_duplicate_inputs() -> None:
    raw = raw_msg(100, 1)
    with pytest.raises(ValidationError, match="listed twice"):
        output_msg(100, 1, [raw, raw])
    body = json.loads(dump_message(raw))
    body["inputs"] = [{"dataset_id": body["id"], "role": "self"}]
    with pytest.raises(ValidationError, match="own input"):
        parse_message(body)


_IMPORT_CHECK = """
import sys
import isrflow.registry, isrflow.model.messages
from isrflow.registry import Registry, apply_batch, find_quanta, open_repo, ingest, dataset_id
import isrflow.registry.writer, isrflow.registry.quanta, isrflow.registry.ingest, isrflow.registry.repo
heavy = sorted(m for m in ("numpy", "astropy", "scipy") if m in sys.modules)
print(",".join(heavy))
"""


def test_registry_and_messages_import_without_science_stack() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"registry imports pulled in: {proc.stdout.strip()}"


_WRITER_IMPORT_CHECK = """
import sys
sys.path.insert(0, sys.argv[1])
import functions.registry_writer.app
print(",".join(sorted(m for m in ("numpy", "astropy", "alembic") if m in sys.modules)))
"""


def test_writer_handler_imports_without_science_stack_or_alembic() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _WRITER_IMPORT_CHECK, str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
