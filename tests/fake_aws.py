"""The environment every moto-backed test runs under: fake credentials and one region.

moto accepts any credentials; these only keep botocore from looking for real ones (a profile, an
instance role) and make every client agree on the region. Nothing here reaches AWS.
"""

from __future__ import annotations

import pytest

REGION = "us-east-1"

#: For a test's own environment (:func:`use_fake_aws`) or a child process's (``env={**os.environ,
#: **FAKE_AWS_ENV}``).
FAKE_AWS_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


def use_fake_aws(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    """Set :data:`FAKE_AWS_ENV` (and ``extra`` variables) for this test; undone after it."""
    for key, value in {**FAKE_AWS_ENV, **extra}.items():
        monkeypatch.setenv(key, value)
