"""Defect 10 of issue 10: files published through a temporary file and a rename get the mode a
plain open() would give (0o666 & ~umask), not mkstemp's 0600."""

from __future__ import annotations

import os
import stat

import pytest

from isrflow.calibration.mef_writer import publish, temp_file
from isrflow.io.datastore import path_to_uri
from isrflow.io.exposure_io import atomic_write_bytes
from isrflow.io.filemode import current_umask
from isrflow.io.storage import FileStorage


@pytest.fixture(params=[(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)], ids=["022", "002", "077"])
def umask(request):
    mask, expected = request.param
    previous = os.umask(mask)
    try:
        yield mask, expected
    finally:
        os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_published_files_honour_the_umask(tmp_path, umask):
    mask, expected = umask
    assert current_umask() == mask
    FileStorage().write_bytes(path_to_uri(tmp_path / "a" / "result.json"), b"{}")
    atomic_write_bytes(tmp_path / "b" / "frame.fits", lambda handle: handle.write(b"x" * 2880))
    fd, tmp = temp_file(path_to_uri(tmp_path / "c" / "flat.fits"))
    with os.fdopen(fd, "wb") as handle:
        handle.write(b"y" * 2880)
    publish(tmp, path_to_uri(tmp_path / "c" / "flat.fits"))
    modes = {p.relative_to(tmp_path).as_posix(): _mode(p) for p in tmp_path.rglob("*") if p.is_file()}
    assert modes == {"a/result.json": expected, "b/frame.fits": expected, "c/flat.fits": expected}
