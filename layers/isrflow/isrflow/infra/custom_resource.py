"""CloudFormation custom resources backed by a Lambda: run an action, answer the stack.

CloudFormation invokes the function asynchronously with a request (``RequestType`` Create,
Update or Delete) and then waits for a JSON document PUT to the request's pre-signed
``ResponseURL``. :func:`handle_request` runs the action on Create and Update, does nothing
on Delete, and always answers:

- ``SUCCESS`` with the action's data (``Fn::GetAtt`` attributes of the resource);
- ``FAILED`` with ``ErrorClass: message`` as the reason when the action raises anything,
  and also when it is still running shortly before the Lambda's own timeout (the action
  keeps running in its thread, but the stack is answered instead of waiting for the
  custom resource's ServiceTimeout).

A reply that cannot be delivered raises :class:`CustomResourceReplyError`, so Lambda's
asynchronous retries send it again. The whole response document is capped at 4096 bytes
(CloudFormation's limit); the reason is shortened to fit.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from isrflow.model.errors import ConfigError, IsrflowError

logger = logging.getLogger("isrflow.infra.custom_resource")

SUCCESS = "SUCCESS"
FAILED = "FAILED"
#: CloudFormation rejects larger response documents (bytes).
MAX_RESPONSE_BYTES = 4096
#: Seconds kept in hand before the Lambda timeout to answer FAILED for an action still running.
REPLY_MARGIN_S = 20.0
#: Seconds one reply PUT may take.
REPLY_TIMEOUT_S = 30.0

Action = Callable[["CustomResourceRequest"], dict[str, Any] | None]
Put = Callable[[str, bytes, float], int]


class CustomResourceReplyError(IsrflowError):
    """The response document could not be delivered to the request's ResponseURL."""


class CustomResourceRequest(BaseModel):
    """The request CloudFormation sends to a custom resource's Lambda (the fields used here)."""

    model_config = ConfigDict(extra="allow")

    RequestType: Literal["Create", "Update", "Delete"]
    ResponseURL: str
    StackId: str
    RequestId: str
    LogicalResourceId: str
    ResourceType: str = "AWS::CloudFormation::CustomResource"
    ServiceToken: str | None = None
    PhysicalResourceId: str | None = None
    ResourceProperties: dict[str, Any] = {}
    OldResourceProperties: dict[str, Any] | None = None


def http_put(url: str, body: bytes, timeout_s: float) -> int:
    """PUT ``body`` to a pre-signed URL; returns the HTTP status.

    The URL is signed without a content type, so the request sends an empty one.
    """
    request = urllib.request.Request(
        url, data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return int(response.status)


def response_document(
    request: CustomResourceRequest,
    status: str,
    reason: str,
    physical_id: str,
    data: dict[str, Any] | None = None,
) -> bytes:
    """The JSON answer to ``request``, its reason shortened so the document fits 4096 bytes."""
    doc: dict[str, Any] = {
        "Status": status,
        "Reason": reason,
        "PhysicalResourceId": physical_id,
        "StackId": request.StackId,
        "RequestId": request.RequestId,
        "LogicalResourceId": request.LogicalResourceId,
        "NoEcho": False,
        "Data": data or {},
    }
    body = json.dumps(doc).encode()
    if len(body) > MAX_RESPONSE_BYTES:
        excess = len(body) - MAX_RESPONSE_BYTES
        doc["Reason"] = reason[: max(0, len(reason) - excess - 16)] + " [truncated]"
        body = json.dumps(doc).encode()
    return body


def send_reply(
    request: CustomResourceRequest,
    status: str,
    reason: str,
    physical_id: str,
    data: dict[str, Any] | None = None,
    *,
    put: Put = http_put,
) -> None:
    """Deliver the answer; CustomResourceReplyError if the URL refuses it or cannot be reached."""
    body = response_document(request, status, reason, physical_id, data)
    try:
        code = put(request.ResponseURL, body, REPLY_TIMEOUT_S)
    except Exception as exc:
        raise CustomResourceReplyError(
            f"cannot deliver the {status} reply of {request.LogicalResourceId}: {type(exc).__name__}: {exc}"
        ) from exc
    if not 200 <= code < 300:
        raise CustomResourceReplyError(f"the {status} reply of {request.LogicalResourceId} got HTTP {code}")


def _budget_s(context: Any) -> float | None:
    """Seconds the action may run: the Lambda's remaining time less the reply margin (None: no limit)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return max(0.0, remaining() / 1000.0 - REPLY_MARGIN_S)


def _partial_request(event: Any, error: Exception) -> CustomResourceRequest:
    """What can be answered of an invalid request; ConfigError if it has no ResponseURL."""
    url = event.get("ResponseURL") if isinstance(event, dict) else None
    physical_id = event.get("PhysicalResourceId") if isinstance(event, dict) else None
    if not isinstance(url, str) or not url:
        raise ConfigError(f"not a CloudFormation custom resource request (no ResponseURL): {error}") from None
    return CustomResourceRequest.model_construct(
        RequestType="Create",
        ResponseURL=url,
        StackId=str(event.get("StackId", "")),
        RequestId=str(event.get("RequestId", "")),
        LogicalResourceId=str(event.get("LogicalResourceId", "")),
        PhysicalResourceId=physical_id if isinstance(physical_id, str) else None,
    )


def handle_request(
    event: dict[str, Any],
    context: Any,
    action: Action,
    *,
    default_physical_id: str,
    put: Put = http_put,
) -> dict[str, Any]:
    """Answer one custom-resource request; returns the document sent (without transport details).

    ``action`` runs on Create and Update and returns the resource's attributes (or None).
    The physical id is the request's own on Update and Delete (so an update never replaces
    the resource), ``default_physical_id`` on Create.
    """
    try:
        request = CustomResourceRequest.model_validate(event)
    except ValueError as exc:  # pydantic ValidationError: answer FAILED if there is anywhere to answer
        request = _partial_request(event, exc)
        reason = f"invalid custom resource request: {exc}"
        send_reply(request, FAILED, reason, request.PhysicalResourceId or default_physical_id, put=put)
        return {
            "Status": FAILED,
            "Reason": reason,
            "PhysicalResourceId": request.PhysicalResourceId or default_physical_id,
            "Data": {},
        }
    physical_id = request.PhysicalResourceId or default_physical_id
    status, reason, data = SUCCESS, "", None
    if request.RequestType == "Delete":
        reason = "nothing to delete"
    else:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="custom-resource")
        future = pool.submit(action, request)
        try:
            data = future.result(timeout=_budget_s(context))
            reason = f"{request.RequestType} done"
        except FutureTimeout:
            status, reason = (
                FAILED,
                (
                    f"{request.RequestType} still running {REPLY_MARGIN_S:g} s before the function's timeout; "
                    "see the function's logs"
                ),
            )
        except Exception as exc:
            status, reason = FAILED, f"{type(exc).__name__}: {exc}"
        finally:
            pool.shutdown(wait=False)
    logger.info(
        json.dumps(
            {
                "message": "custom resource reply",
                "request_type": request.RequestType,
                "logical_id": request.LogicalResourceId,
                "status": status,
                "reason": reason[:500],
            }
        )
    )
    send_reply(request, status, reason, physical_id, data, put=put)
    return {"Status": status, "Reason": reason, "PhysicalResourceId": physical_id, "Data": data or {}}
