"""Defect 8 of issue 10: an ingest event key never resolves outside the datastore (nothing read,
nothing registered, nothing written), and on S3 only keys under raw/ are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from isrflow.io.datastore import check_key, contained_path
from isrflow.model.errors import UnsafeKeyError
from isrflow.model.messages import S3ObjectCreatedEvent
from isrflow.prompt import ingest as ingest_module
from isrflow.prompt.config import PromptConfig
from isrflow.prompt.ingest import ingest_upload
from isrflow.prompt.watch import object_created_event


class _Sender:
    def __init__(self):
        self.sent = []

    def send(self, messages):
        self.sent.extend(messages)


class _NoStorage:
    """Any storage access fails the test: a refused key must be refused before any read or write."""

    def __getattr__(self, name):
        raise AssertionError(f"storage.{name} called for a refused key")


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "key",
    [
        "raw/../../etc/x.fits",
        "raw/a/../../../etc/x.fits",
        "/etc/x.fits",
        "raw/./x.fits",
        "calib/x.fits",
        "raw/",
        "x.fits",
    ],
)
def test_a_key_outside_the_datastore_is_refused_before_anything_is_read(tmp_path, monkeypatch, key):
    datastore = tmp_path / "repo" / "data"
    (datastore / "raw").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "x.fits").write_bytes(b"not FITS at all\n" * 200)  # the file the key aims at
    (datastore / "calib").mkdir()
    (datastore / "calib" / "x.fits").write_bytes(b"a calibration, not an upload\n")
    before = _tree(tmp_path)
    monkeypatch.setattr(ingest_module, "storage_for", lambda uri: _NoStorage())
    sender = _Sender()
    event = S3ObjectCreatedEvent.model_validate(object_created_event("isrflow-local", key, 3200, "0" * 32))
    with pytest.raises(UnsafeKeyError, match=repr(key).replace(".", r"\.")):
        ingest_upload(
            event, datastore_root=str(datastore), sender=sender, prompt=PromptConfig(), starter=None
        )
    assert sender.sent == []  # nothing registered
    assert _tree(tmp_path) == before  # nothing written (no quarantine record anywhere)


def test_on_s3_only_keys_under_raw_are_read(monkeypatch):
    monkeypatch.setattr(ingest_module, "storage_for", lambda uri: _NoStorage())
    for key in ("raw/../secrets/x.fits", "quarantine/raw/x.fits.json", "raw/x/./y.fits"):
        event = S3ObjectCreatedEvent.model_validate(object_created_event("data-bucket", key, 3200, "0" * 32))
        with pytest.raises(UnsafeKeyError):
            ingest_upload(
                event,
                datastore_root="s3://data-bucket",
                sender=_Sender(),
                prompt=PromptConfig(),
                starter=None,
            )
    assert (
        ingest_module.object_uri("s3://data-bucket", "data-bucket", "raw/HSC/a.fits")
        == "s3://data-bucket/raw/HSC/a.fits"
    )


def test_a_symlink_out_of_the_datastore_is_refused(tmp_path):
    datastore = tmp_path / "data"
    (datastore / "raw").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (datastore / "raw" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafeKeyError, match="outside the datastore"):
        contained_path(datastore, "raw/link/x.fits", prefix="raw")
    assert (
        contained_path(datastore, "raw/night/x.fits", prefix="raw") == datastore / "raw" / "night" / "x.fits"
    )
    assert check_key("raw/HSC/20261120/HSCA90400050.fits", prefix="raw")
