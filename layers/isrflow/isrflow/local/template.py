"""Read the project's ``template.yaml`` (AWS SAM) for the local runtime.

The local runtime wires itself from the same template that deploys to AWS, so local and cloud
cannot drift: which functions exist, their handlers, memory, timeout and environment, the
queues and their redrive settings, the queue -> function event source mappings with their
batch settings, and the state machines with their ``DefinitionSubstitutions``.

Two layers:

- :func:`load_template` parses YAML (or JSON) with the CloudFormation short tags (``!Ref``,
  ``!GetAtt``, ``!Sub``, ``!If``, ``!Equals``, ``!Select``, ``!Join``, ``!Split``, ``!GetAZs``,
  ``!Not``, ``!And``, ``!Or``, ``!FindInMap``, ``!ImportValue``, ``!Condition``, ...) into the
  plain long forms (``{"Ref": ...}``, ``{"Fn::GetAtt": [resource, attribute]}``, ...), as
  CloudFormation itself reads them. Dates stay strings (``"2010-09-09"``).
- :func:`load_app` evaluates it for one set of parameters: parameter defaults and
  ``AllowedValues``, ``Conditions`` (resources whose condition is false are left out),
  ``Globals`` merged into each resource the SAM way (maps merged, lists appended, scalars
  overridden), and intrinsic functions. References to resources (``!Ref X``, ``!GetAtt X.Arn``,
  ``${X}`` / ``${X.Arn}`` in ``!Sub``) go to a *resolver* the caller passes, which turns them
  into local values; what it leaves (returns ``None`` for) gets :func:`default_resolver`'s local
  placeholders, e.g. ``!GetAtt PlanFunction.Arn`` ->
  ``arn:aws:lambda:local:000000000000:function:PlanFunction``.

A resolver may return :class:`Whole` to replace the *whole* string the reference appears in,
which is how ``ISRFLOW_DATASTORE_ROOT: !Sub "s3://${DataBucket}"`` becomes
``file:///repo/datastore`` locally::

    def resolver(ref: Reference):
        if ref.logical_id == "DataBucket" and ref.where.endswith("ISRFLOW_DATASTORE_ROOT"):
            return Whole(f"file://{repo}/datastore")
        if ref.resource_type == "AWS::SQS::Queue" and ref.attribute is None:
            return f"sqlite:///{repo}/queues.db#{ref.logical_id}"
        return None                        # default local placeholder

    app = load_app("template.yaml", {"IsrMemorySize": 2048}, resolver=resolver)
    app.functions["PlanFunction"].handler_file      # .../functions/plan/app.py
    app.state_machines["ProcessVisitStateMachine"].definition()   # substituted ASL (dict)

Only the standard library, PyYAML and pydantic are imported (no numpy/astropy), so the local
runtime's parent process and the registry-only Lambda layer can import this module cheaply.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

__all__ = [
    "LOCAL_ACCOUNT",
    "LOCAL_PARTITION",
    "LOCAL_REGION",
    "LocalApp",
    "LocalBucket",
    "LocalContainer",
    "LocalEventSourceMapping",
    "LocalFunction",
    "LocalLayer",
    "LocalQueue",
    "LocalStateMachine",
    "LocalTaskDefinition",
    "Reference",
    "Resolver",
    "TemplateError",
    "Whole",
    "default_resolver",
    "dockerfile_cmd",
    "dockerfile_task_root_files",
    "load_app",
    "load_template",
    "substitute_definition",
]

LOCAL_REGION = "local"
LOCAL_ACCOUNT = "000000000000"
LOCAL_PARTITION = "aws"

SAM_FUNCTION = "AWS::Serverless::Function"
SAM_LAYER = "AWS::Serverless::LayerVersion"
SAM_STATE_MACHINE = "AWS::Serverless::StateMachine"
CFN_STATE_MACHINE = "AWS::StepFunctions::StateMachine"
CFN_ESM = "AWS::Lambda::EventSourceMapping"
SQS_QUEUE = "AWS::SQS::Queue"
S3_BUCKET = "AWS::S3::Bucket"
ECS_TASK_DEFINITION = "AWS::ECS::TaskDefinition"

# SAM / Lambda defaults used when the template says nothing.
DEFAULT_MEMORY_MB = 128
DEFAULT_TIMEOUT_S = 3
DEFAULT_SQS_BATCH_SIZE = 10
DEFAULT_VISIBILITY_TIMEOUT_S = 30
DEFAULT_RETENTION_S = 345600


class TemplateError(ValueError):
    """The template cannot be read or evaluated for the local runtime."""


# --------------------------------------------------------------------------------------------
# YAML with CloudFormation short tags
# --------------------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader + CloudFormation short-form tags; timestamps are left as strings."""


_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_short_form(loader: _CfnLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        logical_id, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [logical_id, attribute]}
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_short_form)


