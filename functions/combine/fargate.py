"""Fargate entry point of the combine image (the task definition's EntryPoint; the image's own
entrypoint is the Lambda runtime's). One combine request per task:

    ISRFLOW_COMBINE_REQUEST=s3://bucket/manifests/<execution>/combine/<master>.json python fargate.py

The request URI comes in that one environment override (container overrides are capped at
8 KiB, so nothing else is passed that way). Exit code 0: the master was built and registered;
1: the combine failed (its result in the datastore says why); 2: the request could not be read
or the configuration is incomplete. ``ISRFLOW_COMBINE_MEMORY_MB`` (the task's memory) sets the
strip budget unless the request sets one.
"""

from __future__ import annotations

import json
import os
import sys

ENV_REQUEST = "ISRFLOW_COMBINE_REQUEST"


def main() -> int:
    from isrflow.build_calibration.run import run_combine
    from isrflow.infra.queues import sender_for
    from isrflow.infra.settings import settings
    from isrflow.model.errors import IsrflowError

    uri = os.environ.get(ENV_REQUEST, "").strip()
    if not uri:
        print(f"error: {ENV_REQUEST} is not set (the combine request's datastore URI)", file=sys.stderr)
        return 2
    try:
        queue_url = settings().required("registry_queue_url")
        result = run_combine(uri, sender_for(queue_url))
    except IsrflowError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            result.model_dump(mode="json", include={"key", "status", "output_uri", "duration_s", "error"})
        )
    )
    if result.status != "succeeded":
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
