"""The stand-in base's runtime: awslambdaric, plus a REPORT line of its own per invocation.

The runtime interface emulator that ``sam local`` uses prints no real Init Duration or Max
Memory Used, so this wrapper measures them inside the container and prints, after each
invocation, one line to stderr::

    ISRFLOW-STANDIN-REPORT {"function": ..., "sandbox": ..., "invocation": 1, "init_ms": ..., "duration_ms": ..., "max_rss_mb": ...}

``init_ms``: process start to handler imported (interpreter, runtime client, handler module),
only on the first (cold) invocation; ``duration_ms``: the handler call; ``max_rss_mb``: the
process's peak resident memory so far (MiB); ``sandbox``: a random id of this execution environment
(``sandbox`` + ``invocation`` name one invocation, even where a log shows a line twice). Usage:
``python3 standin_runtime.py module.handler``.
"""

import json
import os
import resource
import sys
import time
import uuid
from typing import Any

SANDBOX = uuid.uuid4().hex[:12]


def _process_age_ms() -> float:
    """Milliseconds since this process started (from /proc, Linux clock ticks)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime_s = float(f.read().split()[0])
    return (uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")) * 1000.0


def _report(**fields) -> None:
    fields["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    fields["function"] = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    fields["sandbox"] = SANDBOX
    sys.stderr.write("ISRFLOW-STANDIN-REPORT " + json.dumps(fields, sort_keys=True) + "\n")
    sys.stderr.flush()


def main(argv: list) -> None:
    sys.path.insert(0, "/var/runtime")
    from awslambdaric import __main__ as ric_main
    from awslambdaric import bootstrap

    find_handler = bootstrap._get_handler
    state: dict[str, Any] = {"calls": 0, "init_ms": None}  # calls: int; init_ms: float, once known

    def timed_handler(handler_name):
        handler = find_handler(handler_name)
        state["init_ms"] = round(_process_age_ms(), 1)

        def run(event, context):
            state["calls"] += 1
            t0 = time.perf_counter()
            try:
                return handler(event, context)
            finally:
                _report(
                    invocation=state["calls"],
                    duration_ms=round((time.perf_counter() - t0) * 1000.0, 1),
                    init_ms=state["init_ms"] if state["calls"] == 1 else None,
                )

        return run

    bootstrap._get_handler = timed_handler
    ric_main.main(["awslambdaric", *argv[1:]])


if __name__ == "__main__":
    main(sys.argv)
