"""Template ``Parameters`` (defaults, ``AllowedValues``, number bounds) and SAM ``Globals`` merged into resources."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from isrflow.local.sam_template.errors import TemplateError
from isrflow.local.sam_template.intrinsics import as_string, is_intrinsic


def effective_parameters(template: dict[str, Any], given: Mapping[str, Any] | None) -> dict[str, Any]:
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
            items = raw if isinstance(raw, list) else [s.strip() for s in as_string(raw, name).split(",")]
            value: Any = [as_string(item, name) for item in items]
            checked = value
        else:
            value = as_string(raw, f"parameter {name}")
            checked = [value]
        allowed = spec.get("AllowedValues")
        if allowed is not None:
            allowed_s = {as_string(a, name) for a in allowed}
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
    if is_intrinsic(global_value) or is_intrinsic(local_value):
        return local_value
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = _merge_globals(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return global_value + local_value
    return local_value


def with_globals(template: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    rtype = resource.get("Type", "")
    if not rtype.startswith("AWS::Serverless::"):
        return resource.get("Properties") or {}
    section = (template.get("Globals") or {}).get(rtype.split("::")[-1]) or {}
    properties = dict(resource.get("Properties") or {})
    for key, value in section.items():
        properties[key] = _merge_globals(value, properties[key]) if key in properties else value
    return properties
