"""Powertools for AWS Lambda at the function edges: structured logs, EMF metrics, X-Ray traces.

Every ``functions/*/app.py`` handler is wrapped with :func:`lambda_edge`, which for each
invocation

- tags the log lines with the correlation ids found in the event (:func:`correlation_ids`:
  ``execution``, ``exposure``, ``detector``, ``cluster``, ``key``) and, with a real Lambda
  context, the request id and cold start (Powertools' Logger);
- collects the invocation's metrics in Powertools' Metrics and flushes them as one Embedded
  Metric Format line on stdout when the handler returns or raises, in Lambda only (a runtime
  that sets ``AWS_LAMBDA_FUNCTION_NAME``, as Lambda, ``sam local`` and the stand-in do). Namespace
  ``POWERTOOLS_METRICS_NAMESPACE`` (default ``isrflow``), one dimension ``service`` =
  ``POWERTOOLS_SERVICE_NAME``; ``POWERTOOLS_METRICS_DISABLED=true`` silences them;
- runs the handler in an X-Ray subsegment (Powertools' Tracer, annotated with the ids) when the
  function runs in AWS Lambda (``AWS_XRAY_DAEMON_ADDRESS`` set by the service; the template
  turns tracing on) and the X-Ray SDK is installed (the two images; not the registry layer),
  never locally or in tests; ``POWERTOOLS_TRACE_DISABLED=true`` turns it off on AWS too.

The library logs through ordinary ``logging.getLogger("isrflow.<module>")`` loggers with its
fields in ``extra``; they propagate to the ``isrflow`` logger, which Powertools' Logger owns
here, so they come out as the same JSON objects with the same correlation ids. In Lambda the
lines go to stdout at ``POWERTOOLS_LOG_LEVEL`` (template: INFO); elsewhere (the local runtime,
tests, the CLI) to stderr at WARNING, as Python's default handler did before.

Library code adds metrics with :func:`add_count` (a count) or Powertools' ``Metrics`` directly:
its metric set is shared by all instances and flushed by the wrapper.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

ENV_SERVICE = "POWERTOOLS_SERVICE_NAME"
ENV_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
DEFAULT_NAMESPACE = "isrflow"
#: The logger every ``isrflow.*`` library logger propagates to (also Powertools' service default).
ROOT_LOGGER = "isrflow"

Handler = TypeVar("Handler", bound=Callable[..., Any])


def in_lambda() -> bool:
    """True inside an AWS Lambda execution environment (or a runtime that says it is one)."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def service_name() -> str:
    """``POWERTOOLS_SERVICE_NAME`` now (the local runtime sets it per invocation), else ``isrflow``."""
    return os.environ.get(ENV_SERVICE) or ROOT_LOGGER


def _make_logger() -> Logger:
    if in_lambda():
        return Logger(service=ROOT_LOGGER, stream=sys.stdout)
    return Logger(service=ROOT_LOGGER, level=logging.WARNING, stream=sys.stderr)


logger = _make_logger()
_cold_start = True


def metrics() -> Metrics:
    """Powertools' Metrics for the current service and namespace (the metric set is shared)."""
    return Metrics(namespace=os.environ.get(ENV_NAMESPACE) or DEFAULT_NAMESPACE, service=service_name())


def add_count(name: str, value: float = 1, **metadata: Any) -> None:
    """Count ``value`` of metric ``name`` in this invocation's EMF line; ``metadata`` (not
    dimensions, so no cardinality) goes into the same line, searchable with Logs Insights."""
    metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)
    add_metadata(**metadata)


def add_metadata(**properties: Any) -> None:
    """Properties (None skipped) of this invocation's EMF line: searchable, not dimensions."""
    target = metrics()
    for key, item in properties.items():
        if item is not None:
            target.add_metadata(key=key, value=item)


def _first(values: list[Any]) -> Any:
    """The one distinct value of a list, the sorted list when several, None when empty."""
    distinct = sorted(set(values), key=str)
    return distinct[0] if len(distinct) == 1 else (distinct or None)


