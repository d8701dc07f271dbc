"""Collection search paths: CHAINED collections flattened into RUN and CALIBRATION members.

Shared by :class:`.core.Registry` and :func:`.quanta.find_quanta`; a module of its own so both
import it at module level.
"""

from __future__ import annotations

import sqlalchemy as sa

from isrflow.model.errors import CollectionError
from isrflow.registry import schema as s


def resolve_search_path(conn: sa.Connection, names: list[str]) -> list[tuple[str, str]]:
    """Flatten a search path: CHAINED collections expand in order, first occurrence wins.

    Returns (name, type) pairs of RUN and CALIBRATION collections. Unknown names and cycles
    are CollectionError.
    """
    c, cc = s.collection.c, s.collection_chain.c
    out: list[tuple[str, str]] = []
    seen: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in stack:
            raise CollectionError(f"collection chain cycle: {' -> '.join((*stack, name))}")
        ctype = conn.execute(sa.select(c.type).where(c.name == name)).scalar()
        if ctype is None:
            raise CollectionError(f"unknown collection {name!r}")
        if ctype == "CHAINED":
            for child in conn.execute(
                sa.select(cc.child).where(cc.parent == name).order_by(cc.position)
            ).scalars():
                visit(child, (*stack, name))
        elif name not in seen:
            seen.add(name)
            out.append((name, ctype))

    for n in names:
        visit(n, ())
    return out


__all__ = ["resolve_search_path"]
