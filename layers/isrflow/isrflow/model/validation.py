"""One-line summaries of pydantic validation errors, for typed isrflow error messages."""

from __future__ import annotations

from pydantic import ValidationError


def summary(exc: ValidationError, limit: int = 3) -> str:
    """``field = value: reason`` for the first ``limit`` problems, joined by ``; `` (no URLs, one line)."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "")).replace("Value error, ", "")
        if loc and "input" in err and not isinstance(err["input"], dict):
            parts.append(f"{loc} = {err['input']!r}: {msg}")
        else:
            parts.append(f"{loc}: {msg}" if loc else msg)
    more = exc.error_count() - limit
    return " ".join("; ".join(parts).split()) + (f" (+{more} more)" if more > 0 else "")
