"""No-op Lambda handlers for bench/orchestration.py (plan returns a prepared answer)."""

import json
import os


def plan(event, context=None):
    return json.loads(os.environ["BENCH_PLAN_RESULT"])


def noop(event, context=None):
    return {"ok": True}
