"""The registry-writer Lambda: drains the registry SQS queue in batches (see app.py)."""
