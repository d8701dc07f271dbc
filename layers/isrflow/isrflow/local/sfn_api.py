"""The Step Functions API over HTTP for the local runtime (``isrflow local serve``).

AWS JSON 1.0, as the AWS CLI and the SDKs speak it: ``POST /`` with
``X-Amz-Target: AWSStepFunctions.<Action>`` and ``Content-Type: application/x-amz-json-1.0``, a
JSON request body, a JSON answer; timestamps are epoch seconds; an error is HTTP 400 with
``{"__type": "<ErrorCode>", "message": "..."}``. The server listens on 127.0.0.1 only, and
since any web page the user opens can also send requests to 127.0.0.1, every request is checked
before it is read:

- the ``Host`` header must name this machine (``127.0.0.1`` or ``localhost``, any port), else
  HTTP 403: a page that reaches the port through DNS rebinding sends its own host name;
- a body larger than ``max_body_bytes`` (default 1 MiB, four times Step Functions' 256 KiB
  input limit) is refused with HTTP 413 unread, and the connection closed;
- with a ``token`` (``isrflow local serve --token`` or ``ISRFLOW_LOCAL_TOKEN``), the request
  must carry it, either as ``X-Isrflow-Token: <token>`` or as the access key id of its SigV4
  ``Authorization`` header, so ``AWS_ACCESS_KEY_ID=<token> aws --endpoint-url ...`` works; the
  signature itself is not checked (HTTP 403 otherwise). Without a token any dummy credentials do.

Actions: ListStateMachines, DescribeStateMachine, StartExecution, DescribeExecution,
ListExecutions, GetExecutionHistory, StopExecution, and ListMapRuns / DescribeMapRun (so tools
can reach Distributed Map children). The state machines are the template's, run by the
:class:`~isrflow.local.runtime.LocalRuntime`; executions that ended in an earlier process are
answered from their records (:mod:`.records`).

StartExecution follows AWS's idempotency rule: the same name with the same input while the
first execution runs returns that execution; otherwise an existing name is
``ExecutionAlreadyExists``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from isrflow.local.asl import ExecutionAlreadyExists, ExecutionDoesNotExist
from isrflow.local.records import list_records, load_record

TARGET_PREFIX = "AWSStepFunctions."
CONTENT_TYPE = "application/x-amz-json-1.0"
HOST = "127.0.0.1"
#: Host names a request may address (DNS rebinding sends the attacker's own name).
ALLOWED_HOSTS = frozenset({"127.0.0.1", "localhost"})
#: Default cap of a request body (bytes).
MAX_BODY_BYTES = 1024 * 1024
#: Header that may carry the server's token.
TOKEN_HEADER = "X-Isrflow-Token"
_HOST_HEADER = re.compile(r"^(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?$")
_SIGV4_KEY_ID = re.compile(r"Credential=(?P<key>[^/,\s]+)/")
_NAME_OK = re.compile(r"^[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]{1,80}$")


class ApiError(Exception):
    """An error answer: HTTP 400 with ``__type`` = ``code``."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _epoch(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    return value


