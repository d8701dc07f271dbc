"""Peak memory of every function on a real workload: the figures template.yaml's MemorySize
defaults are sized from. Prints JSON.

Each function runs in a fresh process at its template memory and full CPU through
``isrflow.ops.tune.measure`` (the ``isrflow tune`` machinery: the local runtime's Lambda
invocation, peak RSS from wait4), on the payloads a finished local run sent it, replayed:

- every function a parent execution's Task state invoked (ProcessVisit: Plan, Mosaics with
  previews, Summarize; BuildCalibration: Plan, Normalize, PrepareCombine, DeleteIntermediates,
  Certify, Summarize), from the Task parameters in the execution records' histories, keyed by the
  function the Task named (one function per step);
- IsrFunction: one cluster of the ProcessVisit manifest, as the map's ItemSelector builds it;
- RecordFailureFunction: that cluster as the map's Catch sends it after a worker timed out;
- RecordCombineFailureFunction: the first master of a BuildCalibration combine manifest, as the
  combine Map's Catch sends it after a Fargate task was killed (exit code 137);
- RegistryWriterFunction: one SQS batch of the template's batch size (5,000) of processing
  records for the repository's detectors;
- IngestFunction: an S3 ``Object Created`` event for one raw copied under ``raw/``;
- MigrateFunction: the stack's Create request of its registry-schema custom resource (the reply
  goes to a local HTTP endpoint).

The replays run against a scratch copy of the repository (``--repo``, e.g. one ``isrflow demo``
made): handlers write what they write there. A replayed call may end in an error (a Plan
refusing outputs that now exist): its peak is still the handler's work up to it, and the error
is reported. Summarize replays wait for the registry (nothing drains the queue), so they are
given a short timeout: the peak is what matters.

Usage: python bench/function_memory.py --repo DIR [--timeout 120]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path


def _records(repo: Path):
    from isrflow.local.records import ExecutionRecord

    for path in sorted((repo / "executions").glob("*/*.json")):
        yield ExecutionRecord.model_validate_json(path.read_text())


def _payloads(repo: Path, app) -> dict[str, list[dict]]:
    """Function logical id -> recorded Lambda payloads of the parents' histories."""
    from isrflow.local.usage import task_intervals

    out: dict[str, list[dict]] = {}
    for record in _records(repo):
        for task in task_intervals(record.history, record.execution_arn):
            params = task.parameters if isinstance(task.parameters, dict) else {}
            name, payload = str(params.get("FunctionName", "")), params.get("Payload")
            if isinstance(payload, dict) and name:
                try:
                    key = app.function(name).logical_id
                except KeyError:
                    continue
                out.setdefault(key, []).append(payload)
    return out


def _record_failure_event(isr: dict) -> dict:
    """The ISR map's Catch payload for the cluster of ``isr`` (a worker that timed out)."""
    cause = json.dumps({"errorMessage": "Task timed out after 900.00 seconds"})
    return {
        "cluster": isr["cluster"],
        "results_prefix": isr["results_prefix"],
        "error": {"Error": "Sandbox.Timedout", "Cause": cause},
    }


def _record_combine_failure_event(repo: Path) -> dict | None:
    """The combine Map's Catch payload for the first master of a BuildCalibration execution."""
    from isrflow.build_calibration import layout
    from isrflow.io.storage import ObjectNotFoundError, storage_for
    from isrflow.ops.status import plan_result

    for record in _records(repo):
        plan = plan_result(record.history) if "BuildCalibration" in record.state_machine_arn else None
        if not plan or not plan.get("masters"):
            continue
        uri = layout.combine_manifest_uri(layout.root_of(plan["groups_uri"]), plan["execution_key"])
        try:
            items = json.loads(storage_for(uri).read_bytes(uri))
        except ObjectNotFoundError:  # a build whose PrepareCombine never ran
            continue
        task = {"Containers": [{"ExitCode": 137, "Reason": "OutOfMemoryError: Container killed"}]}
        error = {"Error": "States.TaskFailed", "Cause": json.dumps(task)}
        return {"state": {"item": items[0], "error": error, "task": task, "exit_code": 137}}
    return None


def _isr_event(repo: Path) -> dict | None:
    from isrflow.io.storage import storage_for
    from isrflow.model.messages import IsrClusterEvent, PlanResult
    from isrflow.ops.status import plan_result

    for record in _records(repo):
        if "ProcessVisit" not in record.state_machine_arn:
            continue
        plan = plan_result(record.history)
        if plan and plan.get("clusters"):
            p = PlanResult.model_validate(plan)
            cluster = json.loads(storage_for(p.manifest_uri).read_bytes(p.manifest_uri))[0]
            return IsrClusterEvent(
                cluster=cluster,
                execution_id=p.execution_id,
                results_prefix=p.results_prefix,
                output_run=p.output_run,
                isr_config=p.isr_config,
            ).model_dump(mode="json")
    return None


