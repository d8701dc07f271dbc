"""ProcessVisit's steps as library calls: plan (registry -> manifest), ISR of one cluster,
recording a failed worker, and the summary. The Lambda handlers in ``functions/`` only parse
their event and call these. Importing this package does not import numpy."""
