"""``isrflow demo --containers``: the demo's night through the functions' Lambda containers.

The simulated raws of the demo repository are uploaded under ``raw/`` of the data bucket (moto
in server mode), each upload announced to the IngestFunction container as the S3 Object
Created event EventBridge would send, and its registry messages applied by the
RegistryWriterFunction container from moto's SQS into a new PostgreSQL schema. Then the demo
builds the calibrations and runs ProcessVisit on that repository with every Task in its
container. The bucket lives as long as the command; the schema and the repository directory
(``DIR/containers/<time>``) are removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click

INGEST_FUNCTION = "IngestFunction"
WRITER_FUNCTION = "RegistryWriterFunction"


class _Mapping:
    """The writer's event source settings for the ingest phase (the template's, as the runtime reads them)."""

    def __init__(self, batch_size: int, window_s: float):
        self.batch_size, self.batching_window_s, self.report_batch_item_failures = batch_size, window_s, True


def object_created_event(bucket: str, key: str, size: int, etag: str, region: str, account: str) -> dict:
    """The EventBridge "Object Created" event S3 sends for an upload (as events/ingest_object_created.json)."""
    return {
        "version": "0",
        "id": f"isrflow-demo-{etag[:12]}",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": etag, "sequencer": "0"},
            "request-id": "isrflow-demo",
            "requester": account,
            "reason": "PutObject",
        },
    }


def _create_schema(base_url: str, schema: str) -> None:
    import sqlalchemy as sa

    from isrflow.registry.engine import normalize_url

    engine = sa.create_engine(normalize_url(base_url), connect_args={"connect_timeout": 5})
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()


def _drop_schema(base_url: str, schema: str) -> None:
    import sqlalchemy as sa

    from isrflow.registry.engine import normalize_url

    engine = sa.create_engine(normalize_url(base_url), connect_args={"connect_timeout": 5})
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def ingest_through_lambda(
    session: Any, registry: Any, raws: list, instrument: str, timeout_s: float = 900.0
) -> None:
    """Upload every raw under raw/, invoke the ingest container per upload, wait for the registry."""
    from isrflow.local.containers.invoke_api import InvokeApiLambdas

    stack = session.stack
    s3 = stack.client("s3")
    lambdas = InvokeApiLambdas(session.endpoint.url, {}, region=stack.names["region"])

    def ingest(path: Path) -> None:
        key = f"raw/{instrument}/{path.name}"
        body = path.read_bytes()
        etag = s3.put_object(Bucket=stack.bucket, Key=key, Body=body)["ETag"].strip('"')
        event = object_created_event(
            stack.bucket, key, len(body), etag, stack.names["region"], stack.names["account"]
        )
        outcome = lambdas.invoke_function(INGEST_FUNCTION, event)
        if outcome.get("status") != "ingested":
            raise click.ClickException(f"{key}: ingest answered {json.dumps(outcome)[:500]}")

    source = session.event_source(
        lambda ev: lambdas.invoke_function(WRITER_FUNCTION, ev), _Mapping(1000, 2.0)
    ).start()
    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(ingest, [Path(r.path) for r in raws]))
        click.echo(
            f"uploaded {len(raws)} raws to s3://{stack.bucket}/raw/ and ingested them in the IngestFunction "
            f"container in {time.perf_counter() - t0:.1f} s"
        )
        deadline = time.monotonic() + timeout_s
        while _registered_raws(registry, instrument) < len(raws):
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"the registry writer did not apply the raws within {timeout_s:.0f} s "
                    f"({source.errors[-1:] or 'no writer error'})"
                )
            time.sleep(0.5)
    finally:
        source.stop()
        lambdas.close()


def _registered_raws(registry: Any, instrument: str) -> int:
    from isrflow.model.errors import CollectionError
    from isrflow.model.ids import raw_collection

    try:
        return len(registry.query_datasets("raw", [raw_collection(instrument)]))
    except CollectionError:  # the writer has not created the RUN collection yet
        return 0


@contextlib.contextmanager
def containers_demo(
    repo: Path, manifest: Any, registry_base: str, stamp: str
) -> Iterator[tuple[Path, Any, Any]]:
    """Images built, moto and start-lambda up, a PostgreSQL + S3 repository holding the demo's raws."""
    from isrflow.local.containers import prepare_images
    from isrflow.local.containers.session import ContainerSession, create_containers_repo
    from isrflow.local.runtime import PROJECT_ROOT

    project = prepare_images(PROJECT_ROOT, "x86_64", log=click.echo)
    schema = f"isrflow_demo_{stamp.lower()}"
    _create_schema(registry_base, schema)
    url = f"{registry_base}?options=-csearch_path%3D{schema}"
    crepo = repo / "containers" / stamp
    try:
        with ContainerSession(project, url, log=click.echo) as session:
            registry = create_containers_repo(crepo, url, session.stack.bucket)
            try:
                ingest_through_lambda(session, registry, manifest.raws, manifest.instrument)
                yield crepo, registry, session
            finally:
                registry.close()
    finally:
        _drop_schema(registry_base, schema)
        shutil.rmtree(crepo, ignore_errors=True)


def summarize_reports(reports: list[dict]) -> list[dict]:
    """Per function: invocations, cold-start init (median ms), duration median/max (ms), peak RSS (MiB)."""
    rows = []
    for function in sorted({r.get("function", "") for r in reports}):
        mine = [r for r in reports if r.get("function", "") == function]
        inits = sorted(r["init_ms"] for r in mine if r.get("init_ms") is not None)
        durations = sorted(r["duration_ms"] for r in mine)
        rows.append(
            {
                "function": function,
                "invocations": len(mine),
                "init_ms": inits[len(inits) // 2] if inits else 0.0,
                "median_ms": durations[len(durations) // 2] if durations else 0.0,
                "max_ms": durations[-1] if durations else 0.0,
                "peak_mb": max((r["max_rss_mb"] for r in mine), default=0.0),
            }
        )
    return rows
