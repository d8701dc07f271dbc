"""Test helper: Plan and ISR of a one-quantum cluster in process, against a local repository."""

from __future__ import annotations

import json

from functions.isr.app import isr_handler
from functions.plan.app import lambda_handler as plan_handler
from isrflow.infra.settings import ENV_DATASTORE_ROOT, ENV_REGISTRY_QUEUE_URL, ENV_REGISTRY_URL
from isrflow.io.storage import storage_for
from isrflow.local.queue import LocalQueue
from isrflow.model.messages import QuantumResult
from isrflow.process_visit.results import cluster_file_uri, read_file


def plan_and_isr_one(
    registry,
    queue: LocalQueue,
    monkeypatch,
    *,
    where: str,
    calib_collection: str,
    output_run: str,
    execution_id: str,
) -> tuple[dict, QuantumResult]:
    """The ISR worker's summary for the one cluster the query plans, and its quantum's result."""
    for key, value in {
        ENV_DATASTORE_ROOT: str(registry.datastore_root),
        ENV_REGISTRY_QUEUE_URL: queue.url,
        ENV_REGISTRY_URL: registry.url,
    }.items():
        monkeypatch.setenv(key, value)
    plan = plan_handler(
        {
            "input": {
                "where": where,
                "input_collections": ["Generic/raw/all"],
                "calib_collection": calib_collection,
                "output_run": output_run,
                "cluster_size": 1,
            },
            "execution_id": execution_id,
        }
    )
    (cluster,) = json.loads(storage_for(plan["manifest_uri"]).read_bytes(plan["manifest_uri"]))
    summary = isr_handler(
        {
            "cluster": cluster,
            "execution_id": plan["execution_id"],
            "results_prefix": plan["results_prefix"],
            "output_run": plan["output_run"],
            "isr_config": plan["isr_config"],
        }
    )
    (result,) = read_file(cluster_file_uri(plan["results_prefix"], cluster["cluster_id"]))
    return summary, result
