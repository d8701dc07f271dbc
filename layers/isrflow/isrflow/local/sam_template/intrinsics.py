"""CloudFormation intrinsic functions and Conditions, evaluated for one set of parameters.

References to resources go to the caller's resolver (see :mod:`isrflow.local.sam_template.references`).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from isrflow.local.sam_template.constants import (
    LOCAL_ACCOUNT,
    LOCAL_PARTITION,
    LOCAL_REGION,
)
from isrflow.local.sam_template.errors import TemplateError
from isrflow.local.sam_template.references import (
    Reference,
    ReferenceKind,
    Resolver,
    Whole,
    arn,
    default_resolver,
)

_NO_VALUE = object()
SUB_VAR = re.compile(r"\$\{([^}]*)\}")
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


def is_intrinsic(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and next(iter(node)) in _INTRINSICS


class Evaluator:
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
            if is_intrinsic(node):
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

    def _reference(
        self, kind: ReferenceKind, logical_id: str, attribute: str | None, where: str
    ) -> Reference:
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
            "AWS::StackId": arn("cloudformation", f"stack/{self.stack_name}/local"),
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
            return as_string(value, f"{where}: ${{{name}}}")

        result = SUB_VAR.sub(replace, text)
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
        return str(delimiter).join(as_string(item, where) for item in items)

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
        return as_string(self.eval_value(arg[1], where), where).split(delimiter)

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
        return base64.b64encode(as_string(self.eval_value(arg, where), where).encode()).decode()

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


def as_string(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TemplateError(f"{where}: expected a string, got {value!r}")


# --------------------------------------------------------------------------------------------
