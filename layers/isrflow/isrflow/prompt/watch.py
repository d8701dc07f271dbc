"""The local stand-in for S3 -> EventBridge -> ingest: watch a directory, feed new files to the handler.

:class:`UploadWatcher` polls a directory. A file counts as uploaded once it has stopped
changing (same size and modification time at two polls, or unchanged for ``settle_s``).
Files already inside the datastore (the usual case: ``<repo>/raw/...``, the data bucket's
``raw/`` prefix) keep their key; files elsewhere are first *uploaded*, i.e. copied atomically to
``<datastore>/raw/<path below the watched directory>``. Each becomes an EventBridge-shaped
``Object Created`` event (ETag = MD5 of the content, as S3 gives for a single-part upload) that
runs through the template's ingest function in the runtime's process pool — the same handler
as in AWS. Its StartExecution goes, through boto3, to the local Step Functions endpoint
(:mod:`isrflow.local.sfn_api`) the watcher serves on an ephemeral 127.0.0.1 port.

What was fed is remembered in ``<repo>/ingest-watch.json`` (key -> ETag), so a restarted watcher
does not feed it again (a second feed would be harmless anyway: same dataset ids, same
execution name).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from isrflow.io.datastore import uri_to_path
from isrflow.model.errors import ConfigError
from isrflow.model.messages import IngestOutcome

INGEST_FUNCTION = "IngestFunction"
STATE_FILE = "ingest-watch.json"
UPLOAD_PREFIX = "raw"


def md5_etag(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def object_created_event(
    bucket: str, key: str, size: int, etag: str, when: datetime | None = None
) -> dict[str, Any]:
    """An EventBridge ``Object Created`` event as S3 sends it."""
    when = when or datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "000000000000",
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "local",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": size,
                "etag": etag,
                "sequencer": f"{int(when.timestamp() * 1e6):016X}",
            },
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": "isrflow-local",
            "source-ip-address": "127.0.0.1",
            "reason": "PutObject",
        },
    }


class UploadWatcher:
    """Poll ``watch_dir``; feed each new, settled file through the ingest function of ``runtime``."""

    def __init__(self, runtime, watch_dir: str | Path, *, endpoint: str, settle_s: float = 2.0):
        self.runtime = runtime
        self.watch_dir = Path(watch_dir).absolute()
        if not self.watch_dir.is_dir():
            raise ConfigError(f"{self.watch_dir}: not a directory to watch")
        root = runtime.datastore_root
        if not root.startswith("file://"):
            raise ConfigError(f"--watch needs a local file datastore (this repository's is {root})")
        self.root = uri_to_path(root)
        try:
            inside = self.watch_dir.relative_to(self.root).parts
        except ValueError:
            inside = None
        if inside is not None and inside[:1] != (UPLOAD_PREFIX,):
            raise ConfigError(
                f"{self.watch_dir} is in the datastore but not under {self.root / UPLOAD_PREFIX}: "
                f"only keys under {UPLOAD_PREFIX}/ trigger ingest (as the EventBridge rule)"
            )
        self.bucket = next(iter(runtime.app.buckets.values())).name
        spec = runtime.app.functions.get(INGEST_FUNCTION)
        if spec is None:
            raise ConfigError(f"template.yaml has no {INGEST_FUNCTION}")
        fn = runtime.functions[spec.name]
        # The handler's boto3 Step Functions client talks to the local endpoint (dummy credentials).
        self.function = replace(
            fn,
            environment={
                **fn.environment,
                "AWS_ENDPOINT_URL_STEPFUNCTIONS": endpoint,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": "us-east-1",
                "POWERTOOLS_METRICS_DISABLED": "true",
            },
        )
        self.settle_s = settle_s
        self.state_path = Path(runtime.repo) / STATE_FILE
        self.fed: dict[str, str] = (
            json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        )
        self._seen: dict[Path, tuple[int, int]] = {}

    # -- which files
    def _key(self, path: Path) -> tuple[str, bool]:
        """(object key, whether the file must first be uploaded into the datastore)."""
        try:
            return path.relative_to(self.root).as_posix(), False
        except ValueError:
            return f"{UPLOAD_PREFIX}/{path.relative_to(self.watch_dir).as_posix()}", True

    def _ready(self, path: Path, now: float) -> bool:
        stat = path.stat()
        sig = (stat.st_size, stat.st_mtime_ns)
        previous = self._seen.get(path)
        self._seen[path] = sig
        return previous == sig or now - stat.st_mtime >= self.settle_s

    def candidates(self) -> list[Path]:
        import time

        now = time.time()
        out = []
        for path in sorted(self.watch_dir.rglob("*")):
            if not path.is_file() or any(p.startswith(".") for p in path.relative_to(self.watch_dir).parts):
                continue
            if path.suffix == ".tmp" or not self._ready(path, now):
                continue
            out.append(path)
        return out

    # -- feeding
    def feed(self, path: Path) -> IngestOutcome | None:
        key, upload = self._key(path)
        etag = md5_etag(path)
        if self.fed.get(key) == etag:
            return None
        target = self.root / key
        if upload:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
            shutil.copyfile(path, tmp)
            tmp.replace(target)
        event = object_created_event(self.bucket, key, target.stat().st_size, etag)
        outcome = IngestOutcome.model_validate(self.runtime.pool.invoke(self.function, event))
        self.fed[key] = etag
        tmp_state = self.state_path.with_suffix(".tmp")
        tmp_state.write_text(json.dumps(self.fed, indent=1, sort_keys=True))
        tmp_state.replace(self.state_path)
        return outcome

    def poll_once(self) -> list[IngestOutcome]:
        """Feed every settled file not fed before; the handler's outcomes, in path order."""
        outcomes = []
        for path in self.candidates():
            outcome = self.feed(path)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def running(self) -> list:
        """Executions of this runtime still running."""
        return [e for e in self.runtime.interpreter.list_executions() if e.status == "RUNNING"]

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until every execution started so far has ended and its record is written."""
        for execution in self.running():
            execution.wait(timeout)
        self.runtime.recorder.flush()


__all__ = ["UploadWatcher", "md5_etag", "object_created_event"]
