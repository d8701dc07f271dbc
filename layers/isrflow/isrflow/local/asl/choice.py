"""Choice Rules (JSONPath): Boolean expressions (And, Or, Not) and Data-test expressions.

Comparison operators: String{Equals,LessThan,GreaterThan,LessThanEquals,GreaterThanEquals},
StringMatches, Numeric*, BooleanEquals, Timestamp*, each with its ``...Path`` variant, and
IsNull, IsPresent, IsNumeric, IsString, IsBoolean, IsTimestamp.

As the specification says: when the values are not both of the operator's type the
comparison is false; only IsPresent tolerates a Variable that selects nothing — any other
operator then fails the state with ``States.Runtime`` (what AWS reports).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from isrflow.local.asl.jsonpath import MISSING, Path, PathNotFound, PathSyntaxError

_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp with uppercase 'T' and 'Z' (as ASL requires), else None."""
    if not isinstance(value, str):
        return None
    m = _TS.match(value)
    if not m:
        return None
    text = value
    if m.group(1) and len(m.group(1)) > 7:  # more than microseconds: truncate
        text = value[: m.start(1) + 7] + value[m.end(1) :]
    text = text.replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_CMP = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "GreaterThan": operator.gt,
    "LessThanEquals": operator.le,
    "GreaterThanEquals": operator.ge,
}

# family -> (type check of a value, converter)
_FAMILIES: dict[str, tuple[Callable[[Any], bool], Callable[[Any], Any]]] = {
    "String": (lambda v: isinstance(v, str), lambda v: v),
    "Numeric": (_is_num, lambda v: v),
    "Timestamp": (lambda v: parse_timestamp(v) is not None, parse_timestamp),
}

COMPARISONS: dict[str, tuple[str, Callable]] = {}
for _fam in _FAMILIES:
    for _suffix, _op in _CMP.items():
        COMPARISONS[_fam + _suffix] = (_fam, _op)
COMPARISONS["BooleanEquals"] = ("Boolean", operator.eq)
_FAMILIES["Boolean"] = (lambda v: isinstance(v, bool), lambda v: v)

TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "IsNull": lambda v: v is None,
    "IsNumeric": _is_num,
    "IsString": lambda v: isinstance(v, str),
    "IsBoolean": lambda v: isinstance(v, bool),
    "IsTimestamp": lambda v: parse_timestamp(v) is not None,
}

OPERATORS = (
    set(COMPARISONS) | {k + "Path" for k in COMPARISONS} | set(TYPE_TESTS) | {"IsPresent", "StringMatches"}
)


class ChoiceRuleError(ValueError):
    """A malformed Choice Rule (load time); ``location`` is relative to the rule."""

    def __init__(self, location: str, message: str):
        self.location = location
        self.message = message
        super().__init__(f"{location}: {message}" if location else message)


class ChoiceRuntimeError(Exception):
    """A rule cannot be evaluated (``States.Runtime``)."""


