"""No module of the library or the handlers is over :data:`LIMIT` lines unless its docstring says
why it is one module (a line starting ``Why one module:``): a long module is usually several jobs."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 500
REASON = "Why one module:"


def _sources() -> list[Path]:
    return sorted(
        [*(ROOT / "layers" / "isrflow" / "isrflow").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]
    )


def test_long_modules_say_why_they_are_one_module():
    long = []
    for path in _sources():
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines <= LIMIT:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if not any(line.strip().startswith(REASON) for line in doc.splitlines()):
            long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not long, f"split these, or give the reason ('{REASON} ...') in the docstring: {long}"


def test_the_scan_reads_the_library():
    assert len(_sources()) > 100
