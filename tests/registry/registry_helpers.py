"""Message builders and small helpers shared by the registry tests (times UTC)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from isrflow.model.messages import (
    CertifyMessage,
    DatasetMessage,
    DetectorRecord,
    ExposureRecord,
    InstrumentRecord,
    ProvenanceInput,
)
from isrflow.registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The PostgreSQL server the tests use (each test in its own schema).
PG_URL = os.environ.get("REGISTRY_TEST_URL", "postgresql://postgres@127.0.0.1:5432/test")

#: A fixed instant all test times are made from (UTC).
T0 = datetime(2026, 11, 20, 3, 0, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- message builders ------------------------------------------------------------------------


def dims(
    instrument: str = "HSC",
    detectors: tuple[int, ...] = (0, 1, 2),
    exposures: dict[int, Any] | None = None,
    physical_filter: str = "HSC-R",
) -> list[Any]:
    """Instrument, detector and exposure records. ``exposures`` maps id -> begin (default T0)."""
    out: list[Any] = [InstrumentRecord(name=instrument, camera="hsc")]
    out += [DetectorRecord(instrument=instrument, id=d, name=f"D{d}") for d in detectors]
    for exp, begin in (exposures or {100: T0}).items():
        pf = physical_filter
        if isinstance(begin, tuple):
            begin, pf = begin
        out.append(
            ExposureRecord(
                instrument=instrument,
                id=exp,
                obs_type="science",
                physical_filter=pf,
                band=pf[-1].lower(),
                exptime=30.0,
                darktime=30.0,
                day_obs=20261119,
                begin=begin,
                end=begin + timedelta(seconds=30),
            )
        )
    return out


def raw_msg(
    exposure: int, detector: int, instrument: str = "HSC", run: str | None = None, **kw: Any
) -> DatasetMessage:
    run = run or f"{instrument}/raw/all"
    kw.setdefault("uri", f"file:///data/{run}/raw_{exposure}_{detector}.fits")
    kw.setdefault("size", 1000 + detector)
    return DatasetMessage(
        dataset_type="raw",
        run=run,
        data_id={"instrument": instrument, "exposure": exposure, "detector": detector},
        **kw,
    )


def calib_msg(
    dataset_type: str,
    detector: int,
    run: str,
    instrument: str = "HSC",
    physical_filter: str | None = None,
    **kw: Any,
) -> DatasetMessage:
    data_id: dict[str, Any] = {"instrument": instrument, "detector": detector}
    if dataset_type == "flat":
        data_id["physical_filter"] = physical_filter or "HSC-R"
    kw.setdefault("uri", f"file:///data/{run}/{dataset_type}_{detector}_{physical_filter}.fits")
    kw.setdefault("size", 2000 + detector)
    return DatasetMessage(dataset_type=dataset_type, run=run, data_id=data_id, **kw)


def output_msg(
    exposure: int,
    detector: int,
    inputs: list[DatasetMessage],
    run: str = "HSC/runs/isr",
    instrument: str = "HSC",
    **kw: Any,
) -> DatasetMessage:
    kw.setdefault("uri", f"file:///data/{run}/post_{exposure}_{detector}.fits")
    kw.setdefault("size", 5000 + detector)
    return DatasetMessage(
        dataset_type="postISRCCD",
        run=run,
        data_id={"instrument": instrument, "exposure": exposure, "detector": detector},
        inputs=[ProvenanceInput(dataset_id=m.id, role=m.dataset_type) for m in inputs],
        **kw,
    )


def certify_msg(
    ds: DatasetMessage, begin: datetime | None, end: datetime | None, collection: str = "HSC/calib", **kw: Any
) -> CertifyMessage:
    return CertifyMessage(dataset_id=ds.id, collection=collection, begin=begin, end=end, **kw)


def count(registry: Registry, table: str) -> int:
    with registry.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


class FakeClock:
    """A monotonic clock that only moves when ``sleep`` is called (no real waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[int], None] | None = None

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))