def _writer_event(repo: Path, batch: int) -> dict:
    from isrflow.model.messages import ProcessingRecordMessage
    from isrflow.registry import open_repo

    registry = open_repo(repo)
    try:
        refs = registry.query_datasets("raw")
    finally:
        registry.close()
    ref = refs[0]
    records = []
    for i in range(batch):
        message = ProcessingRecordMessage(
            execution_id=f"bench-{i // 100}",
            instrument=ref.data_id["instrument"],
            exposure=ref.data_id["exposure"],
            detector=ref.data_id["detector"],
            status="succeeded",
            duration_s=1.0,
        )
        records.append(
            {
                "messageId": uuid.uuid4().hex,
                "receiptHandle": uuid.uuid4().hex,
                "body": message.model_dump_json(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "eventSource": "aws:sqs",
            }
        )
    return {"Records": records}


def _ingest_event(repo: Path, datastore: Path, bucket: str) -> dict:
    from isrflow.prompt.watch import md5_etag, object_created_event
    from isrflow.registry import open_repo, uri_to_path

    registry = open_repo(repo)
    try:
        raw = uri_to_path(registry.query_datasets("raw")[0].uri)
    finally:
        registry.close()
    key = f"raw/bench/{raw.name}"
    target = datastore / key
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(raw, target)
    return object_created_event(bucket, key, target.stat().st_size, md5_etag(target))


class _Answers:
    """A local HTTP endpoint taking the custom resource's PUT reply (CloudFormation's ResponseURL)."""

    def __enter__(self):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}/reply"

    def __exit__(self, *exc):
        self.server.shutdown()


def _migrate_event(url: str) -> dict:
    return {
        "RequestType": "Create",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:local:0:stack/s/1",
        "RequestId": uuid.uuid4().hex,
        "LogicalResourceId": "RegistrySchema",
        "ResourceType": "Custom::RegistrySchema",
        "ResourceProperties": {},
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    from isrflow.local.runtime import LocalRuntime
    from isrflow.ops.tune import CpuShare, measure
    from isrflow.ops.tune_workload import local_function, template_app

    with tempfile.TemporaryDirectory(prefix="isrflow-fnmem-") as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(args.repo, repo, symlinks=True, ignore=shutil.ignore_patterns("sim", "cache"))
        app = template_app()
        runtime = LocalRuntime(repo, processes=0)  # its environment (datastore, queue, registry); not started
        env = {
            k: v
            for k, v in next(iter(runtime.functions.values())).environment.items()
            if k.startswith("ISRFLOW_")
            and k
            in (
                "ISRFLOW_DATASTORE_ROOT",
                "ISRFLOW_REGISTRY_QUEUE_URL",
                "ISRFLOW_REGISTRY_URL",
                "ISRFLOW_REGISTRY_SECRET_ARN",
            )
        }
        runtime.pool.close()
        datastore = Path(runtime.datastore_root.removeprefix("file://"))
        bucket = next(iter(app.buckets.values())).name
        mapping = next(m for m in app.event_source_mappings if m.enabled)
        workloads = _payloads(repo, app)
        isr = _isr_event(repo)
        if isr is not None:
            workloads["IsrFunction"] = [isr]
            workloads["RecordFailureFunction"] = [_record_failure_event(isr)]
        combine_failure = _record_combine_failure_event(repo)
        if combine_failure is not None:
            workloads["RecordCombineFailureFunction"] = [combine_failure]
        workloads["RegistryWriterFunction"] = [_writer_event(repo, mapping.batch_size)]
        workloads["IngestFunction"] = [_ingest_event(repo, datastore, bucket)]
        cores = tuple(sorted(os.sched_getaffinity(0)))
        out = {}
        answers = _Answers()
        workloads["MigrateFunction"] = [_migrate_event(answers.__enter__())]
        for key, events in sorted(workloads.items()):
            spec = app.functions[key]
            fn = local_function(spec, env)
            m = measure(
                fn,
                events,
                CpuShare(vcpus=len(cores), cores=cores, duty=1.0, capped=False),
                timeout_s=args.timeout,
                workdir=Path(tmp) / "runs" / key,
            )
            errors = sorted({i.error.split(":")[0] for i in m.invocations if not i.ok})
            out[key] = {
                "memory_mb": spec.memory_mb,
                "peak_rss_mb": round(m.peak_rss_mb, 1),
                "invocations": len(m.invocations),
                "events": len(events),
                "max_duration_s": round(max((i.duration_s for i in m.invocations), default=0.0), 3),
                "timed_out": m.timed_out,
                "errors": errors,
            }
            print(json.dumps({key: out[key]}), file=sys.stderr)
        answers.__exit__()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