def _string_matcher(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 >= len(pattern) or pattern[i + 1] not in "*\\":
                raise ValueError("open escape: only \\* and \\\\ may follow a backslash")
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


class Rule:
    """A compiled Choice Rule; ``matches(data, context_object)`` -> bool."""

    __slots__ = ("children", "family", "kind", "next", "op", "operand", "operand_path", "variable")

    kind: str
    """And, Or, Not (``children``), IsPresent, type (a type test), match (StringMatches) or cmp."""
    children: tuple[Rule, ...]
    variable: Path | None
    """None only for And/Or/Not."""
    op: Callable[..., Any] | None
    """The type test (kind ``type``) or the comparison operator (kind ``cmp``)."""
    operand: Any
    operand_path: Path | None
    family: str | None
    """Comparison family (kind ``cmp``): String, Numeric, Boolean or Timestamp."""
    next: str | None

    def __init__(self) -> None:
        self.children = ()
        self.variable = self.op = self.operand = self.operand_path = self.family = self.next = None

    def matches(self, data: Any, ctx_obj: Any = MISSING) -> bool:
        kind = self.kind
        if kind == "And":
            return all(c.matches(data, ctx_obj) for c in self.children)
        if kind == "Or":
            return any(c.matches(data, ctx_obj) for c in self.children)
        if kind == "Not":
            return not self.children[0].matches(data, ctx_obj)
        variable = self.variable
        assert variable is not None  # a data-test rule always has one (compile_rule)
        try:
            value = variable.apply(data, ctx_obj)
        except PathNotFound:
            if kind == "IsPresent":
                return not self.operand
            raise ChoiceRuntimeError(
                f"Invalid path '{variable.text}': The choice state's condition "
                f"path references an invalid value."
            ) from None
        if kind == "IsPresent":
            return bool(self.operand)
        if kind == "match":
            return isinstance(value, str) and self.operand.fullmatch(value) is not None
        op, family = self.op, self.family
        assert op is not None  # type tests and comparisons have one (compile_rule)
        if kind == "type":
            return op(value) == self.operand
        # comparison
        assert family is not None  # comparisons have one (compile_rule)
        check, convert = _FAMILIES[family]
        if self.operand_path is not None:
            try:
                other = self.operand_path.apply(data, ctx_obj)
            except PathNotFound:
                raise ChoiceRuntimeError(
                    f"Invalid path '{self.operand_path.text}': The choice state's "
                    f"condition path references an invalid value."
                ) from None
            if not check(other):
                return False
            other = convert(other)
        else:
            other = self.operand
        if not check(value):
            return False
        return op(convert(value), other)


_RULE_META = {"Next", "Comment"}


def compile_rule(rule: Any, top: bool, where: str = "") -> Rule:
    """Compile one rule; ``top`` for a member of ``Choices`` (which must have ``Next``)."""
    if not isinstance(rule, dict):
        raise ChoiceRuleError(where, "a Choice Rule must be a JSON object")
    if "Assign" in rule:
        raise ChoiceRuleError(
            where + ".Assign", "variables (Assign) are not supported by the local interpreter"
        )
    if "Condition" in rule:
        raise ChoiceRuleError(where + ".Condition", "JSONata conditions are not supported (JSONPath only)")
    r = Rule()
    if top:
        if "Next" not in rule:
            raise ChoiceRuleError(where, "a top-level Choice Rule must have 'Next'")
        if not isinstance(rule["Next"], str):
            raise ChoiceRuleError(where + ".Next", "must be a string")
        r.next = rule["Next"]
    elif "Next" in rule:
        raise ChoiceRuleError(where + ".Next", "a nested Choice Rule must not have 'Next'")
    bools = [k for k in ("And", "Or", "Not") if k in rule]
    ops = [k for k in rule if k in OPERATORS]
    unknown = [
        k
        for k in rule
        if k not in OPERATORS and k not in _RULE_META and k not in ("And", "Or", "Not", "Variable")
    ]
    if unknown:
        raise ChoiceRuleError(where + "." + unknown[0], "unknown field in a Choice Rule")
    if bools:
        if len(bools) > 1 or ops or "Variable" in rule:
            raise ChoiceRuleError(
                where, "a Boolean expression has exactly one of And, Or, Not and no Variable/operator"
            )
        kind = bools[0]
        r.kind = kind
        value = rule[kind]
        if kind == "Not":
            r.children = (compile_rule(value, False, f"{where}.Not"),)
        else:
            if not isinstance(value, list) or not value:
                raise ChoiceRuleError(f"{where}.{kind}", "must be a non-empty array of Choice Rules")
            r.children = tuple(compile_rule(v, False, f"{where}.{kind}[{i}]") for i, v in enumerate(value))
        return r
    if "Variable" not in rule:
        raise ChoiceRuleError(where, "a Data-test expression needs 'Variable' (or use And/Or/Not)")
    try:
        r.variable = Path(rule["Variable"])
    except PathSyntaxError as exc:
        raise ChoiceRuleError(where + ".Variable", str(exc)) from None
    if len(ops) != 1:
        raise ChoiceRuleError(
            where, f"a Data-test expression needs exactly one comparison operator, found {ops or 'none'}"
        )
    op = ops[0]
    operand = rule[op]
    loc = f"{where}.{op}"
    if op == "IsPresent" or op in TYPE_TESTS:
        if not isinstance(operand, bool):
            raise ChoiceRuleError(loc, "must be true or false")
        r.kind = "IsPresent" if op == "IsPresent" else "type"
        r.op = TYPE_TESTS.get(op)
        r.operand = operand
        return r
    if op == "StringMatches":
        if not isinstance(operand, str):
            raise ChoiceRuleError(loc, "must be a string")
        try:
            r.operand = _string_matcher(operand)
        except ValueError as exc:
            raise ChoiceRuleError(loc, str(exc)) from None
        r.kind = "match"
        return r
    r.kind = "cmp"
    base = op.removesuffix("Path")
    r.family, r.op = COMPARISONS[base]
    if op.endswith("Path"):
        try:
            r.operand_path = Path(operand)
        except PathSyntaxError as exc:
            raise ChoiceRuleError(loc, str(exc)) from None
        return r
    check, convert = _FAMILIES[r.family]
    if not check(operand):
        want = {
            "String": "a string",
            "Numeric": "a number",
            "Boolean": "a boolean",
            "Timestamp": "an RFC 3339 timestamp such as 2016-03-14T01:59:00Z",
        }[r.family]
        raise ChoiceRuleError(loc, f"must be {want}")
    r.operand = convert(operand)
    return r


def rule_uses_context(rule: Rule) -> bool:
    """Does the rule (or a nested one) read the Context Object (a ``$$`` path)?"""
    if rule.kind in ("And", "Or", "Not"):
        return any(rule_uses_context(c) for c in rule.children)
    return bool(rule.variable is not None and rule.variable.context) or bool(
        rule.operand_path is not None and rule.operand_path.context
    )
