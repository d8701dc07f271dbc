"""Poison items the up-front checks missed: found by bisection over trial transactions.

A data error the checks did not foresee (the database refuses a value: out of range, NUL,
too long, a constraint) rolls the batch transaction back; the writer then finds the one item
that causes it by binary search over prefixes of the batch in parent-to-child order, each
tried in a transaction that is rolled back (about log2(n) trials), rejects only that item with
the database's error, and applies the rest.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from isrflow.model.errors import RegistryError
from isrflow.model.messages import KIND_ORDER
from isrflow.registry.writer.items import Item
from isrflow.registry.writer.transaction import TrialDone, run_batch


def is_poison_error(exc: BaseException) -> bool:
    """Whether a failed batch transaction may be caused by one item's values (a data error the
    database or its driver raised: out of range, NUL, too long, constraint), rather than by
    the database being unreachable or by the writer itself."""
    if isinstance(exc, RegistryError):
        return False
    if isinstance(exc, sa.exc.DBAPIError):
        return isinstance(exc, (sa.exc.DataError, sa.exc.IntegrityError)) and not exc.connection_invalidated
    if isinstance(exc, (sa.exc.StatementError, OverflowError, ValueError)):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite-only installations
        return False
    return isinstance(exc, (psycopg.DataError, psycopg.IntegrityError))


def is_unique_violation(exc: BaseException) -> bool:
    """Whether a failed batch transaction hit a unique violation (SQLSTATE 23505): with the
    writer's optimistic plain INSERTs, a row a concurrent writer committed first."""
    inner = getattr(exc, "orig", None) or exc
    return getattr(inner, "sqlstate", None) == "23505"


def error_summary(exc: BaseException) -> str:
    """``Type: first line of the message`` of a database error, at most 500 characters."""
    inner = getattr(exc, "orig", None) or exc
    text = (str(inner).strip().splitlines() or [""])[0]
    return f"{type(inner).__name__}: {text}"[:500]


def _apply_order(it: Item) -> tuple[int, int]:
    """Parents before children: by kind, and datasets without inputs before those with inputs."""
    m = it.message
    return (KIND_ORDER.index(m.kind), len(m.inputs) if m.kind == "dataset" else 0)


def _trial_error(registry: Any, items: list[Item], give_up_after: int | None) -> BaseException | None:
    """The poison error a trial run of these items raises, or None if they would apply."""
    try:
        run_batch(registry, items, strict=False, give_up_after=give_up_after, on_phase=None, trial=True)
    except TrialDone:
        return None
    except Exception as exc:
        if is_poison_error(exc):
            return exc
        raise
    raise RegistryError("internal: a trial run committed")  # pragma: no cover


def find_poison(
    registry: Any, items: list[Item], give_up_after: int | None
) -> tuple[Item, BaseException] | None:
    """The item a database error comes from: binary search for the shortest failing prefix of
    the batch in parent-to-child order (trial transactions, rolled back; about log2(n) of
    them). None if no single item explains the failure."""
    order = sorted((it for it in items if not it.fixed and it.message is not None), key=_apply_order)
    lo, hi = 0, len(order)  # prefix of length lo applies; of length hi fails (the whole batch did)
    error: BaseException | None = None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        e = _trial_error(registry, order[:mid], give_up_after)
        if e is None:
            lo = mid
        else:
            hi, error = mid, e
    if hi == 0:
        return None
    if error is None:  # the whole candidate set was never tried on its own: confirm it fails
        error = _trial_error(registry, order[:hi], give_up_after)
        if error is None:
            return None
    alone = _trial_error(registry, [order[hi - 1]], give_up_after)
    return order[hi - 1], alone or error
