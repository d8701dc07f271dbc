"""The batch writer: apply many registry messages in ONE transaction.

``apply_batch(registry, items)`` is what the registry-writer Lambda runs for an SQS batch:

1. Validate every item (pydantic, :func:`isrflow.model.messages.parse_message`), then against the
   database's column limits
   (:mod:`isrflow.registry.limits`: integer ranges, NUL characters, string lengths; an ordinary dataset
   message is cleared by the quicker :func:`isrflow.registry.writer_limits.certainly_storable`). Either
   failure makes it *poison*: rejected before the transaction.
2. In one write transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL READ COMMITTED), apply by
   kind in parent-to-child order: instruments, detectors, exposures, datasets, provenance,
   certifications, processing records, execution markers; within a kind sorted by key, so
   concurrent writers take row locks in the same order and cannot deadlock.
3. Rows go in with bulk ``INSERT ... ON CONFLICT`` (DO NOTHING for facts, DO UPDATE for
   ``replace`` datasets, processing records and execution markers): duplicates are no-ops.
   On PostgreSQL each table's rows are one statement with one array parameter per column
   (:mod:`isrflow.registry.copy_pg`; uuid arrays in binary), and the dataset, provenance, record and
   bookkeeping INSERTs are pipelined (:mod:`isrflow.registry.copy_pipeline`: sent without waiting,
   waited for before anything else touches the connection and before the commit); lookups are
   one ``= ANY(array)`` each, the dataset phase's four in one round trip. Datasets the lookups
   found absent, their provenance and their messages' bookkeeping rows go in with plain INSERTs
   (no speculative insertion): if a concurrent writer commits one of them first, the unique
   violation rolls the transaction back and the batch runs again with ``ON CONFLICT`` throughout.
4. Outcomes per item:

   - *applied* (including duplicates that changed nothing);
   - *rejected*: can never apply (malformed, unknown instrument, overlapping validity,
     content conflicting with an existing dataset, wrong collection type). Written to the
     ``rejected_message`` table with its reason and counted as processed: never redelivered;
   - *retry*: a parent (dimension record, input dataset, dataset to certify) is not there yet
     because SQS reordered messages. Nothing of the item is written; it is returned so the
     handler lists it in ``batchItemFailures`` and SQS delivers it again later: after the
     few seconds :meth:`BatchResult.visibility_changes` gives it (the handler applies them
     with ChangeMessageVisibility; see :mod:`isrflow.registry.redelivery`), not after the queue's 900 s
     visibility timeout. After ``give_up_after`` deliveries it is rejected instead, but only
     once it is also ``give_up_min_age_s`` old (when its age is known): a young orphan may be
     waiting for a parent further back in a backlog, and is kept (dead-lettered, then redriven).

5. Certification runs under a lock per CALIBRATION collection (``pg_advisory_xact_lock`` on
   PostgreSQL; the SQLite write lock), re-reading existing validity ranges after taking it,
   so two writers can never certify overlapping ranges.
6. Messages carrying an ``execution_id`` are counted per execution (``applied_message``,
   keyed by message id, so redeliveries count once); ``Registry.wait_applied`` reads that.

A data error the checks did not foresee (the database refuses a value: out of range, NUL,
too long, a constraint) rolls the transaction back; the writer then finds the one item that
causes it by binary search over prefixes of the batch in parent-to-child order, each tried in a
transaction that is rolled back (about log2(n) trials), rejects only that item with the
database's error, and applies the rest (:mod:`.poison`).

Any other database error (outage, lost connection, a bug) propagates: the transaction rolls
back as a whole and the Lambda fails, so SQS redelivers the entire batch. Nothing is
half-written.

Modules, one job each: :mod:`.items` (batch items and results), :mod:`.sql` (bulk statements), :mod:`.batch` (the transaction's state), :mod:`.dimensions`, :mod:`.datasets`,
:mod:`.certify`, :mod:`.records` (one kind of message each), :mod:`.transaction` (the phases in
order, bookkeeping), :mod:`.poison` (bisection), :mod:`.apply` (the entry points).
"""

from __future__ import annotations

from isrflow.registry.writer.apply import apply_batch, apply_messages
from isrflow.registry.writer.batch import PhaseHook
from isrflow.registry.writer.items import BatchItem, BatchResult
from isrflow.registry.writer.poison import is_poison_error

__all__ = ["BatchItem", "BatchResult", "PhaseHook", "apply_batch", "apply_messages", "is_poison_error"]