def load_template(source: str | Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template file (YAML or JSON) into plain dicts and lists.

    Short tags become their long forms: ``!Ref X`` -> ``{"Ref": "X"}``, ``!GetAtt X.Arn`` ->
    ``{"Fn::GetAtt": ["X", "Arn"]}``, ``!Sub s`` -> ``{"Fn::Sub": "s"}``, ``!Condition C`` ->
    ``{"Condition": "C"}`` and ``!Name v`` -> ``{"Fn::Name": v}`` for the others.
    """
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read template {path}: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_CfnLoader)
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources mapping)")
    return data


# --------------------------------------------------------------------------------------------
# References and resolvers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """One reference the template makes to something only a deployment would know.

    ``kind`` is ``"Ref"`` (``attribute`` is None), ``"GetAtt"`` or ``"ImportValue"`` (then
    ``logical_id`` is the export name). ``where`` is the dotted location of the value being
    evaluated, e.g. ``Resources.PlanFunction.Properties.Environment.Variables.ISRFLOW_DATASTORE_ROOT``
    or ``Resources.ProcessVisitStateMachine.Properties.DefinitionSubstitutions.DataBucketName``.
    """

    kind: Literal["Ref", "GetAtt", "ImportValue"]
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


def _arn(service: str, resource: str, region: str = LOCAL_REGION, account: str = LOCAL_ACCOUNT) -> str:
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
        return (
            lid if attr is None else _arn("lambda", f"function:{lid}") if attr == "Arn" else f"{lid}.{attr}"
        )
    if rtype in (SAM_LAYER, "AWS::Lambda::LayerVersion"):
        return _arn("lambda", f"layer:{lid}:1")
    if rtype == SQS_QUEUE:
        return _arn("sqs", lid) if attr == "Arn" else lid
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
        return _arn("states", f"stateMachine:{name}")
    if rtype == "AWS::RDS::DBInstance":
        return {
            "Endpoint.Address": "localhost",
            "Endpoint.Port": "5432",
            "MasterUserSecret.SecretArn": _arn("secretsmanager", f"secret:{lid}"),
        }.get(attr or "", lid if attr is None else f"{lid}.{attr}")
    if rtype == "AWS::Logs::LogGroup":
        return _arn("logs", f"log-group:{lid}") if attr == "Arn" else lid
    if rtype == "AWS::SecretsManager::Secret" and attr is None:
        return _arn("secretsmanager", f"secret:{lid}")
    if rtype == "AWS::IAM::Role":
        return f"arn:{LOCAL_PARTITION}:iam::{LOCAL_ACCOUNT}:role/{lid}" if attr == "Arn" else lid
    return lid if attr is None else f"{lid}.{attr}"


# --------------------------------------------------------------------------------------------
# Evaluation of intrinsic functions
# --------------------------------------------------------------------------------------------

_NO_VALUE = object()
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")
_PSEUDO = {
    "AWS::Region",
    "AWS::AccountId",
    "AWS::Partition",
    "AWS::StackName",
    "AWS::StackId",
    "AWS::URLSuffix",
    "AWS::NotificationARNs",
    "AWS::NoValue",
}
_INTRINSICS = {
    "Ref",
    "Fn::GetAtt",
    "Fn::Sub",
    "Fn::Join",
    "Fn::Select",
    "Fn::Split",
    "Fn::If",
    "Fn::Equals",
    "Fn::Not",
    "Fn::And",
    "Fn::Or",
    "Fn::FindInMap",
    "Fn::GetAZs",
    "Fn::ImportValue",
    "Fn::Base64",
    "Fn::Length",
    "Fn::ToJsonString",
    "Fn::Cidr",
    "Fn::Transform",
    "Fn::GetParam",
}


def _is_intrinsic(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and next(iter(node)) in _INTRINSICS


class _Evaluator:
    def __init__(
        self, template: dict[str, Any], parameters: dict[str, Any], resolver: Resolver | None, stack_name: str
    ):
        self.template = template
        self.parameters = parameters
        self.resolver = resolver
        self.stack_name = stack_name
        self.resources: dict[str, Any] = template.get("Resources") or {}
        self.mappings: dict[str, Any] = template.get("Mappings") or {}
        self._conditions_src: dict[str, Any] = template.get("Conditions") or {}
        self.conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()
        for name in self._conditions_src:
            self.condition(name)
        self.excluded = {
            lid
            for lid, res in self.resources.items()
            if isinstance(res, dict) and res.get("Condition") and not self.condition(res["Condition"])
        }

    # -- conditions --------------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name in self.conditions:
            return self.conditions[name]
        if name not in self._conditions_src:
            raise TemplateError(f"unknown condition {name!r}")
        if name in self._evaluating:
            raise TemplateError(f"condition {name!r} refers to itself")
        self._evaluating.add(name)
        try:
            value = self._truth(self._conditions_src[name], f"Conditions.{name}")
        finally:
            self._evaluating.discard(name)
        self.conditions[name] = value
        return value

    def _truth(self, node: Any, where: str) -> bool:
        if isinstance(node, dict) and set(node) == {"Condition"}:
            return self.condition(node["Condition"])
        value = self.eval(node, where)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise TemplateError(f"{where}: not a condition: {node!r}")

    # -- values ------------------------------------------------------------------------------
    def eval(self, node: Any, where: str) -> Any:
        """Evaluate ``node``; ``AWS::NoValue`` removes keys and list items (returns _NO_VALUE)."""
        if isinstance(node, dict):
            if _is_intrinsic(node):
                ((name, arg),) = node.items()
                return self._intrinsic(name, arg, where)
            out = {}
            for key, value in node.items():
                evaluated = self.eval(value, f"{where}.{key}")
                if evaluated is not _NO_VALUE:
                    out[key] = evaluated
            return out
        if isinstance(node, list):
            items = [self.eval(item, f"{where}[{i}]") for i, item in enumerate(node)]
            return [item for item in items if item is not _NO_VALUE]
        return node

    def eval_value(self, node: Any, where: str, default: Any = None) -> Any:
        value = self.eval(node, where)
        if isinstance(value, Whole):
            value = value.value
        return default if value is _NO_VALUE or value is None else value

    def _intrinsic(self, name: str, arg: Any, where: str) -> Any:
        handler = getattr(self, "_fn_" + name.replace("Fn::", "").lower(), None)
        if handler is None:
            raise TemplateError(f"{where}: {name} is not supported by the local runtime")
        return handler(arg, where)

    def _resolve(self, ref: Reference) -> Any:
        if ref.kind != "ImportValue":
            if ref.logical_id in self.excluded:
                raise TemplateError(
                    f"{ref.where}: refers to {ref.logical_id}, which is not created with these parameters "
                    f"(its condition is false)"
                )
            if ref.logical_id not in self.resources:
                raise TemplateError(f"{ref.where}: unknown resource {ref.logical_id!r}")
        if self.resolver is not None:
            value = self.resolver(ref)
            if value is not None:
                return value
        return default_resolver(ref)

    def _reference(self, kind: str, logical_id: str, attribute: str | None, where: str) -> Reference:
        resource = self.resources.get(logical_id) if kind != "ImportValue" else None
        resource = resource if isinstance(resource, dict) else {}
        return Reference(
            kind=kind,
            logical_id=logical_id,
            attribute=attribute,
            resource_type=resource.get("Type"),
            properties=resource.get("Properties") or {},
            where=where,
            stack_name=self.stack_name,
        )

    def _pseudo(self, name: str) -> Any:
        return {
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT,
            "AWS::Partition": LOCAL_PARTITION,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": _arn("cloudformation", f"stack/{self.stack_name}/local"),
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": _NO_VALUE,
        }[name]

    def _fn_ref(self, arg: Any, where: str) -> Any:
        if not isinstance(arg, str):
            raise TemplateError(f"{where}: Ref takes a name, not {arg!r}")
        if arg in _PSEUDO:
            return self._pseudo(arg)
        if arg in self.parameters:
            return self.parameters[arg]
        return self._resolve(self._reference("Ref", arg, None, where))

    def _fn_getatt(self, arg: Any, where: str) -> Any:
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        if not (isinstance(arg, list) and len(arg) == 2):
            raise TemplateError(f"{where}: Fn::GetAtt takes [resource, attribute], not {arg!r}")
        logical_id, attribute = arg[0], self.eval_value(arg[1], where)
        return self._resolve(self._reference("GetAtt", logical_id, str(attribute), where))

    def _fn_importvalue(self, arg: Any, where: str) -> Any:
        return self._resolve(self._reference("ImportValue", str(self.eval_value(arg, where)), None, where))

    def _fn_sub(self, arg: Any, where: str) -> Any:
        if isinstance(arg, str):
            text, variables = arg, {}
        elif isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str) and isinstance(arg[1], dict):
            text, variables = arg[0], arg[1]
        else:
            raise TemplateError(f"{where}: Fn::Sub takes a string or [string, {{variables}}], not {arg!r}")
        whole: list[Whole] = []

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                value = self.eval(variables[name], f"{where}.{name}")
            elif name in _PSEUDO or name in self.parameters:
                value = self._fn_ref(name, where)
            elif "." in name:
                value = self._fn_getatt(name.split(".", 1), where)
            else:
                value = self._fn_ref(name, where)
            if isinstance(value, Whole):
                whole.append(value)
                return ""
            return _as_string(value, f"{where}: ${{{name}}}")

        result = _SUB_VAR.sub(replace, text)
        return whole[0] if whole else result

    def _fn_join(self, arg: Any, where: str) -> Any:
        if not (isinstance(arg, list) and len(arg) == 2):
            raise TemplateError(f"{where}: Fn::Join takes [delimiter, [values]], not {arg!r}")
        delimiter = self.eval_value(arg[0], where)
        items = self.eval(arg[1], where)
        if isinstance(items, Whole):
            return items
        if not isinstance(items, list):
            raise TemplateError(f"{where}: Fn::Join needs a list, got {items!r}")
        for item in items:
            if isinstance(item, Whole):
                return item
        return str(delimiter).join(_as_string(item, where) for item in items)

    def _fn_select(self, arg: Any, where: str) -> Any:
        if not (isinstance(arg, list) and len(arg) == 2):
            raise TemplateError(f"{where}: Fn::Select takes [index, [values]], not {arg!r}")
        index = int(self.eval_value(arg[0], where))
        items = self.eval_value(arg[1], where)
        if not isinstance(items, list) or not 0 <= index < len(items):
            raise TemplateError(f"{where}: Fn::Select index {index} out of range of {items!r}")
        return items[index]

    def _fn_split(self, arg: Any, where: str) -> Any:
        if not (isinstance(arg, list) and len(arg) == 2):
            raise TemplateError(f"{where}: Fn::Split takes [delimiter, string], not {arg!r}")
        delimiter = str(self.eval_value(arg[0], where))
        return _as_string(self.eval_value(arg[1], where), where).split(delimiter)

    def _fn_if(self, arg: Any, where: str) -> Any:
        if not (isinstance(arg, list) and len(arg) == 3 and isinstance(arg[0], str)):
            raise TemplateError(f"{where}: Fn::If takes [condition, if_true, if_false], not {arg!r}")
        chosen = arg[1] if self.condition(arg[0]) else arg[2]
        return self.eval(chosen, where)

    def _fn_equals(self, arg: Any, where: str) -> bool:
        if not (isinstance(arg, list) and len(arg) == 2):
            raise TemplateError(f"{where}: Fn::Equals takes two values, not {arg!r}")
        left, right = (self.eval_value(a, where) for a in arg)
        return _canonical(left) == _canonical(right)

    def _fn_not(self, arg: Any, where: str) -> bool:
        if not (isinstance(arg, list) and len(arg) == 1):
            raise TemplateError(f"{where}: Fn::Not takes one condition, not {arg!r}")
        return not self._truth(arg[0], where)

    def _fn_and(self, arg: Any, where: str) -> bool:
        if not isinstance(arg, list) or not arg:
            raise TemplateError(f"{where}: Fn::And takes a list of conditions, not {arg!r}")
        return all(self._truth(a, where) for a in arg)

    def _fn_or(self, arg: Any, where: str) -> bool:
        if not isinstance(arg, list) or not arg:
            raise TemplateError(f"{where}: Fn::Or takes a list of conditions, not {arg!r}")
        return any(self._truth(a, where) for a in arg)

    def _fn_findinmap(self, arg: Any, where: str) -> Any:
        if not (isinstance(arg, list) and len(arg) in (3, 4)):
            raise TemplateError(f"{where}: Fn::FindInMap takes [map, key, key], not {arg!r}")
        names = [self.eval_value(a, where) for a in arg[:3]]
        try:
            return self.mappings[names[0]][str(names[1])][str(names[2])]
        except (KeyError, TypeError):
            if len(arg) == 4 and isinstance(arg[3], dict) and "DefaultValue" in arg[3]:
                return self.eval_value(arg[3]["DefaultValue"], where)
            raise TemplateError(f"{where}: Fn::FindInMap found nothing at {names!r}") from None

    def _fn_getazs(self, arg: Any, where: str) -> list[str]:
        region = self.eval_value(arg, where) or LOCAL_REGION
        return [f"{region}a", f"{region}b", f"{region}c"]

    def _fn_base64(self, arg: Any, where: str) -> str:
        return base64.b64encode(_as_string(self.eval_value(arg, where), where).encode()).decode()

    def _fn_length(self, arg: Any, where: str) -> int:
        value = self.eval_value(arg, where)
        if not isinstance(value, list):
            raise TemplateError(f"{where}: Fn::Length needs a list, got {value!r}")
        return len(value)

    def _fn_tojsonstring(self, arg: Any, where: str) -> str:
        return json.dumps(self.eval_value(arg, where), separators=(",", ":"))


def _canonical(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _as_string(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TemplateError(f"{where}: expected a string, got {value!r}")


# --------------------------------------------------------------------------------------------
# Parameters and Globals
# --------------------------------------------------------------------------------------------


def _effective_parameters(template: dict[str, Any], given: Mapping[str, Any] | None) -> dict[str, Any]:
    declared: dict[str, Any] = template.get("Parameters") or {}
    given = dict(given or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise TemplateError(f"unknown template parameter(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    missing = []
    for name, spec in declared.items():
        spec = spec or {}
        if name in given:
            raw = given[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            missing.append(name)
            continue
        ptype = str(spec.get("Type", "String"))
        is_list = ptype == "CommaDelimitedList" or ptype.startswith("List<")
        if is_list:
            items = raw if isinstance(raw, list) else [s.strip() for s in _as_string(raw, name).split(",")]
            value: Any = [_as_string(item, name) for item in items]
            checked = value
        else:
            value = _as_string(raw, f"parameter {name}")
            checked = [value]
        allowed = spec.get("AllowedValues")
        if allowed is not None:
            allowed_s = {_as_string(a, name) for a in allowed}
            bad = [v for v in checked if v not in allowed_s]
            if bad:
                raise TemplateError(f"parameter {name}={raw!r} is not one of {sorted(allowed_s)}")
        if ptype == "Number":
            try:
                number = float(value)
            except ValueError:
                raise TemplateError(f"parameter {name}={raw!r} is not a number") from None
            if ("MinValue" in spec and number < float(spec["MinValue"])) or (
                "MaxValue" in spec and number > float(spec["MaxValue"])
            ):
                raise TemplateError(
                    f"parameter {name}={raw!r} is outside [{spec.get('MinValue')}, {spec.get('MaxValue')}]"
                )
        values[name] = value
    if missing:
        raise TemplateError(f"template parameter(s) without a default need a value: {', '.join(missing)}")
    return values


def _merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's rule: maps are merged, lists appended (globals first), anything else overridden."""
    if _is_intrinsic(global_value) or _is_intrinsic(local_value):
        return local_value
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = _merge_globals(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return global_value + local_value
    return local_value


def _with_globals(template: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    rtype = resource.get("Type", "")
    if not rtype.startswith("AWS::Serverless::"):
        return resource.get("Properties") or {}
    section = (template.get("Globals") or {}).get(rtype.split("::")[-1]) or {}
    properties = dict(resource.get("Properties") or {})
    for key, value in section.items():
        properties[key] = _merge_globals(value, properties[key]) if key in properties else value
    return properties


# --------------------------------------------------------------------------------------------
# The local application model
# --------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalLayer(_Model):
    logical_id: str
    content_dir: Path
    build_method: str | None = None
    requirements_file: Path | None = None


class LocalFunction(_Model):
    """One Lambda function as the local runtime runs it."""

    logical_id: str
    name: str
    arn: str
    package_type: Literal["Zip", "Image"]
    code_dir: Path
    """CodeUri directory; for an image function, the directory of its Dockerfile."""
    handler: str
    """As Lambda reads it, e.g. ``app.lambda_handler``."""
    handler_module: str
    handler_attribute: str
    runtime: str | None = None
    architectures: list[str] = ["x86_64"]
    memory_mb: int = DEFAULT_MEMORY_MB
    timeout_s: int = DEFAULT_TIMEOUT_S
    reserved_concurrency: int | None = None
    """ReservedConcurrentExecutions (None: unreserved); the local runtime enforces it."""
    environment: dict[str, str] = {}
    layers: list[str] = []
    """Logical ids of the template's layers, in order."""
    layer_dirs: list[Path] = []
    """Their content directories (what the local runtime puts on ``sys.path``)."""
    external_layers: list[str] = []
    """Layer ARNs from outside the template (not available locally)."""
    in_vpc: bool = False
    dockerfile: Path | None = None
    docker_context: Path | None = None

    @property
    def handler_file(self) -> Path:
        """The source file of the handler module (``app`` -> ``<code_dir>/app.py``)."""
        relative = Path(*self.handler_module.split("."))
        package_init = self.code_dir / relative / "__init__.py"
        return package_init if package_init.exists() else self.code_dir / relative.with_suffix(".py")


class LocalQueue(_Model):
    logical_id: str
    name: str
    url: str
    arn: str
    visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S
    message_retention_s: int = DEFAULT_RETENTION_S
    fifo: bool = False
    max_receive_count: int | None = None
    dead_letter_target: str | None = None
    """Logical id of the dead-letter queue (None without redrive, or if it is outside the template)."""
    dead_letter_target_arn: str | None = None


class LocalEventSourceMapping(_Model):
    function: str
    """Logical id of the function fed by the queue."""
    queue: str
    """Logical id of the queue."""
    name: str
    """SAM event name, or the EventSourceMapping's logical id."""
    batch_size: int = DEFAULT_SQS_BATCH_SIZE
    batching_window_s: int = 0
    max_concurrency: int | None = None
    report_batch_item_failures: bool = False
    enabled: bool = True


class LocalStateMachine(_Model):
    logical_id: str
    name: str
    """Local name (the resolver's ``GetAtt <id>.Name``; the logical id by default)."""
    arn: str
    """Local ARN (the resolver's ``Ref``), e.g. ``arn:aws:states:local:000000000000:stateMachine:<id>``."""
    type: Literal["STANDARD", "EXPRESS"] = "STANDARD"
    definition_path: Path | None = None
    inline_definition: dict[str, Any] | None = None
    substitutions: dict[str, str] = {}

    def definition_text(self) -> str:
        """The definition as JSON text with every ``${name}`` substituted."""
        if self.definition_path is not None:
            try:
                text = self.definition_path.read_text(encoding="utf-8")
            except OSError as exc:
                raise TemplateError(f"{self.logical_id}: cannot read {self.definition_path}: {exc}") from exc
        else:
            text = json.dumps(self.inline_definition)
        return substitute_definition(text, self.substitutions, where=self.logical_id)

    def definition(self) -> dict[str, Any]:
        """The substituted definition, parsed."""
        try:
            return json.loads(self.definition_text())
        except json.JSONDecodeError as exc:
            raise TemplateError(f"{self.logical_id}: definition is not JSON: {exc}") from exc


class LocalContainer(_Model):
    name: str
    entry_point: list[str] = []
    command: list[str] = []
    environment: dict[str, str] = {}


class LocalTaskDefinition(_Model):
    """An ECS task definition (``AWS::ECS::TaskDefinition``) as the local runtime runs it: its
    containers' entry points and environment, and (``Metadata.Dockerfile``) where its image is
    built from, so that ``/var/task/...`` paths map to the files its stage copies there."""

    logical_id: str
    arn: str
    family: str | None = None
    cpu: str | None = None
    memory: str | None = None
    containers: list[LocalContainer] = []
    dockerfile: Path | None = None
    docker_context: Path | None = None
    task_root_files: dict[str, Path] = {}
    """Name in the task root (/var/task) -> its source file (from the Dockerfile stage's COPYs)."""


class LocalBucket(_Model):
    logical_id: str
    name: str


class LocalApp(_Model):
    """What ``template.yaml`` declares, evaluated for one set of parameters."""

    template_path: Path
    root: Path
    stack_name: str
    parameters: dict[str, str | list[str]]
    conditions: dict[str, bool]
    functions: dict[str, LocalFunction]
    layers: dict[str, LocalLayer]
    queues: dict[str, LocalQueue]
    event_source_mappings: list[LocalEventSourceMapping]
    state_machines: dict[str, LocalStateMachine]
    buckets: dict[str, LocalBucket]
    outputs: dict[str, Any]
    task_definitions: dict[str, LocalTaskDefinition] = {}

    def function(self, key: str) -> LocalFunction:
        """A function by logical id, local name or ARN (as substituted into an ASL file)."""
        if key in self.functions:
            return self.functions[key]
        for function in self.functions.values():
            if key in (function.name, function.arn):
                return function
        # Qualified ARNs (":$LATEST", ":alias") and names with a version suffix.
        for function in self.functions.values():
            if key.startswith(function.arn + ":"):
                return function
        raise KeyError(f"no function {key!r} in {self.template_path}")

    def mappings_for(self, function_or_queue: str) -> list[LocalEventSourceMapping]:
        """Event source mappings of a function or a queue (by logical id)."""
        return [m for m in self.event_source_mappings if function_or_queue in (m.function, m.queue)]


def substitute_definition(text: str, substitutions: Mapping[str, str], *, where: str = "definition") -> str:
    """Replace ``${name}`` in a state machine definition, as ``DefinitionSubstitutions`` does.

    Every ``${...}`` must have a substitution (the ASL itself never uses that syntax).
    """
    missing: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            missing.add(name)
            return match.group(0)
        return str(substitutions[name])

    result = _SUB_VAR.sub(replace, text)
    if missing:
        raise TemplateError(f"{where}: no DefinitionSubstitutions for {', '.join(sorted(missing))}")
    return result


def _dockerfile_lines(dockerfile: Path) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    try:
        text = dockerfile.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read {dockerfile}: {exc}") from exc
    logical_lines, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical_lines.append(current + stripped)
        current = ""
    if current:
        logical_lines.append(current)
    return logical_lines


def _stage_chain(dockerfile: Path, target: str | None) -> list[str]:
    """The instructions that make ``target`` (the last stage when None), parent stages first."""
    stages: list[tuple[str | None, str, list[str]]] = []
    for line in _dockerfile_lines(dockerfile):
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            words = rest.split()
            name = words[2].lower() if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append((name, words[0].lower() if words else "", []))
        elif stages:
            stages[-1][2].append(line)
    if not stages:
        raise TemplateError(f"{dockerfile}: no FROM")
    by_name = {name: (base, lines) for name, base, lines in stages if name}
    if target is not None and target.lower() not in by_name:
        raise TemplateError(f"{dockerfile}: no stage named {target!r}")
    base, lines = by_name[target.lower()] if target is not None else stages[-1][1:]
    chain = [lines]
    while base in by_name:
        base, parent = by_name[base]
        chain.insert(0, parent)
    return [line for lines in chain for line in lines]


def dockerfile_cmd(dockerfile: Path, target: str | None = None) -> list[str]:
    """The last ``CMD`` (exec form ``["a", "b"]`` or shell form) of a stage, as a list."""
    cmd: list[str] | None = None
    for line in _stage_chain(dockerfile, target):
        keyword, _, rest = line.partition(" ")
        if keyword.upper() != "CMD":
            continue
        rest = rest.strip()
        if rest.startswith("["):
            try:
                cmd = [str(x) for x in json.loads(rest)]
            except json.JSONDecodeError as exc:
                raise TemplateError(f"{dockerfile}: bad CMD {rest!r}: {exc}") from exc
        else:
            cmd = shlex.split(rest)
    if not cmd:
        raise TemplateError(f"{dockerfile}: no CMD")
    return cmd


def dockerfile_task_root_files(dockerfile: Path, context: Path, target: str | None = None) -> dict[str, Path]:
    """Files a stage COPYs into the task root (``${LAMBDA_TASK_ROOT}/`` or ``/var/task/``): name -> source."""
    files: dict[str, Path] = {}
    for line in _stage_chain(dockerfile, target):
        keyword, _, rest = line.partition(" ")
        words = [w for w in shlex.split(rest) if not w.startswith("--")]
        if keyword.upper() not in ("COPY", "ADD") or len(words) < 2 or "--from" in rest:
            continue
        dest = words[-1]
        if dest.rstrip("/") not in ("${LAMBDA_TASK_ROOT}", "$LAMBDA_TASK_ROOT", "/var/task"):
            continue
        for src in words[:-1]:
            path = (context / src).resolve()
            if path.is_file():
                files[path.name] = path
    return files


def _target_logical_id(node: Any, resources: Mapping[str, Any]) -> str | None:
    """The logical id a raw (unevaluated) reference names: Ref X, GetAtt X.attr, Sub "${X.Arn}"."""
    if isinstance(node, dict) and len(node) == 1:
        ((key, value),) = node.items()
        if key == "Ref" and isinstance(value, str) and value in resources:
            return value
        if key == "Fn::GetAtt":
            target = (
                value.split(".", 1)[0]
                if isinstance(value, str)
                else value[0]
                if isinstance(value, list)
                else None
            )
            return target if target in resources else None
        if key == "Fn::Sub" and isinstance(value, str):
            match = re.fullmatch(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}", value)
            if match and match.group(1) in resources:
                return match.group(1)
    return None


def _int(value: Any, where: str, default: int | None = None) -> int | None:
    if value is None:
        return default
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise TemplateError(f"{where}: expected a number, got {value!r}") from None


def _local_path(root: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or value.startswith("s3://"):
        raise TemplateError(f"{where}: the local runtime needs a local path, got {value!r}")
    return (root / value).resolve()


def load_app(
    template_path: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    resolver: Resolver | None = None,
    stack_name: str = "isrflow",
) -> LocalApp:
    """Evaluate ``template_path`` for ``parameters`` (defaults for the rest) into a :class:`LocalApp`.

    ``resolver(ref: Reference)`` turns references to resources into local values; ``None``
    falls back to :func:`default_resolver`. Paths (CodeUri, ContentUri, DefinitionUri,
    DockerContext) are resolved against the template's directory.
    """
    path = Path(template_path).resolve()
    root = path.parent
    template = load_template(path)
    params = _effective_parameters(template, parameters)
    ev = _Evaluator(template, params, resolver, stack_name)
    resources: dict[str, Any] = template["Resources"]

    def props_of(lid: str) -> tuple[dict[str, Any], str]:
        return _with_globals(template, resources[lid]), f"Resources.{lid}.Properties"

    active = [lid for lid in resources if lid not in ev.excluded]
    by_type: dict[str, list[str]] = {}
    for lid in active:
        by_type.setdefault(resources[lid].get("Type", ""), []).append(lid)

    # Layers.
    layers: dict[str, LocalLayer] = {}
    for lid in by_type.get(SAM_LAYER, []):
        props, where = props_of(lid)
        content = _local_path(
            root, ev.eval_value(props.get("ContentUri"), f"{where}.ContentUri"), f"{where}.ContentUri"
        )
        meta = resources[lid].get("Metadata") or {}
        requirements = content / "requirements.txt"
        layers[lid] = LocalLayer(
            logical_id=lid,
            content_dir=content,
            build_method=meta.get("BuildMethod"),
            requirements_file=requirements if requirements.exists() else None,
        )

    # Queues.
    queues: dict[str, LocalQueue] = {}
    for lid in by_type.get(SQS_QUEUE, []):
        props, where = props_of(lid)
        redrive_raw = props.get("RedrivePolicy")
        if isinstance(redrive_raw, str):
            redrive_raw = json.loads(redrive_raw)
        redrive = ev.eval_value(redrive_raw, f"{where}.RedrivePolicy") or {}
        if isinstance(redrive, str):
            redrive = json.loads(redrive)
        target_node = (
            (redrive_raw or {}).get("deadLetterTargetArn") if isinstance(redrive_raw, dict) else None
        )
        queues[lid] = LocalQueue(
            logical_id=lid,
            name=_as_string(ev.eval_value({"Fn::GetAtt": [lid, "QueueName"]}, f"{where}.QueueName"), where),
            url=_as_string(ev.eval_value({"Ref": lid}, f"{where}.QueueUrl"), where),
            arn=_as_string(ev.eval_value({"Fn::GetAtt": [lid, "Arn"]}, f"{where}.Arn"), where),
            visibility_timeout_s=_int(
                ev.eval_value(props.get("VisibilityTimeout"), f"{where}.VisibilityTimeout"),
                where,
                DEFAULT_VISIBILITY_TIMEOUT_S,
            ),
            message_retention_s=_int(
                ev.eval_value(props.get("MessageRetentionPeriod"), f"{where}.MessageRetentionPeriod"),
                where,
                DEFAULT_RETENTION_S,
            ),
            fifo=str(ev.eval_value(props.get("FifoQueue"), where, False)).lower() == "true",
            max_receive_count=_int(redrive.get("maxReceiveCount"), f"{where}.RedrivePolicy"),
            dead_letter_target=_target_logical_id(target_node, resources),
            dead_letter_target_arn=redrive.get("deadLetterTargetArn"),
        )

    # Functions and their SQS events.
    functions: dict[str, LocalFunction] = {}
    mappings: list[LocalEventSourceMapping] = []
    for lid in by_type.get(SAM_FUNCTION, []):
        props, where = props_of(lid)
        meta = resources[lid].get("Metadata") or {}
        package_type = ev.eval_value(props.get("PackageType"), where, "Zip")
        dockerfile = docker_context = None
        if package_type == "Image":
            if "Dockerfile" not in meta:
                raise TemplateError(f"Resources.{lid}: an Image function needs Metadata.Dockerfile locally")
            docker_context = _local_path(
                root, meta.get("DockerContext", "."), f"Resources.{lid}.Metadata.DockerContext"
            )
            dockerfile = (docker_context / meta["Dockerfile"]).resolve()
            target = meta.get("DockerBuildTarget")
            command = (ev.eval_value(props.get("ImageConfig"), f"{where}.ImageConfig") or {}).get("Command")
            handler = (command or dockerfile_cmd(dockerfile, target))[0]
            # The handler's source: the file the stage copies into the task root as <module>.py.
            module_file = handler.rsplit(".", 1)[0].replace(".", "/") + ".py"
            copied = dockerfile_task_root_files(dockerfile, docker_context, target)
            code_dir = copied[module_file].parent if module_file in copied else dockerfile.parent
            runtime = None
        elif package_type == "Zip":
            code_dir = _local_path(
                root, ev.eval_value(props.get("CodeUri"), f"{where}.CodeUri"), f"{where}.CodeUri"
            )
            handler = ev.eval_value(props.get("Handler"), f"{where}.Handler")
            runtime = ev.eval_value(props.get("Runtime"), f"{where}.Runtime")
        else:
            raise TemplateError(f"{where}.PackageType: {package_type!r}")
        if not isinstance(handler, str) or "." not in handler:
            raise TemplateError(f"{where}.Handler: expected module.function, got {handler!r}")
        module, _, attribute = handler.rpartition(".")

        env_where = f"{where}.Environment.Variables"
        variables = ev.eval_value((props.get("Environment") or {}).get("Variables") or {}, env_where) or {}
        environment = {
            key: _as_string(value.value if isinstance(value, Whole) else value, f"{env_where}.{key}")
            for key, value in variables.items()
        }

        layer_ids, layer_dirs, external = [], [], []
        for i, item in enumerate(props.get("Layers") or []):
            target = _target_logical_id(item, resources)
            if target in layers:
                layer_ids.append(target)
                layer_dirs.append(layers[target].content_dir)
            elif target is None:
                value = ev.eval_value(item, f"{where}.Layers[{i}]")
                if value is not None:
                    external.append(_as_string(value, f"{where}.Layers[{i}]"))
            else:
                raise TemplateError(f"{where}.Layers[{i}]: {target} is not a layer of this template")

        architectures = ev.eval_value(props.get("Architectures"), f"{where}.Architectures") or ["x86_64"]
        functions[lid] = LocalFunction(
            logical_id=lid,
            name=_as_string(ev.eval_value({"Ref": lid}, f"{where}.FunctionName"), where),
            arn=_as_string(ev.eval_value({"Fn::GetAtt": [lid, "Arn"]}, f"{where}.Arn"), where),
            package_type=package_type,
            code_dir=code_dir,
            handler=handler,
            handler_module=module,
            handler_attribute=attribute,
            runtime=runtime,
            architectures=[str(a) for a in architectures],
            memory_mb=_int(
                ev.eval_value(props.get("MemorySize"), f"{where}.MemorySize"), where, DEFAULT_MEMORY_MB
            ),
            timeout_s=_int(ev.eval_value(props.get("Timeout"), f"{where}.Timeout"), where, DEFAULT_TIMEOUT_S),
            reserved_concurrency=_int(
                ev.eval_value(
                    props.get("ReservedConcurrentExecutions"), f"{where}.ReservedConcurrentExecutions"
                ),
                where,
                None,
            ),
            environment=environment,
            layers=layer_ids,
            layer_dirs=layer_dirs,
            external_layers=external,
            in_vpc=bool(ev.eval_value(props.get("VpcConfig"), f"{where}.VpcConfig")),
            dockerfile=dockerfile,
            docker_context=docker_context,
        )

        for event_name, event in (props.get("Events") or {}).items():
            if not isinstance(event, dict) or event.get("Type") != "SQS":
                continue
            ewhere = f"{where}.Events.{event_name}.Properties"
            eprops = event.get("Properties") or {}
            queue = _target_logical_id(eprops.get("Queue"), resources)
            if queue not in queues:
                raise TemplateError(f"{ewhere}.Queue: not a queue of this template: {eprops.get('Queue')!r}")
            mappings.append(_mapping(ev, lid, queue, event_name, eprops, ewhere))

    for lid in by_type.get(CFN_ESM, []):
        props, where = props_of(lid)
        function = _target_logical_id(props.get("FunctionName"), resources)
        queue = _target_logical_id(props.get("EventSourceArn"), resources)
        if function in functions and queue in queues:
            mappings.append(_mapping(ev, function, queue, lid, props, where))

    # State machines.
    state_machines: dict[str, LocalStateMachine] = {}
    for lid in by_type.get(SAM_STATE_MACHINE, []) + by_type.get(CFN_STATE_MACHINE, []):
        props, where = props_of(lid)
        definition_path = inline = None
        if props.get("DefinitionUri") is not None:
            definition_path = _local_path(
                root,
                ev.eval_value(props["DefinitionUri"], f"{where}.DefinitionUri"),
                f"{where}.DefinitionUri",
            )
        elif props.get("Definition") is not None:
            inline = ev.eval_value(props["Definition"], f"{where}.Definition")
        elif props.get("DefinitionString") is not None:
            inline = json.loads(
                _as_string(ev.eval_value(props["DefinitionString"], f"{where}.DefinitionString"), where)
            )
        else:
            raise TemplateError(f"{where}: no DefinitionUri, Definition or DefinitionString")
        subs_where = f"{where}.DefinitionSubstitutions"
        subs = ev.eval_value(props.get("DefinitionSubstitutions") or {}, subs_where) or {}
        sm_type = ev.eval_value(props.get("Type") or props.get("StateMachineType"), where, "STANDARD")
        state_machines[lid] = LocalStateMachine(
            logical_id=lid,
            name=_as_string(ev.eval_value({"Fn::GetAtt": [lid, "Name"]}, f"{where}.Name"), where),
            arn=_as_string(ev.eval_value({"Ref": lid}, f"{where}.Arn"), where),
            type=sm_type,
            definition_path=definition_path,
            inline_definition=inline,
            substitutions={
                k: _as_string(v.value if isinstance(v, Whole) else v, f"{subs_where}.{k}")
                for k, v in subs.items()
            },
        )

    task_definitions: dict[str, LocalTaskDefinition] = {}
    for lid in by_type.get(ECS_TASK_DEFINITION, []):
        props, where = props_of(lid)
        meta = resources[lid].get("Metadata") or {}
        containers = []
        for i, raw in enumerate(props.get("ContainerDefinitions") or []):
            cwhere = f"{where}.ContainerDefinitions[{i}]"
            env = {}
            for j, pair in enumerate(
                ev.eval_value(raw.get("Environment") or [], f"{cwhere}.Environment") or []
            ):
                value = pair.get("Value")
                env[str(pair.get("Name"))] = _as_string(
                    value.value if isinstance(value, Whole) else value, f"{cwhere}.Environment[{j}]"
                )
            containers.append(
                LocalContainer(
                    name=_as_string(ev.eval_value(raw.get("Name"), f"{cwhere}.Name"), cwhere),
                    entry_point=[
                        str(a) for a in ev.eval_value(raw.get("EntryPoint"), f"{cwhere}.EntryPoint") or []
                    ],
                    command=[str(a) for a in ev.eval_value(raw.get("Command"), f"{cwhere}.Command") or []],
                    environment=env,
                )
            )
        dockerfile = context = None
        task_root_files: dict[str, Path] = {}
        if "Dockerfile" in meta:
            context = _local_path(
                root, meta.get("DockerContext", "."), f"Resources.{lid}.Metadata.DockerContext"
            )
            dockerfile = (context / meta["Dockerfile"]).resolve()
            task_root_files = dockerfile_task_root_files(dockerfile, context, meta.get("DockerBuildTarget"))
        family = ev.eval_value(props.get("Family"), f"{where}.Family")
        task_definitions[lid] = LocalTaskDefinition(
            logical_id=lid,
            arn=_as_string(ev.eval_value({"Ref": lid}, f"{where}.Arn"), where),
            family=None if family is None else _as_string(family, where),
            cpu=None
            if props.get("Cpu") is None
            else _as_string(ev.eval_value(props["Cpu"], f"{where}.Cpu"), where),
            memory=None
            if props.get("Memory") is None
            else _as_string(ev.eval_value(props["Memory"], f"{where}.Memory"), where),
            containers=containers,
            dockerfile=dockerfile,
            docker_context=context,
            task_root_files=task_root_files,
        )

    buckets = {
        lid: LocalBucket(
            logical_id=lid, name=_as_string(ev.eval_value({"Ref": lid}, f"Resources.{lid}"), lid)
        )
        for lid in by_type.get(S3_BUCKET, [])
    }

    outputs: dict[str, Any] = {}
    for name, output in (template.get("Outputs") or {}).items():
        if not isinstance(output, dict):
            continue
        if output.get("Condition") and not ev.condition(output["Condition"]):
            continue
        outputs[name] = ev.eval_value(output.get("Value"), f"Outputs.{name}.Value")

    return LocalApp(
        template_path=path,
        root=root,
        stack_name=stack_name,
        parameters=params,
        conditions=dict(ev.conditions),
        functions=functions,
        layers=layers,
        queues=queues,
        event_source_mappings=mappings,
        state_machines=state_machines,
        buckets=buckets,
        outputs=outputs,
        task_definitions=task_definitions,
    )


def _mapping(
    ev: _Evaluator, function: str, queue: str, name: str, props: Mapping[str, Any], where: str
) -> LocalEventSourceMapping:
    scaling = ev.eval_value(props.get("ScalingConfig"), f"{where}.ScalingConfig") or {}
    response_types = ev.eval_value(props.get("FunctionResponseTypes"), f"{where}.FunctionResponseTypes") or []
    enabled = ev.eval_value(props.get("Enabled"), f"{where}.Enabled", True)
    return LocalEventSourceMapping(
        function=function,
        queue=queue,
        name=name,
        batch_size=_int(
            ev.eval_value(props.get("BatchSize"), f"{where}.BatchSize"), where, DEFAULT_SQS_BATCH_SIZE
        ),
        batching_window_s=_int(
            ev.eval_value(
                props.get("MaximumBatchingWindowInSeconds"), f"{where}.MaximumBatchingWindowInSeconds"
            ),
            where,
            0,
        ),
        max_concurrency=_int(scaling.get("MaximumConcurrency"), f"{where}.ScalingConfig"),
        report_batch_item_failures="ReportBatchItemFailures" in response_types,
        enabled=str(enabled).lower() != "false",
    )
