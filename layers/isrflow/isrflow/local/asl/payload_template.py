"""Payload Templates (Parameters, ResultSelector, ItemSelector, ItemReader.Parameters).

A field whose name ends in ``.$`` is renamed without the suffix and its value, which must
be a string, is replaced: ``$...`` is a Path applied to the template's input, ``$$...``
a Path applied to the Context Object, anything else an intrinsic function call.
Templates are compiled once at load; objects and arrays are walked however deeply nested.

Run-time failures raise :class:`PayloadTemplateEvalError` carrying the ASL error name: a path that
selects nothing is ``States.Runtime`` (what AWS reports, e.g. "The JSONPath '$.JobName'
specified for the field 'JobName.$' could not be found in the input '{}'"); a failing
intrinsic is ``States.IntrinsicFailure``.
"""

from __future__ import annotations

import json
from typing import Any

from isrflow.local.asl.intrinsics import IntrinsicError, IntrinsicSyntaxError, parse_intrinsic
from isrflow.local.asl.jsonpath import Path, PathNotFound, PathSyntaxError

_CONST, _OBJ, _ARR, _PATH, _CALL = range(5)


class PayloadTemplateError(ValueError):
    """A malformed Payload Template (load time). ``field`` names the offending key."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class PayloadTemplateEvalError(Exception):
    def __init__(self, error: str, cause: str):
        self.error, self.cause = error, cause
        super().__init__(f"{error}: {cause}")


def _dumps(v: Any) -> str:
    try:
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(v)


def _compile(node: Any, where: str) -> tuple[Any, ...]:
    if isinstance(node, dict):
        entries: list[tuple[str, tuple[Any, ...]]] = []
        dynamic = False
        seen: dict[str, str] = {}
        for key, value in node.items():
            loc = f"{where}.{key}" if where else key
            if key.endswith(".$"):
                out = key[:-2]
                if not isinstance(value, str):
                    raise PayloadTemplateError(
                        loc,
                        "the value of a field ending in '.$' must be a string "
                        "(a Path or an intrinsic function)",
                    )
                if value.startswith("$"):
                    try:
                        entries.append((out, (_PATH, Path(value), key)))
                    except PathSyntaxError as exc:
                        raise PayloadTemplateError(loc, str(exc)) from None
                else:
                    try:
                        entries.append((out, (_CALL, parse_intrinsic(value), key)))
                    except IntrinsicSyntaxError as exc:
                        raise PayloadTemplateError(
                            loc, f"not a Path (must begin with '$') nor a valid intrinsic function: {exc}"
                        ) from None
                dynamic = True
            else:
                out = key
                sub = _compile(value, loc)
                dynamic = dynamic or sub[0] != _CONST
                entries.append((out, sub))
            if out in seen:
                raise PayloadTemplateError(
                    loc, f"duplicate field {out!r} once '.$' is stripped (also {seen[out]!r})"
                )
            seen[out] = key
        if not dynamic:
            return (_CONST, node)
        return (_OBJ, tuple(entries))
    if isinstance(node, list):
        items = [_compile(v, f"{where}[{i}]") for i, v in enumerate(node)]
        if all(it[0] == _CONST for it in items):
            return (_CONST, node)
        return (_ARR, tuple(items))
    return (_CONST, node)


def _eval(node: tuple[Any, ...], data: Any, env: Any) -> Any:
    kind = node[0]
    if kind == _CONST:
        return node[1]
    if kind == _OBJ:
        out = {}
        for key, sub in node[1]:
            k = sub[0]
            if k == _PATH:
                path = sub[1]
                try:
                    out[key] = path.apply(data, env.context_object if path.context else None)
                except PathNotFound:
                    source = env.context_object if path.context else data
                    raise PayloadTemplateEvalError(
                        "States.Runtime",
                        f"The JSONPath '{path.text}' specified for the field '{sub[2]}' could not be "
                        f"found in the input '{_dumps(source)}'",
                    ) from None
            elif k == _CALL:
                try:
                    out[key] = sub[1].evaluate(data, env)
                except IntrinsicError as exc:
                    raise PayloadTemplateEvalError(
                        "States.IntrinsicFailure",
                        f"The value for the field '{sub[2]}' could not be computed: {exc}",
                    ) from None
                except PathNotFound as exc:
                    raise PayloadTemplateEvalError(
                        "States.Runtime",
                        f"The JSONPath '{exc}' in the intrinsic function for the field '{sub[2]}' could not "
                        f"be found in the input '{_dumps(data)}'",
                    ) from None
            else:
                out[key] = _eval(sub, data, env)
        return out
    if kind == _ARR:
        return [_eval(sub, data, env) for sub in node[1]]
    raise AssertionError(kind)


class PayloadTemplate:
    """A compiled Payload Template; ``evaluate(data, env)`` builds the payload.

    ``env`` provides ``context_object`` (the Context Object, for ``$$`` paths) and may
    provide ``new_uuid()`` (for States.UUID).
    """

    __slots__ = ("_root", "source")

    def __init__(self, source: Any, where: str = ""):
        if not isinstance(source, dict):
            raise PayloadTemplateError("", "a Payload Template must be a JSON object")
        self.source = source
        self._root = _compile(source, "")

    def evaluate(self, data: Any, env: Any) -> Any:
        return _eval(self._root, data, env)
