"""One ``isrflow tune`` setting's process: invoke a function's handler once per event.

    python -m isrflow.ops.tune_child SPEC.json OUT.jsonl

SPEC holds the :class:`~isrflow.local.lambdas.LocalFunction` (as a dict) and the events. Each
invocation goes through :func:`isrflow.local.lambdas.invoke_here_timed`, the local runtime's own
Lambda machinery, and appends one JSON line (``ok``, ``duration_s``, ``error``) to OUT as soon
as it ends, so a process killed for its timeout still reports what it finished. The parent
(:mod:`.tune`) pins this process to its cores, applies the duty cycle and reads its peak RSS.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from isrflow.local.lambdas import LocalFunction, invoke_here_timed

    spec = json.loads(Path(argv[1]).read_text())
    fn = LocalFunction(**spec["function"])
    failed = 0
    with open(argv[2], "a") as out:
        for event in spec["events"]:
            status, value, seconds = invoke_here_timed(fn, event)
            error = None if status == "ok" else f"{value[0]}: {value[1]}"[:500]
            failed += status != "ok"
            out.write(json.dumps({"ok": status == "ok", "duration_s": seconds, "error": error}) + "\n")
            out.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
