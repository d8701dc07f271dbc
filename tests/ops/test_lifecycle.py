"""Storage lifecycle: the class of a datastore object (the S3 tag the bucket's rules select on),
tagged PUTs, batched deletes, and DeleteIntermediates on a hand-made plan."""

from __future__ import annotations

import json

import pytest

from isrflow.build_calibration.cleanup import delete_intermediates
from isrflow.io.datastore import dataset_type_of, dataset_uri
from isrflow.io.lifecycle import lifecycle_class, tagging_for
from isrflow.io.storage import FileStorage, S3Storage, StorageError
from isrflow.model.messages import CalibPlanResult, CalibStepEvent, MasterGroup, MasterInput, MasterResult

EXPOSURE_ID = {"instrument": "HSC", "exposure": 904000, "detector": 12}


@pytest.mark.parametrize(
    ("dataset_type", "expected"),
    [("cpBiasProc", "intermediate"), ("cpFlatProc", "intermediate"), ("postISRCCD", "output"), ("raw", None)],
)
def test_class_follows_the_dataset_type_in_the_layout(dataset_type, expected):
    uri = dataset_uri("s3://bucket/prefix", "HSC/calib/demo/bias", dataset_type, EXPOSURE_ID)
    assert dataset_type_of(uri) == dataset_type
    assert lifecycle_class(uri) == expected
    assert tagging_for(uri.split("/", 3)[3]) == (f"isrflow-class={expected}" if expected else None)


def test_masters_manifests_and_lookalikes_have_no_class():
    master = dataset_uri("s3://b", "HSC/calib/bias", "bias", {"instrument": "HSC", "detector": 3})
    assert dataset_type_of(master) == "bias" and lifecycle_class(master) is None
    for key in (
        "manifests/abc/clusters.json",
        "results/abc/HSC_1_2.json",
        "postISRCCD_HSC_1_2.fits",
        "run/postISRCCD/HSC/904000/other_HSC_904000_12.fits",
        "run/postISRCCD/HSC/904000/postISRCCD_HSC_904000_12.png",
    ):
        assert lifecycle_class(key) is None, key


class _ClientError(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class _FakeS3:
    def __init__(self, refuse_tagging=False, delete_errors=()):
        self.puts, self.deletes = [], []
        self.refuse_tagging, self.delete_errors = refuse_tagging, list(delete_errors)

    def put_object(self, **kw):
        if "Tagging" in kw and self.refuse_tagging:
            raise _ClientError("AccessDenied")
        self.puts.append(kw)

    def delete_objects(self, Bucket, Delete):
        self.deletes.append((Bucket, [o["Key"] for o in Delete["Objects"]]))
        return {"Errors": self.delete_errors}


def test_s3_put_of_a_dataset_carries_its_lifecycle_tag():
    client = _FakeS3()
    out = dataset_uri("s3://bucket", "HSC/runs/isr", "postISRCCD", EXPOSURE_ID)
    S3Storage(client).write_bytes(out, b"x")
    S3Storage(client).write_bytes("s3://bucket/manifests/k/clusters.json", b"[]")
    assert client.puts[0]["Tagging"] == "isrflow-class=output"
    assert "Tagging" not in client.puts[1]


def test_a_role_without_put_object_tagging_still_writes_untagged(caplog):
    client = _FakeS3(refuse_tagging=True)
    out = dataset_uri("s3://bucket", "HSC/calib/bias", "cpBiasProc", EXPOSURE_ID)
    S3Storage(client).write_bytes(out, b"x")
    assert len(client.puts) == 1 and "Tagging" not in client.puts[0]
    assert "s3:PutObjectTagging" in caplog.text


def test_s3_delete_batches_1000_keys_per_request_and_reports_failures():
    client = _FakeS3()
    uris = [f"s3://bucket/k/{i}" for i in range(2500)]
    assert S3Storage(client).delete(uris) == 2500
    assert [len(keys) for _, keys in client.deletes] == [1000, 1000, 500]
    failing = _FakeS3(delete_errors=[{"Key": "k/1", "Code": "AccessDenied", "Message": "no"}])
    with pytest.raises(StorageError, match=r"k/1.*AccessDenied"):
        S3Storage(failing).delete(["s3://bucket/k/1"])


def test_file_delete_counts_what_existed(tmp_path):
    (tmp_path / "a.fits").write_bytes(b"1")
    assert FileStorage().delete([str(tmp_path / "a.fits"), str(tmp_path / "missing.fits")]) == 1
    assert not (tmp_path / "a.fits").exists()


def _plan(root, groups, keep=False) -> CalibPlanResult:
    groups_uri = f"{root}/manifests/k/groups.json"
    FileStorage().write_bytes(groups_uri, json.dumps([g.model_dump(mode="json") for g in groups]).encode())
    return CalibPlanResult(
        execution_id="e",
        execution_key="k",
        calib_type="dark",
        output_run="r",
        mode="fail",
        manifest_key="m",
        manifest_uri=f"{root}/m",
        clusters=1,
        inputs=4,
        failed_at_plan=0,
        groups_uri=groups_uri,
        masters=len(groups),
        isr_results_prefix=f"{root}/results/k/isr/",
        master_results_prefix=f"{root}/results/k/masters/",
        requests_prefix=f"{root}/manifests/k/combine/",
        isr_config={},
        statistic="meanclip",
        clip=3.0,
        iterations=3,
        min_inputs=1,
        route="auto",
        max_concurrency=1,
        max_failure_fraction=1.0,
        keep_intermediates=keep,
    )


def _group(root, detector, status):
    import uuid

    inputs = []
    for exposure in (1, 2):
        uri = dataset_uri(
            root, "r", "cpDarkProc", {"instrument": "HSC", "exposure": exposure, "detector": detector}
        )
        FileStorage().write_bytes(uri, b"frame")
        inputs.append(MasterInput(dataset_id=uuid.uuid4(), uri=uri, exposure=exposure))
    group = MasterGroup(
        key=f"HSC-{detector}",
        calib_type="dark",
        instrument="HSC",
        detector=detector,
        detector_name=str(detector),
        data_id={"instrument": "HSC", "detector": detector},
        dataset_id=uuid.uuid4(),
        output_uri=f"{root}/master{detector}.fits",
        inputs=inputs,
    )
    result = MasterResult(
        key=group.key, calib_type="dark", instrument="HSC", detector=detector, status=status
    )
    FileStorage().write_bytes(f"{root}/results/k/masters/{group.key}.json", result.model_dump_json().encode())
    return group


def test_delete_intermediates_removes_only_the_inputs_of_built_masters(tmp_path):
    root = tmp_path.as_uri()
    built, failed = _group(root, 0, "succeeded"), _group(root, 1, "failed")
    result = delete_intermediates(
        CalibStepEvent(action="delete_intermediates", plan=_plan(root, [built, failed]))
    )
    assert (result.masters, result.deleted) == (1, 2)
    assert not any(FileStorage().exists(i.uri) for i in built.inputs)
    assert all(FileStorage().exists(i.uri) for i in failed.inputs)


def test_keep_intermediates_deletes_nothing(tmp_path):
    root = tmp_path.as_uri()
    built = _group(root, 0, "succeeded")
    result = delete_intermediates(
        CalibStepEvent(action="delete_intermediates", plan=_plan(root, [built], keep=True))
    )
    assert (result.masters, result.deleted) == (0, 0)
    assert all(FileStorage().exists(i.uri) for i in built.inputs)
