"""boto3 clients for the handlers and the library, with one endpoint override.

On AWS every client goes to the service's own endpoint. ``ISRFLOW_AWS_ENDPOINT_URL`` (declared
empty in template.yaml's Globals, so ``sam local`` can set it through ``--env-vars``) sends every
client to one endpoint instead: moto in server mode in the container tests and ``--containers``
runs. botocore's own ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` still apply when it is
empty.
"""

from __future__ import annotations

import os
from typing import Any

ENV_AWS_ENDPOINT_URL = "ISRFLOW_AWS_ENDPOINT_URL"


def endpoint_override() -> str | None:
    """The endpoint every client should use, or None for the services' own."""
    return os.environ.get(ENV_AWS_ENDPOINT_URL) or None


def aws_client(service: str, **kwargs: Any) -> Any:
    """``boto3.client(service)`` honouring :data:`ENV_AWS_ENDPOINT_URL`."""
    import boto3

    endpoint = endpoint_override()
    if endpoint and "endpoint_url" not in kwargs:
        kwargs["endpoint_url"] = endpoint
    return boto3.client(service, **kwargs)
