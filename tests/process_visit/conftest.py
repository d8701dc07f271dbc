"""Fixtures for the ProcessVisit tests."""

from __future__ import annotations

import pytest
from visit_helpers import make_repo


@pytest.fixture
def local_repo(tmp_path, monkeypatch):
    repo = make_repo(tmp_path)
    for k, v in repo.env.items():
        monkeypatch.setenv(k, v)
    return repo
