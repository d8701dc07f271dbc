"""CloudWatch metrics as Embedded Metric Format (EMF) log lines, the way Powertools writes them.

A Lambda function prints one JSON object per flush to stdout; CloudWatch Logs extracts the
metrics from it asynchronously (no API call, no latency, no extra permission). Layout::

    {"_aws": {"Timestamp": <ms>, "CloudWatchMetrics": [{"Namespace": "isrflow",
              "Dimensions": [["service"]], "Metrics": [{"Name": "RawIngested", "Unit": "Count"}]}]},
     "service": "isrflow-ingest", "RawIngested": 1, "key": "raw/...", ...}

Namespace: ``POWERTOOLS_METRICS_NAMESPACE`` (template: ``isrflow``); the one dimension is
``service`` = ``POWERTOOLS_SERVICE_NAME`` (e.g. ``isrflow-ingest``). Other fields of the line
(key, reason, instrument, execution, ...) are log properties, searchable with Logs Insights
but not dimensions, so they add no metric cardinality. docs/operations.md lists every metric.
``POWERTOOLS_METRICS_DISABLED=true`` (as in Powertools) suppresses the output, e.g. locally.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

DEFAULT_NAMESPACE = "isrflow"
UNITS = {"Count", "Seconds", "Milliseconds", "Bytes", "Megabytes", "None"}


class Metrics:
    """Collect metrics, then :meth:`flush` them as one EMF line (nothing is printed if empty)."""

    def __init__(self, namespace: str | None = None, service: str | None = None, stream: TextIO | None = None,
                 clock=time.time):
        self.namespace = namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE
        self.service = service or os.environ.get("POWERTOOLS_SERVICE_NAME") or "isrflow"
        self.stream = stream
        self.clock = clock
        self._values: dict[str, float] = {}
        self._units: dict[str, str] = {}

    def add(self, name: str, value: float = 1, unit: str = "Count") -> None:
        if unit not in UNITS:
            raise ValueError(f"unknown metric unit {unit!r}")
        self._values[name] = self._values.get(name, 0) + value
        self._units[name] = unit

    def record(self, **properties: Any) -> dict[str, Any]:
        """The EMF object for the collected metrics plus ``properties``."""
        return {
            "_aws": {
                "Timestamp": int(self.clock() * 1000),
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [["service"]],
                    "Metrics": [{"Name": n, "Unit": self._units[n]} for n in sorted(self._values)],
                }],
            },
            "service": self.service,
            **{k: v for k, v in properties.items() if v is not None},
            **self._values,
        }

    def flush(self, **properties: Any) -> dict[str, Any] | None:
        if not self._values:
            return None
        line = self.record(**properties)
        if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").strip().lower() not in ("1", "true", "yes"):
            stream = self.stream or sys.stdout
            stream.write(json.dumps(line, default=str, separators=(",", ":")) + "\n")
            stream.flush()
        self._values.clear()
        self._units.clear()
        return line


__all__ = ["DEFAULT_NAMESPACE", "Metrics"]
