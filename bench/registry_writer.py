#!/usr/bin/env python
"""Registry writer benchmark (PostgreSQL): batched writer vs a connection storm.

Prints one JSON object:

- ``batched``: postISRCCD dataset rows (each with 2 provenance rows: its raw and its bias)
  committed per second by ``apply_batch`` from pre-queued batches of 1000 SQS message bodies
  (JSON parsing and validation included), with a check that no row is lost or duplicated —
  including after one batch is delivered a second time. ``datasets_per_s`` is over the whole
  run, ``datasets_per_s_median_batch`` from the median batch time (steadier on a busy machine).
- ``storm``: the baseline the writer replaces: N concurrent producers (threads), each opening
  its own database connection for every single write (one dataset + 2 provenance rows),
  as thousands of Lambda workers would. Throughput, connection errors and lost writes.
- ``ratio``: batched datasets/s over storm datasets/s.

``--rounds N`` repeats the batched measurement N times (each round into its own RUN collection)
and reports the best round as ``batched`` (every round's datasets/s in
``batched_rounds_datasets_per_s``): on a machine shared with other work the best of N is the
steadiest figure.

Usage: ``bench/registry_writer.py [--quick] [--rounds N] [--url URL]``; URL defaults to $REGISTRY_TEST_URL
or postgresql://postgres@127.0.0.1:5432/test. Everything runs in a fresh schema, dropped at
the end. ``--quick`` finishes in a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from isrflow.model.ids import canonical_json
from isrflow.model.messages import (
    DatasetMessage,
    DetectorRecord,
    ExposureRecord,
    InstrumentRecord,
    ProvenanceInput,
)
from isrflow.registry import BatchItem, Registry, apply_batch, dataset_id
from isrflow.registry import schema as s

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
INSTRUMENT = "BENCH"


def _setup(registry: Registry, exposures: int, detectors: int) -> None:
    """Dimensions, one raw per (exposure, detector) and one bias per detector (not timed)."""
    msgs: list = [InstrumentRecord(name=INSTRUMENT)]
    msgs += [DetectorRecord(instrument=INSTRUMENT, id=d, name=f"D{d}") for d in range(detectors)]
    msgs += [
        ExposureRecord(
            instrument=INSTRUMENT,
            id=e,
            obs_type="science",
            physical_filter="r",
            band="r",
            exptime=30,
            darktime=30,
            day_obs=20261119,
            begin=T0 + timedelta(minutes=e),
            end=T0 + timedelta(minutes=e, seconds=30),
        )
        for e in range(exposures)
    ]
    msgs += [
        DatasetMessage(
            dataset_type="bias",
            run="bench/calib",
            data_id={"instrument": INSTRUMENT, "detector": d},
            uri=f"s3://bench/calib/bias_{d}.fits",
            size=1,
        )
        for d in range(detectors)
    ]
    msgs += [
        DatasetMessage(
            dataset_type="raw",
            run="bench/raw",
            uri=f"s3://bench/raw/{e}_{d}.fits",
            size=1,
            data_id={"instrument": INSTRUMENT, "exposure": e, "detector": d},
        )
        for e in range(exposures)
        for d in range(detectors)
    ]
    for i in range(0, len(msgs), 5000):
        result = apply_batch(registry, [BatchItem(str(j), m) for j, m in enumerate(msgs[i : i + 5000])])
        assert not result.rejected and not result.retry, result.summary()


def _output_bodies(run: str, exposures: range, detectors: int, execution_id: str = "bench-exec") -> list[str]:
    bodies = []
    for e in exposures:
        for d in range(detectors):
            raw = dataset_id("raw", "bench/raw", {"instrument": INSTRUMENT, "exposure": e, "detector": d})
            bias = dataset_id("bias", "bench/calib", {"instrument": INSTRUMENT, "detector": d})
            bodies.append(
                DatasetMessage(
                    dataset_type="postISRCCD",
                    run=run,
                    data_id={"instrument": INSTRUMENT, "exposure": e, "detector": d},
                    uri=f"s3://bench/{run}/{e}_{d}.fits",
                    size=1234,
                    sha256="0" * 64,
                    execution_id=execution_id,
                    inputs=[
                        ProvenanceInput(dataset_id=raw, role="raw"),
                        ProvenanceInput(dataset_id=bias, role="bias"),
                    ],
                ).model_dump_json(exclude_none=True)
            )
    return bodies


def bench_batched(
    registry: Registry, batches: int, batch_size: int, detectors: int, run: str = "bench/isr"
) -> dict:
    """One round: ``batches`` batches of new postISRCCD datasets into the RUN collection ``run``
    (execution id ``<run>-exec``), then one of them delivered again."""
    per_batch_exposures = batch_size // detectors
    execution_id = f"{run}-exec"
    queued = []
    for b in range(batches):
        bodies = _output_bodies(
            run, range(b * per_batch_exposures, (b + 1) * per_batch_exposures), detectors, execution_id
        )
        queued.append([BatchItem(f"m{b}-{i}", body) for i, body in enumerate(bodies)])
    total = sum(len(q) for q in queued)
    per_batch = []
    start = time.perf_counter()
    for items in queued:
        t0 = time.perf_counter()
        result = apply_batch(registry, items)
        per_batch.append(time.perf_counter() - t0)
        if result.rejected or result.retry:
            raise RuntimeError(
                f"batch not fully applied: {result.summary()} {result.rejected[:1]} {result.retry[:1]}"
            )
    elapsed = time.perf_counter() - start
    per_batch.sort()
    redelivered = apply_batch(registry, queued[0])  # SQS may deliver a batch twice: must change nothing
    with registry.engine.connect() as conn:
        rows = conn.execute(
            sa.select(sa.func.count()).select_from(s.dataset).where(s.dataset.c.run == run)
        ).scalar()
        prov = conn.execute(
            sa.select(sa.func.count())
            .select_from(
                s.dataset_provenance.join(s.dataset, s.dataset.c.id == s.dataset_provenance.c.output_id)
            )
            .where(s.dataset.c.run == run)
        ).scalar()
    return {
        "batches": batches,
        "batch_size": batch_size,
        "datasets": total,
        "seconds": round(elapsed, 4),
        "datasets_per_s": round(total / elapsed, 1),
        # the same from the median batch: steadier than the total on a machine shared with other work
        "datasets_per_s_median_batch": round(batch_size / per_batch[len(per_batch) // 2], 1),
        "batch_ms": {
            "min": round(per_batch[0] * 1000, 1),
            "median": round(per_batch[len(per_batch) // 2] * 1000, 1),
            "max": round(per_batch[-1] * 1000, 1),
        },
        "provenance_rows": prov,
        "lost": max(total - rows, 0),
        "duplicated": max(rows - total, 0) + max(prov - 2 * total, 0),
        "redelivered_batch_applied": len(redelivered.applied),
        "applied_counted": registry.applied_status(execution_id).applied,
    }


def bench_storm(
    url: str, schema: str, producers: int, writes_each: int, exposures: int, detectors: int
) -> dict:
    import psycopg

    conninfo = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    counters = {"committed": 0, "connection_errors": 0, "other_errors": 0}
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(producers)
    insert_ds = (
        "INSERT INTO dataset (id, dataset_type, run, instrument, detector, exposure, physical_filter, "
        "data_id, uri, size, sha256, created) VALUES (%s, %s, %s, %s, %s, %s, NULL, %s, %s, %s, %s, %s) "
        "ON CONFLICT (id) DO NOTHING"
    )
    insert_prov = (
        "INSERT INTO dataset_provenance (output_id, input_id, role) VALUES (%s, %s, %s) "
        "ON CONFLICT DO NOTHING"
    )
    now = s.to_micros(datetime.now(UTC))

    def producer(p: int) -> None:
        barrier.wait()
        for w in range(writes_each):
            n = p * writes_each + w
            e, d = (n // detectors) % exposures, n % detectors
            data_id = {"instrument": INSTRUMENT, "exposure": e, "detector": d}
            out = dataset_id("postISRCCD", f"bench/storm{n // (exposures * detectors)}", data_id)
            raw = dataset_id("raw", "bench/raw", data_id)
            bias = dataset_id("bias", "bench/calib", {"instrument": INSTRUMENT, "detector": d})
            try:
                conn = psycopg.connect(conninfo, options=f"-csearch_path={schema}", connect_timeout=10)
            except psycopg.OperationalError as exc:
                with lock:
                    counters["connection_errors"] += 1
                    if len(errors) < 3:
                        errors.append(str(exc).strip().splitlines()[-1])
                continue
            try:
                with conn, conn.cursor() as cur:
                    cur.execute(
                        insert_ds,
                        (
                            out,
                            "postISRCCD",
                            "bench/storm",
                            INSTRUMENT,
                            d,
                            e,
                            canonical_json(data_id),
                            f"s3://bench/storm/{n}.fits",
                            1234,
                            "0" * 64,
                            now,
                        ),
                    )
                    cur.executemany(insert_prov, [(out, raw, "raw"), (out, bias, "bias")])
                with lock:
                    counters["committed"] += 1
            except psycopg.Error as exc:
                with lock:
                    counters["other_errors"] += 1
                    if len(errors) < 3:
                        errors.append(str(exc).strip().splitlines()[-1])
            finally:
                conn.close()

    with sa.create_engine(sa.engine.make_url(url).set(drivername="postgresql+psycopg")).begin() as conn:
        conn.execute(sa.text(f'SET search_path TO "{schema}"'))
        conn.execute(sa.insert(s.collection).values(name="bench/storm", type="RUN", doc=""))
    threads = [threading.Thread(target=producer, args=(p,)) for p in range(producers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    attempted = producers * writes_each
    return {
        "producers": producers,
        "attempted": attempted,
        "committed": counters["committed"],
        "connection_errors": counters["connection_errors"],
        "other_errors": counters["other_errors"],
        "lost": attempted - counters["committed"],
        "seconds": round(elapsed, 4),
        "datasets_per_s": round(counters["committed"] / elapsed, 1),
        "sample_errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (a few seconds)")
    parser.add_argument("--url", default=os.environ.get("REGISTRY_TEST_URL", DEFAULT_URL))
    parser.add_argument(
        "--batches", type=int, default=None, help="batches of 1000 messages (default 20, quick 3)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="batched rounds (each into its own RUN collection); the best is reported (default 1)",
    )
    parser.add_argument("--producers", type=int, default=200)
    parser.add_argument(
        "--writes-each", type=int, default=None, help="storm writes per producer (default 10, quick 1)"
    )
    args = parser.parse_args(argv)
    batches = args.batches or (3 if args.quick else 20)
    writes_each = args.writes_each or (1 if args.quick else 10)
    batch_size, detectors = 1000, 100
    exposures = batches * batch_size // detectors

    schema = f"bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(sa.engine.make_url(args.url).set(drivername="postgresql+psycopg"))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        version = conn.execute(sa.text("SHOW server_version")).scalar()
        max_conn = conn.execute(sa.text("SHOW max_connections")).scalar_one()
    try:
        registry = Registry.create(args.url, "s3://bench", schema=schema)
        try:
            _setup(registry, exposures, detectors)
            rounds = [
                bench_batched(registry, batches, batch_size, detectors, f"bench/isr{r}")
                for r in range(max(args.rounds, 1))
            ]
        finally:
            registry.close()
        storm = bench_storm(args.url, schema, args.producers, writes_each, exposures, detectors)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    batched = max(rounds, key=lambda r: r["datasets_per_s"])  # best of N: the machine may be shared
    out = {
        "database": f"postgresql {version}",
        "max_connections": int(max_conn),
        "quick": args.quick,
        "batched": batched,
        "batched_rounds_datasets_per_s": [r["datasets_per_s"] for r in rounds],
        "storm": storm,
        "ratio": round(batched["datasets_per_s"] / storm["datasets_per_s"], 1)
        if storm["datasets_per_s"]
        else None,
        "target_datasets_per_s": 20000,
        "meets_target": batched["datasets_per_s"] >= 20000,
    }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
