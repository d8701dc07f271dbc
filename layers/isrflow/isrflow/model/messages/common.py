"""Pieces every message module uses: the UTC time type, collection names, message ids.

All times are timezone-aware UTC datetimes; a naive datetime is refused rather than guessed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
)

from isrflow.model.ids import (
    check_collection_name,
)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("time must be timezone-aware (UTC)")
    return value.astimezone(UTC)


#: A timezone-aware datetime, converted to UTC.
UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


def _collection(value: str) -> str:
    try:
        return check_collection_name(value)
    except Exception as exc:  # CollectionError -> pydantic validation error
        raise ValueError(str(exc)) from None


CollectionName = Annotated[str, AfterValidator(_collection)]


def new_message_id() -> str:
    """A fresh message id (32 hex digits). Redeliveries of one message keep its id."""
    return uuid.uuid4().hex
