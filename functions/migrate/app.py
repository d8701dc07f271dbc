"""Migrate Lambda: the stack's RegistrySchema custom resource.

On Create and Update it creates or upgrades the registry schema to this code's Alembic
revision (:func:`isrflow.registry.migrate.upgrade`) in the configured registry
(``ISRFLOW_REGISTRY_URL`` and/or ``ISRFLOW_REGISTRY_SECRET_ARN``, like every function); on
Delete it does nothing (the registry outlives the stack). It answers CloudFormation itself,
FAILED with the reason on any error (:mod:`isrflow.custom_resource`). The resource's
``Revision`` attribute is the schema revision now in the database.
"""

from __future__ import annotations

from typing import Any

from isrflow.custom_resource import CustomResourceRequest, handle_request
from isrflow.registry.migrate import upgrade
from isrflow.settings import open_registry, settings

PHYSICAL_ID = "isrflow-registry-schema"


def migrate(request: CustomResourceRequest) -> dict[str, Any]:
    """Create or upgrade the registry schema; the resource's attributes."""
    registry = open_registry(settings(), create=True)
    return {"Revision": upgrade(registry.engine, create=True)}


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return handle_request(event, context, migrate, default_physical_id=PHYSICAL_ID)
