"""The ``postgres`` marker (tests/conftest.py) is on exactly the tests that need the server."""

from __future__ import annotations


def test_the_marker_follows_the_backend(backend, request):
    marked = request.node.get_closest_marker("postgres") is not None
    assert marked == (backend.name == "postgresql")


def test_a_sqlite_only_test_is_not_marked(tmp_path, request):
    assert request.node.get_closest_marker("postgres") is None