def correlation_ids(event: Any) -> dict[str, Any]:
    """The ids that tie an invocation's log lines together, from the raw event (never raises).

    ``execution`` (the state-machine execution id), ``cluster``, ``exposure`` and ``detector``
    (a value, or a list when the event covers several), ``key`` (an uploaded object's key)."""
    if not isinstance(event, Mapping):
        return {}
    ids: dict[str, Any] = {}
    plan = event.get("plan")
    if not isinstance(plan, Mapping):
        plan = {}
    execution = event.get("execution_id") or plan.get("execution_id")
    if isinstance(execution, str):
        ids["execution"] = execution
    cluster = event.get("cluster")
    if isinstance(cluster, Mapping):
        ids["cluster"] = cluster.get("cluster_id")
        quanta = [q for q in cluster.get("quanta") or [] if isinstance(q, Mapping)]
        ids["exposure"] = _first([q.get("exposure") for q in quanta if q.get("exposure") is not None])
        ids["detector"] = _first([q.get("detector") for q in quanta if q.get("detector") is not None])
    detail = event.get("detail")
    if isinstance(detail, Mapping) and isinstance(detail.get("object"), Mapping):
        ids["key"] = detail["object"].get("key")
    if isinstance(event.get("key"), str):
        ids["master"] = event["key"]
    return {k: v for k, v in ids.items() if v is not None}


def _context_keys(context: Any) -> dict[str, Any]:
    request_id = getattr(context, "aws_request_id", None)
    if not request_id:
        return {}
    return {"function_name": getattr(context, "function_name", None), "function_request_id": request_id}


def _tracing_on() -> bool:
    flag = os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower()
    daemon = bool(os.environ.get("AWS_XRAY_DAEMON_ADDRESS"))
    return in_lambda() and daemon and flag not in ("1", "true", "yes") and _xray_sdk_installed()


@functools.cache
def _xray_sdk_installed() -> bool:
    """The images ship aws-xray-sdk; the registry layer does not (it would bring a second botocore)."""
    return importlib.util.find_spec("aws_xray_sdk") is not None


@functools.cache
def _tracer():
    from aws_lambda_powertools import Tracer  # imports the X-Ray SDK: only where traces are sent

    return Tracer(service=service_name())


def _traced(handler: Handler, keys: dict[str, Any]) -> Handler:
    """``handler`` in Powertools' ``## <handler>`` subsegment, annotated with the correlation ids."""
    tracer = _tracer()

    @tracer.capture_lambda_handler
    @functools.wraps(handler)
    def traced(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
        for name in ("service", "execution", "exposure", "detector"):
            if isinstance(keys.get(name), (str, int)):
                tracer.put_annotation(key=name, value=keys[name])
        return handler(event, context, *args, **kwargs)

    return traced


def _flush() -> None:
    """Write the invocation's metric set as one EMF line on stdout (Powertools' serialisation) in
    Lambda, where CloudWatch Logs extracts it; elsewhere (local runtime, CLI, tests) nothing is
    written, so a local run's output stays the program's own. Then clear the set."""
    target = metrics()
    try:
        if target.metric_set and in_lambda() and not is_metrics_disabled():
            line = json.dumps(target.serialize_metric_set(), separators=(",", ":"), default=str)
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    finally:
        target.clear_metrics()  # also when disabled (Powertools keeps a disabled set) or empty


def lambda_edge(handler: Handler) -> Handler:
    """Wrap a Lambda handler ``(event, context=None)``: correlation ids, metrics flush, tracing.

    The context may be None (tests call handlers with the event alone). An exception is logged
    with its correlation ids and re-raised unchanged (Step Functions reads its class name)."""

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any = None, *args: Any, **kwargs: Any) -> Any:
        global _cold_start
        metrics().clear_metrics()  # whatever code outside a handler counted is not this invocation's
        keys = {
            "service": service_name(),
            **_context_keys(context),
            **correlation_ids(event),
            "cold_start": _cold_start,
        }
        _cold_start = False
        logger.append_keys(**keys)
        try:
            if _tracing_on():
                return _traced(handler, keys)(event, context, *args, **kwargs)
            return handler(event, context, *args, **kwargs)
        except Exception as exc:
            logger.exception("invocation failed", extra={"error": f"{type(exc).__name__}: {exc}"[:2000]})
            raise
        finally:
            _flush()
            logger.remove_keys([k for k in keys if k != "service"])
            logger.append_keys(service=ROOT_LOGGER)

    return wrapper  # type: ignore[return-value]


__all__ = [
    "DEFAULT_NAMESPACE",
    "add_count",
    "add_metadata",
    "correlation_ids",
    "lambda_edge",
    "logger",
    "metrics",
    "service_name",
]