def _wire(value: Any) -> Any:
    """JSON-ready: datetimes as epoch seconds, recursively; ISO ``timestamp``/``*Date`` strings too."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(v, str) and (k == "timestamp" or k.endswith("Date")):
                with contextlib.suppress(ValueError):
                    v = datetime.fromisoformat(v.replace("Z", "+00:00"))
            out[k] = _wire(v)
        return out
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return _epoch(value)


def _page(items: list, body: dict, key: str) -> dict:
    try:
        start = int(body.get("nextToken") or 0)
    except ValueError:
        raise ApiError("InvalidToken", f"invalid nextToken {body.get('nextToken')!r}") from None
    size = int(body.get("maxResults") or 0) or 1000
    out: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        out["nextToken"] = str(start + size)
    return out


class StepFunctionsApi:
    """The actions, over a LocalRuntime (``handle(action, body) -> answer``; ApiError otherwise)."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.created = datetime.now(UTC)
        self._start_lock = threading.Lock()

    def handle(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        method = getattr(self, "_" + re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower(), None)
        if method is None or action not in ACTIONS:
            raise ApiError("UnknownOperationException", f"unknown or unsupported action {action!r}")
        return _wire(method(body))

    # -- state machines
    def _machine(self, arn: str | None):
        if not arn:
            raise ApiError("InvalidArn", "stateMachineArn is required")
        for sm in self.runtime.app.state_machines.values():
            if arn == sm.arn:
                return sm
        raise ApiError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")

    def _list_state_machines(self, body: dict) -> dict:
        items = [
            {"stateMachineArn": sm.arn, "name": sm.name, "type": sm.type, "creationDate": self.created}
            for sm in sorted(self.runtime.app.state_machines.values(), key=lambda s: s.name)
        ]
        return _page(items, body, "stateMachines")

    def _describe_state_machine(self, body: dict) -> dict:
        sm = self._machine(body.get("stateMachineArn"))
        return {
            "stateMachineArn": sm.arn,
            "name": sm.name,
            "status": "ACTIVE",
            "definition": sm.definition_text(),
            "roleArn": self.runtime.interpreter.role_arn,
            "type": sm.type,
            "creationDate": self.created,
            "loggingConfiguration": {"level": "OFF", "includeExecutionData": False},
        }

    # -- executions
    def _find(self, arn: str | None):
        """(live Execution or None, ExecutionRecord or None) for an execution ARN."""
        if not arn:
            raise ApiError("InvalidArn", "executionArn is required")
        try:
            return self.runtime.interpreter.get_execution(arn), None
        except ExecutionDoesNotExist:
            pass
        try:
            return None, load_record(self.runtime.repo, arn)
        except Exception:
            raise ApiError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'") from None

    def _start_execution(self, body: dict) -> dict:
        sm = self._machine(body.get("stateMachineArn"))
        name = body.get("name") or str(uuid.uuid4())
        if not _NAME_OK.match(name):
            raise ApiError("InvalidName", f"invalid execution name {name!r}")
        text = body.get("input") or "{}"
        try:
            payload = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ApiError("InvalidExecutionInput", f"input is not JSON: {exc}") from None
        arn = sm.arn.replace(":stateMachine:", ":execution:", 1) + ":" + name
        with self._start_lock:
            try:
                live = self.runtime.interpreter.get_execution(arn)
            except ExecutionDoesNotExist:
                live = None
            if live is not None and live.status == "RUNNING" and live.input == payload:
                return {
                    "executionArn": arn,
                    "startDate": live.start_date,
                }  # AWS: same name+input while running
            try:
                execution = self.runtime.run(sm.arn, payload, name=name, wait=False)
            except ExecutionAlreadyExists as exc:
                raise ApiError("ExecutionAlreadyExists", str(exc)) from None
            except ValueError as exc:
                raise ApiError("InvalidExecutionInput", str(exc)) from None
        return {"executionArn": execution.execution_arn, "startDate": execution.start_date}

    def _describe_execution(self, body: dict) -> dict:
        live, record = self._find(body.get("executionArn"))
        return live.describe() if live is not None else record.describe()

    def _list_executions(self, body: dict) -> dict:
        status = body.get("statusFilter")
        if body.get("mapRunArn"):
            executions = self.runtime.interpreter.list_executions(
                map_run_arn=body["mapRunArn"], status=status
            )
            items = [self._summary(e.describe()) for e in executions]
        else:
            sm = self._machine(body.get("stateMachineArn"))
            seen: dict[str, dict] = {}
            for record in list_records(self.runtime.repo, sm.name):
                if record.state_machine_arn == sm.arn:
                    seen[record.execution_arn] = self._summary(record.describe())
            for e in self.runtime.interpreter.list_executions(state_machine_arn=sm.arn):
                seen[e.execution_arn] = self._summary(e.describe())
            items = [i for i in seen.values() if status is None or i["status"] == status]
        items.sort(key=lambda i: _epoch(i["startDate"]), reverse=True)  # newest first, as AWS lists them
        return _page(items, body, "executions")

    @staticmethod
    def _summary(d: dict) -> dict:
        keys = ("executionArn", "stateMachineArn", "name", "status", "startDate", "stopDate", "mapRunArn")
        return {k: d[k] for k in keys if k in d}

    def _get_execution_history(self, body: dict) -> dict:
        live, record = self._find(body.get("executionArn"))
        events = live.history if live is not None else list(record.history)
        if body.get("reverseOrder"):
            events = list(reversed(events))
        if body.get("includeExecutionData") is False:
            events = [
                {
                    k: (
                        {kk: vv for kk, vv in v.items() if kk not in ("input", "output")}
                        if isinstance(v, dict)
                        else v
                    )
                    for k, v in e.items()
                }
                for e in events
            ]
        return _page(events, body, "events")

    def _stop_execution(self, body: dict) -> dict:
        live, record = self._find(body.get("executionArn"))
        if live is None:
            return {"stopDate": record.stop_date or datetime.now(UTC)}
        live.stop(body.get("error"), body.get("cause"))
        live.wait(30)
        return {"stopDate": live.stop_date or datetime.now(UTC)}

    # -- Distributed Map runs
    def _list_map_runs(self, body: dict) -> dict:
        live, _ = self._find(body.get("executionArn"))
        runs = live.map_runs if live is not None else []
        items = [
            {
                "executionArn": r.execution_arn,
                "mapRunArn": r.map_run_arn,
                "stateMachineArn": live.state_machine_arn,
                "startDate": r.start_date,
                **({"stopDate": r.stop_date} if r.stop_ts else {}),
            }
            for r in runs
        ]
        return _page(items, body, "mapRuns")

    def _describe_map_run(self, body: dict) -> dict:
        try:
            return self.runtime.interpreter.describe_map_run(body.get("mapRunArn") or "")
        except KeyError:
            raise ApiError("ResourceNotFound", f"Map Run Does Not Exist: '{body.get('mapRunArn')}'") from None


ACTIONS = frozenset(
    {
        "ListStateMachines",
        "DescribeStateMachine",
        "StartExecution",
        "DescribeExecution",
        "ListExecutions",
        "GetExecutionHistory",
        "StopExecution",
        "ListMapRuns",
        "DescribeMapRun",
    }
)


class _Handler(BaseHTTPRequestHandler):
    server_version = "isrflow-local-stepfunctions"
    protocol_version = "HTTP/1.1"
    server: LocalStepFunctionsServer

    def log_message(self, format: str, *args: Any) -> None:
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def _send(self, status: int, payload: dict, *, close: bool = False) -> None:
        data = json.dumps(payload, separators=(",", ":"), default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, status: int, code: str, message: str, *, close: bool = False) -> None:
        if close:  # the body was not read: this connection cannot carry another request
            self.close_connection = True
        self._send(status, {"__type": code, "message": message}, close=close)

    def _admitted(self, *, with_body: bool) -> int | None:
        """The body length of an acceptable request; None once a refusal has been sent."""
        match = _HOST_HEADER.match(self.headers.get("Host", "").strip())
        if match is None or match.group("host").lower() not in ALLOWED_HOSTS:
            self._refuse(
                403, "AccessDeniedException", "Host header must be 127.0.0.1 or localhost", close=with_body
            )
            return None
        token = self.server.token
        if token and not _carries_token(self.headers, token):
            self._refuse(
                403,
                "AccessDeniedException",
                f"missing or wrong token ({TOKEN_HEADER} header or "
                "the access key id of the request's credentials)",
                close=with_body,
            )
            return None
        if not with_body:
            return 0
        if self.headers.get("Transfer-Encoding"):
            self._refuse(411, "SerializationException", "a Content-Length is required", close=True)
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._refuse(400, "SerializationException", "invalid Content-Length", close=True)
            return None
        if length > self.server.max_body_bytes:
            self._refuse(
                413,
                "RequestEntityTooLargeException",
                f"request body of {length} bytes exceeds {self.server.max_body_bytes}",
                close=True,
            )
            return None
        return length

    def do_POST(self) -> None:
        length = self._admitted(with_body=True)
        if length is None:
            return
        raw = self.rfile.read(length) if length else b""
        target = self.headers.get("X-Amz-Target", "")
        try:
            if not target.startswith(TARGET_PREFIX):
                raise ApiError("UnknownOperationException", f"missing or foreign X-Amz-Target {target!r}")
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise ApiError("SerializationException", "the request body is not JSON") from None
            answer = self.server.api.handle(
                target[len(TARGET_PREFIX) :], body if isinstance(body, dict) else {}
            )
            self._send(200, answer)
        except ApiError as exc:
            self._send(exc.status, {"__type": exc.code, "message": exc.message})
        except Exception as exc:
            self._send(500, {"__type": "InternalFailure", "message": f"{type(exc).__name__}: {exc}"})

    def do_GET(self) -> None:
        if self._admitted(with_body=False) is None:
            return
        self._send(400, {"__type": "UnknownOperationException", "message": "use POST / with X-Amz-Target"})


def _carries_token(headers: Any, token: str) -> bool:
    """Whether the request carries ``token``: the token header, or the SigV4 access key id."""
    given = headers.get(TOKEN_HEADER)
    if given is None:
        match = _SIGV4_KEY_ID.search(headers.get("Authorization", ""))
        given = match.group("key") if match else ""
    return hmac.compare_digest(given.encode(), token.encode())


class LocalStepFunctionsServer(ThreadingHTTPServer):
    """The API on 127.0.0.1:``port`` (0 = any free port); ``token``: required of every request
    (None = none); ``max_body_bytes``: the largest request body accepted (bytes)."""

    daemon_threads = True

    def __init__(
        self,
        runtime,
        port: int = 0,
        verbose: bool = False,
        *,
        token: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ):
        super().__init__((HOST, port), _Handler)
        self.api = StepFunctionsApi(runtime)
        self.verbose = verbose
        self.token = token or None
        self.max_body_bytes = max_body_bytes
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> LocalStepFunctionsServer:
        """Serve from a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="sfn-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(10)


__all__ = [
    "ACTIONS",
    "ALLOWED_HOSTS",
    "MAX_BODY_BYTES",
    "TOKEN_HEADER",
    "ApiError",
    "LocalStepFunctionsServer",
    "StepFunctionsApi",
]
