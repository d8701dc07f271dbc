"""The ``dataset`` table row of a dataset message: what the writer inserts, what the limits check.

A module of its own so the batch writer (:mod:`.writer`) and the database limits
(:mod:`.limits`) both import it at module level.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from isrflow.model.messages import DatasetMessage


def data_id_json(message: Any) -> str:
    """A dataset message's canonical data id JSON, read from the value its validator stored
    (pydantic's private-attribute lookup costs more than the writer's quick limit checks)."""
    private = getattr(message, "__pydantic_private__", None) or {}
    return private.get("_data_id_json") or message.data_id_json


def dataset_row(m: DatasetMessage, now: datetime | None) -> dict[str, Any]:
    """The row inserted for ``m``; ``created`` is the message's time, else ``now`` (UTC)."""
    did = m.data_id
    return {
        "id": m.id,
        "dataset_type": m.dataset_type,
        "run": m.run,
        "instrument": did["instrument"],
        "detector": did["detector"],
        "exposure": did.get("exposure"),
        "physical_filter": did.get("physical_filter"),
        "data_id": data_id_json(m),
        "uri": m.uri,
        "size": m.size,
        "sha256": m.sha256,
        "created": m.created or now,
    }


__all__ = ["data_id_json", "dataset_row"]
