"""Lambda throttling, locally: reserved concurrency enforced and throttles injectable.

On AWS a synchronous Invoke beyond a function's reserved concurrency (or the account's
unreserved pool) is refused with HTTP 429 ``TooManyRequestsException``; Step Functions reports
it to the Task as ``Lambda.TooManyRequestsException``, which the state machines retry with
full jitter over tens of minutes. :class:`ConcurrencyGate` does the same for the local
runtime: a function whose template declares ``ReservedConcurrentExecutions: N`` has at most N
invocations in flight (counted from the invoke until its result is back, whether the handler
is running or waiting for a free worker process: on AWS they would all be running); one more
is refused at once. :meth:`ConcurrencyGate.inject` makes the next invocations of a function
throttled regardless, so tests can exercise the retry path deterministically.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

#: The error name Step Functions gives a throttled lambda:invoke.
THROTTLE_ERROR = "Lambda.TooManyRequestsException"


class LambdaThrottled(Exception):
    """An invocation refused as the Lambda service refuses it: ``error`` (the Step Functions
    error name) and ``cause`` (the service's message)."""

    def __init__(self, function: str, reason: str):
        self.function = function
        self.error = THROTTLE_ERROR
        self.cause = json.dumps(
            {
                "errorMessage": f"Rate Exceeded. ({reason}; Service: AWSLambda; Status Code: 429; "
                f"Error Code: TooManyRequestsException)",
                "errorType": "TooManyRequestsException",
                "functionName": function,
            }
        )
        super().__init__(f"{function}: {reason}")


class ConcurrencyGate:
    """In-flight invocations per function, checked against reserved concurrency (thread-safe).

    ``reserved`` maps a function name to its ReservedConcurrentExecutions (None or absent:
    unreserved, never throttled here; 0: every invocation throttled, as AWS does).
    ``throttled`` counts the refusals per function.
    """

    def __init__(self, reserved: Mapping[str, int | None] | None = None):
        self.reserved = {k: v for k, v in (reserved or {}).items() if v is not None}
        self.throttled: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._injected: dict[str, int] = {}
        self._lock = threading.Lock()

    def inject(self, function: str, count: int = 1) -> None:
        """Throttle the next ``count`` invocations of ``function`` (added to any still pending)."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        with self._lock:
            self._injected[function] = self._injected.get(function, 0) + count

    def in_flight(self, function: str) -> int:
        with self._lock:
            return self._in_flight.get(function, 0)

    @contextmanager
    def slot(self, function: str) -> Iterator[None]:
        """Hold one concurrency slot of ``function`` for the duration of an invocation, or raise
        :class:`LambdaThrottled` at once when there is none (or a throttle was injected)."""
        with self._lock:
            reason = None
            if self._injected.get(function, 0) > 0:
                self._injected[function] -= 1
                reason = "throttle injected for a test"
            elif function in self.reserved and self._in_flight.get(function, 0) >= self.reserved[function]:
                reason = f"reserved concurrency {self.reserved[function]} of the function is in use"
            if reason is not None:
                self.throttled[function] = self.throttled.get(function, 0) + 1
                raise LambdaThrottled(function, reason)
            self._in_flight[function] = self._in_flight.get(function, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[function] -= 1
