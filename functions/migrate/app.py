"""Migrate Lambda: the stack's RegistrySchema custom resource.

On Create and Update it creates or upgrades the registry schema to this code's Alembic
revision (:func:`isrflow.registry.migrate.upgrade`) in the configured registry
(``ISRFLOW_REGISTRY_URL`` and/or ``ISRFLOW_REGISTRY_SECRET_ARN``, like every function); on
Delete it does nothing (the registry outlives the stack). It answers CloudFormation itself,
FAILED with the reason on any error (:mod:`isrflow.infra.custom_resource`). The resource's
``Revision`` attribute is the schema revision now in the database.

After the upgrade it sets up the least-privilege login roles the other functions use
(``ISRFLOW_REGISTRY_WRITER_SECRET_ARN``, ``ISRFLOW_REGISTRY_READER_SECRET_ARN``; none when
unset; :mod:`isrflow.registry.roles`). The same function
rotates those roles' secrets: an event with ``SecretId``, ``ClientRequestToken`` and ``Step``
is a Secrets Manager rotation request (:mod:`isrflow.registry.rotation`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from isrflow.infra.custom_resource import CustomResourceRequest, handle_request
from isrflow.infra.edge import lambda_edge
from isrflow.infra.settings import open_registry, registry_roles, settings
from isrflow.registry.migrate import upgrade
from isrflow.registry.roles import ensure_roles
from isrflow.registry.rotation import is_rotation_event, rotate

PHYSICAL_ID = "isrflow-registry-schema"


def migrate(request: CustomResourceRequest) -> dict[str, Any]:
    """Create or upgrade the registry schema; the resource's attributes."""
    registry = open_registry(settings(), create=True)
    revision = upgrade(registry.engine, create=True)
    ensure_roles(registry.engine, registry_roles())
    return {"Revision": revision}


@lambda_edge
def lambda_handler(event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
    if is_rotation_event(event):
        from isrflow.infra.aws_clients import aws_client

        step = rotate(
            event, client=aws_client("secretsmanager"), admin_engine=lambda: open_registry(settings()).engine
        )
        return {"Step": step}
    return handle_request(event, context, migrate, default_physical_id=PHYSICAL_ID)
