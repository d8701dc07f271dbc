"""Rotation of a registry role's secret (Secrets Manager's four-step rotation protocol).

Secrets Manager invokes the rotation function with ``{"SecretId", "ClientRequestToken",
"Step"}`` four times; each step is idempotent (it may be retried):

1. ``createSecret``: a new password (GetRandomPassword, no punctuation) stored as the token's
   version with the ``AWSPENDING`` stage, unless that version already holds one;
2. ``setSecret``: the role gets the pending password, through the migrating (master)
   connection, as a SCRAM verifier (:func:`isrflow.registry.roles.ensure_roles`, which also
   creates the role if it is missing);
3. ``testSecret``: one connection as the role with the pending password (``SELECT 1``);
4. ``finishSecret``: ``AWSCURRENT`` moves to the token's version.

Between steps 2 and 4 new connections that still hold the old password are refused; the
functions re-read the secret on such a refusal and retry (:mod:`isrflow.infra.settings`), and the
state machines retry RegistryUnavailableError, so a rotation costs at most a retry.

The role secret holds ``username``, ``password`` and ``access`` (``writer`` or ``reader``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from isrflow.model.errors import ConfigError, RegistryError
from isrflow.registry.engine import create_registry_engine
from isrflow.registry.roles import ensure_roles, role_from_secret

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
PENDING, CURRENT = "AWSPENDING", "AWSCURRENT"
#: Length of a generated password (characters).
PASSWORD_LENGTH = 40


class RotationError(RegistryError):
    """A rotation step cannot be carried out (the message names the secret and the step)."""


def is_rotation_event(event: Any) -> bool:
    """Whether a Lambda event is a Secrets Manager rotation request."""
    return isinstance(event, dict) and {"SecretId", "ClientRequestToken", "Step"} <= set(event)


def _value(client: Any, arn: str, **version: str) -> dict[str, Any]:
    text = client.get_secret_value(SecretId=arn, **version)["SecretString"]
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigError(f"secret {arn} does not hold JSON") from None
    if not isinstance(value, dict):
        raise ConfigError(f"secret {arn} holds JSON {type(value).__name__}, not an object")
    return value


def _pending(client: Any, arn: str, token: str) -> dict[str, Any] | None:
    try:
        return _value(client, arn, VersionId=token, VersionStage=PENDING)
    except client.exceptions.ResourceNotFoundException:
        return None


def rotate(event: dict[str, Any], *, client: Any, admin_engine: Callable[[], Engine]) -> str:
    """Carry out one rotation step; returns the step's name. ``admin_engine`` gives an engine on the
    registry as the migrating (master) user, used by ``setSecret`` and (for its URL) ``testSecret``."""
    arn, token, step = event["SecretId"], event["ClientRequestToken"], event["Step"]
    if step not in STEPS:
        raise RotationError(f"secret {arn}: unknown rotation step {step!r} (expected one of {STEPS})")
    stages = client.describe_secret(SecretId=arn).get("VersionIdsToStages", {})
    if CURRENT in stages.get(token, []) and step != "finishSecret":
        return step  # this version is already the current one: a retried, finished rotation
    if step == "createSecret":
        if _pending(client, arn, token) is None:
            current = _value(client, arn, VersionStage=CURRENT)
            password = client.get_random_password(PasswordLength=PASSWORD_LENGTH, ExcludePunctuation=True)[
                "RandomPassword"
            ]
            client.put_secret_value(
                SecretId=arn,
                ClientRequestToken=token,
                VersionStages=[PENDING],
                SecretString=json.dumps({**current, "password": password}),
            )
        return step
    if step == "finishSecret":
        current_version = next((v for v, st in stages.items() if CURRENT in st), None)
        if current_version != token:
            client.update_secret_version_stage(
                SecretId=arn, VersionStage=CURRENT, MoveToVersionId=token, RemoveFromVersionId=current_version
            )
        return step
    pending = _pending(client, arn, token)
    if pending is None:
        raise RotationError(
            f"secret {arn}: no {PENDING} version {token} to {step} (createSecret did not run?)"
        )
    role = role_from_secret(pending, arn)
    engine = admin_engine()
    if step == "setSecret":
        ensure_roles(engine, [role])
        return step
    test_url = engine.url.set(username=role.name, password=role.password)
    probe = create_registry_engine(test_url, pool_size=1)
    try:
        with probe.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        raise RotationError(
            f"secret {arn}: role {role.name} cannot connect with the pending password: "
            f"{str(exc.orig or exc).splitlines()[0]}"
        ) from None
    finally:
        probe.dispose()
    return step


__all__ = ["PASSWORD_LENGTH", "STEPS", "RotationError", "is_rotation_event", "rotate"]
