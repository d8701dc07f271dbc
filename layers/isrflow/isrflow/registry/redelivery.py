"""When a registry message the writer returns for retry comes back: timing and queue addresses.

SQS gives a message returned in ``batchItemFailures`` no special treatment: it stays invisible
until the *queue's* visibility timeout runs out (900 s for the registry queue, which must be
>= 6x the writer's timeout). A child whose parent row is one batch behind would then wait a
quarter of an hour, longer than ProcessVisit's Plan retries for. So the writer shortens the
visibility of every item it returns (ChangeMessageVisibility) to :func:`retry_visibility_s`
of the message's receive count: a few seconds, doubling per delivery, capped.

Budget arithmetic (all in seconds; the state machines' retriers and the Summarize wait loop
are sized from it, and ``tests/static/test_retry_budgets.py`` checks them against it):

- With the writer's give-up count G (``ISRFLOW_REGISTRY_GIVE_UP_AFTER``, 4 in the template; the
  queue's maxReceiveCount, 5, when unset), an item whose parent is late is tried on at most G
  deliveries. Between delivery n and n+1 it is invisible for ``retry_visibility_s(n)``: 4, 8,
  16 s for n = 1, 2, 3 (then 32, 60, 60, ...).
- Each delivery may also wait for the event source's batching window W (5 s) and for one
  writer batch to run, taken as :data:`WRITER_BATCH_NOMINAL_S` (10 s; a 5,000-message batch
  takes well under that on the registry benchmarks).
- :func:`redelivery_span_s` = sum of the G-1 visibilities + G x (W + 10 s) is therefore the
  longest an item can be late and still be applied: 28 + 4 x 15 = 88 s with the template's
  values. Before this change the same item could be 3 x 900 s late.
- Plan retries QuantaNotFoundError (a prompt execution started before its raw was applied)
  for 2 + 4 + 8 + 16 + 30 x 4 = 150 s (IntervalSeconds 2, BackoffRate 2, MaxDelaySeconds 30,
  MaxAttempts 8, no jitter): more than 88 s.
- An item past G deliveries is rejected only when it is also older than the writer's
  ``ISRFLOW_REGISTRY_GIVE_UP_MIN_AGE_S`` (6 h by default); a younger one stays queued (and
  dead-lettered past maxReceiveCount, for ``isrflow registry redrive``): in a shuffled backlog
  its parent may still be on its way. The 88 s above is the span of the common case, which the
  retriers below are sized for, not a point after which rows are dropped.
- Summarize waits :data:`SUMMARIZE_WAIT_S` (300 s) for the writer per attempt and its
  WaitTimeoutError retrier adds 2 more attempts: one attempt alone covers 88 s three times
  over; the rest is for a writer backlog, not for redelivery.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Visibility (s) of an item returned for retry on its first delivery.
RETRY_VISIBILITY_BASE_S = 4
#: Growth of that visibility per further delivery.
RETRY_VISIBILITY_FACTOR = 2
#: Cap (s) of that visibility.
RETRY_VISIBILITY_MAX_S = 60
#: SQS's limits on a VisibilityTimeout (s) and on entries per ChangeMessageVisibilityBatch.
SQS_MAX_VISIBILITY_S = 43_200
SQS_CHANGE_BATCH_ENTRIES = 10
#: A generous bound (s) on how long one writer batch runs, for the budget arithmetic only.
WRITER_BATCH_NOMINAL_S = 10.0
#: How long (s) one Summarize attempt waits for the writer to apply an execution's messages.
SUMMARIZE_WAIT_S = 300.0


def retry_visibility_s(receive_count: int) -> int:
    """Seconds an item returned for retry stays invisible, given how often SQS delivered it
    (``ApproximateReceiveCount``, 1 on the first delivery): 4, 8, 16, 32, 60, 60, ..."""
    n = max(1, int(receive_count))
    if n > 16:  # far past the cap; avoid big powers
        return RETRY_VISIBILITY_MAX_S
    return int(min(RETRY_VISIBILITY_MAX_S, RETRY_VISIBILITY_BASE_S * RETRY_VISIBILITY_FACTOR ** (n - 1)))


def redelivery_span_s(
    deliveries: int, batching_window_s: float, writer_batch_s: float = WRITER_BATCH_NOMINAL_S
) -> float:
    """The longest (s) from an item's first delivery until its ``deliveries``-th delivery has been
    processed, with the writer shortening visibilities as above (see the module docstring)."""
    if deliveries < 1:
        raise ValueError(f"deliveries must be >= 1, got {deliveries}")
    waits = sum(retry_visibility_s(n) for n in range(1, deliveries))
    return float(waits + deliveries * (batching_window_s + writer_batch_s))


def retrier_budget_s(
    interval_s: float, max_attempts: int, backoff_rate: float = 2.0, max_delay_s: float | None = None
) -> float:
    """Total back-off (s) of a Step Functions retrier that uses all its attempts, without jitter
    (with JitterStrategy FULL each wait is uniform in [0, this delay]: the total is an upper bound
    and its mean is half of it)."""
    total = 0.0
    for k in range(max_attempts):
        d = interval_s * backoff_rate**k
        total += d if max_delay_s is None else min(d, max_delay_s)
    return total


# --- queue addresses ----------------------------------------------------------------------------


def queue_name_of(url_or_arn: str) -> str:
    """The queue name in an SQS ARN (``arn:aws:sqs:region:account:name``), an SQS URL
    (``https://sqs.region.amazonaws.com/account/name``) or a local queue URL (``sqlite:///path#name``)."""
    if url_or_arn.startswith("arn:"):
        return url_or_arn.split(":", 5)[-1]
    if url_or_arn.startswith("sqlite://"):
        return url_or_arn.partition("#")[2] or "registry"
    return url_or_arn.rstrip("/").rsplit("/", 1)[-1]


def queue_url_from_arn(arn: str) -> str:
    """``arn:aws:sqs:us-east-1:123456789012:q`` -> ``https://sqs.us-east-1.amazonaws.com/123456789012/q``."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not all(parts[3:]):
        raise ValueError(f"not an SQS queue ARN: {arn!r}")
    partition, region, account, name = parts[1], parts[3], parts[4], parts[5]
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


def resolve_queue_url(event_source_arns: Iterable[str | None], configured_url: str | None) -> str | None:
    """The URL to change visibilities on, for records delivered from ``event_source_arns``.

    The configured URL (``ISRFLOW_REGISTRY_QUEUE_URL``: a VPC endpoint, a local queue) wins when
    it names the same queue as the records (or the records name none); otherwise the URL is
    derived from the records' ARN. ``None`` when neither is known, or the records come from
    more than one queue (an event source mapping reads one queue, so that is a malformed event).
    """
    arns = {a for a in event_source_arns if a}
    if len(arns) > 1:
        return None
    arn = next(iter(arns), None)
    if configured_url and (arn is None or queue_name_of(configured_url) == queue_name_of(arn)):
        return configured_url
    if arn is None:
        return None
    try:
        return queue_url_from_arn(arn)
    except ValueError:
        return None


@dataclass(frozen=True)
class VisibilityChange:
    """One item returned for retry: its SQS message id, receipt handle and new visibility (s)."""

    item_id: str
    receipt: str
    seconds: int
