"""References a template makes to resources (``Ref``, ``GetAtt``, ``ImportValue``) and their local placeholder values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from isrflow.local.sam_template.constants import (
    CFN_STATE_MACHINE,
    LOCAL_ACCOUNT,
    LOCAL_PARTITION,
    LOCAL_REGION,
    S3_BUCKET,
    SAM_FUNCTION,
    SAM_LAYER,
    SAM_STATE_MACHINE,
    SQS_QUEUE,
)

ReferenceKind = Literal["Ref", "GetAtt", "ImportValue"]


@dataclass(frozen=True)
class Reference:
    """One reference the template makes to something only a deployment would know.

    ``kind`` is ``"Ref"`` (``attribute`` is None), ``"GetAtt"`` or ``"ImportValue"`` (then
    ``logical_id`` is the export name). ``where`` is the dotted location of the value being
    evaluated, e.g. ``Resources.PlanFunction.Properties.Environment.Variables.ISRFLOW_DATASTORE_ROOT``
    or ``Resources.ProcessVisitStateMachine.Properties.DefinitionSubstitutions.DataBucketName``.
    """

    kind: ReferenceKind
    logical_id: str
    attribute: str | None = None
    resource_type: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    where: str = ""
    stack_name: str = "isrflow"


@dataclass(frozen=True)
class Whole:
    """A resolver's answer that replaces the whole string (``Fn::Sub`` / ``Fn::Join``) it is in."""

    value: Any


Resolver = Callable[[Reference], Any]


def arn(service: str, resource: str, region: str = LOCAL_REGION, account: str = LOCAL_ACCOUNT) -> str:
    return f"arn:{LOCAL_PARTITION}:{service}:{region}:{account}:{resource}"


def default_resolver(ref: Reference) -> Any:
    """Local placeholder values for references to resources, by resource type.

    Functions: ``Ref`` -> the logical id (the local function name), ``Arn`` ->
    ``arn:aws:lambda:local:000000000000:function:<id>``. Queues: ``Ref``/``QueueUrl``/
    ``QueueName`` -> the logical id (the local queue name), ``Arn`` -> a local SQS ARN.
    Buckets: ``Ref`` -> the logical id in lower case. State machines: ``Ref``/``Arn`` -> a local
    ``stateMachine`` ARN. RDS: ``Endpoint.Address`` -> ``localhost``, ``Endpoint.Port`` -> ``5432``.
    Secrets: ``Ref`` -> a local ``secretsmanager`` ARN.
    ``!ImportValue name`` -> ``name``. Anything else: ``Ref`` -> the logical id, ``GetAtt`` ->
    ``<id>.<attribute>``.
    """
    lid, attr, rtype = ref.logical_id, ref.attribute, ref.resource_type or ""
    if ref.kind == "ImportValue":
        return lid
    if rtype in (SAM_FUNCTION, "AWS::Lambda::Function"):
        return lid if attr is None else arn("lambda", f"function:{lid}") if attr == "Arn" else f"{lid}.{attr}"
    if rtype in (SAM_LAYER, "AWS::Lambda::LayerVersion"):
        return arn("lambda", f"layer:{lid}:1")
    if rtype == SQS_QUEUE:
        return arn("sqs", lid) if attr == "Arn" else lid
    if rtype == S3_BUCKET:
        name = lid.lower()
        if attr is None or attr == "BucketName":
            return name
        if attr == "Arn":
            return f"arn:{LOCAL_PARTITION}:s3:::{name}"
        return f"{name}.s3.{LOCAL_REGION}.localhost"
    if rtype in (SAM_STATE_MACHINE, CFN_STATE_MACHINE):
        name = lid
        if attr == "Name":
            return name
        return arn("states", f"stateMachine:{name}")
    if rtype == "AWS::RDS::DBInstance":
        return {
            "Endpoint.Address": "localhost",
            "Endpoint.Port": "5432",
            "MasterUserSecret.SecretArn": arn("secretsmanager", f"secret:{lid}"),
        }.get(attr or "", lid if attr is None else f"{lid}.{attr}")
    if rtype == "AWS::Logs::LogGroup":
        return arn("logs", f"log-group:{lid}") if attr == "Arn" else lid
    if rtype == "AWS::SecretsManager::Secret" and attr is None:
        return arn("secretsmanager", f"secret:{lid}")
    if rtype == "AWS::IAM::Role":
        return f"arn:{LOCAL_PARTITION}:iam::{LOCAL_ACCOUNT}:role/{lid}" if attr == "Arn" else lid
    return lid if attr is None else f"{lid}.{attr}"
