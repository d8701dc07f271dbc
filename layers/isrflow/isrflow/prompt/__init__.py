"""Prompt processing: an upload under ``raw/`` in the data bucket -> registered raw -> ProcessVisit.

- :mod:`.headers` raw headers -> observations, from header cards alone (no astropy);
- :mod:`.config` the stack parameters that shape the ProcessVisit input (environment);
- :mod:`.starter` starting ProcessVisit idempotently (execution name = hash of bucket/key/ETag);
- :mod:`.ingest` the ingest function's logic (headers by ranged reads, registry messages,
  quarantine, metrics, start);
- :mod:`.watch` the local stand-in for the S3 -> EventBridge trigger (``isrflow ingest --watch``).

Nothing here imports numpy or astropy: the ingest function runs on the registry-only layer.
"""
