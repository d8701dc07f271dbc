"""The columns a ``--where`` data query can name, over dataset ⟕ exposure ⋈ detector.

Shared by :meth:`.core.Registry.query_datasets` and :func:`.quanta.find_quanta`; a module of
its own so both import it at module level.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from isrflow.registry import schema as s


def query_columns() -> tuple[dict[str, Any], Any]:
    """The ``--where`` field -> column mapping over dataset ⟕ exposure ⋈ detector, and that join.

    Times (``exposure_begin``) are UTC; ``exptime`` is in seconds.
    """
    d, e, det = s.dataset.c, s.exposure.c, s.detector.c
    join = s.dataset.outerjoin(s.exposure, sa.and_(e.instrument == d.instrument, e.id == d.exposure)).join(
        s.detector, sa.and_(det.instrument == d.instrument, det.id == d.detector)
    )
    columns = {
        "instrument": d.instrument,
        "detector": d.detector,
        "detector_name": det.name,
        "exposure": d.exposure,
        "obs_type": e.obs_type,
        "physical_filter": sa.func.coalesce(e.physical_filter, d.physical_filter),
        "band": e.band,
        "day_obs": e.day_obs,
        "exptime": e.exptime,
        "exposure_begin": e.begin,
    }
    return columns, join


__all__ = ["query_columns"]
