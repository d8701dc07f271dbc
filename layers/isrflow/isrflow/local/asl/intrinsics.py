"""JSONPath intrinsic functions (ASL specification, Appendix B), parsed once at load time.

Grammar: ``States.Name(arg, ...)`` where an argument is a ``'string'`` (escapes ``\\'``,
``\\{``, ``\\}``, ``\\\\``), a number, ``null``, ``true``/``false``, a Path (``$.x``, ``$$.x``)
or a nested intrinsic call.

Implemented: States.Format, StringToJson, JsonToString, Array, ArrayPartition,
ArrayContains, ArrayRange, ArrayGetItem, ArrayLength, ArrayUnique, Base64Encode,
Base64Decode, Hash, JsonMerge (shallow only, as AWS), MathAdd, StringSplit, UUID.
States.MathRandom is rejected at load (its bounds semantics are not pinned down here).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from typing import Any, NoReturn

from isrflow.local.asl.jsonpath import Path, PathSyntaxError

_ESC_OPEN, _ESC_CLOSE = "\ue000", "\ue001"  # escaped braces inside a literal template
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z0-9._]+")


class IntrinsicSyntaxError(ValueError):
    """Not a well-formed intrinsic function call (a load-time error)."""


class IntrinsicError(ValueError):
    """An intrinsic function failed while evaluated (``States.IntrinsicFailure``)."""


class _Literal:
    __slots__ = ("marked", "value")

    def __init__(self, value: Any, marked: str | None = None):
        self.value = value
        self.marked = marked  # for strings: the text with escaped braces kept distinguishable

    def evaluate(self, data, env):
        return self.value


class _PathArg:
    __slots__ = ("path",)

    def __init__(self, path: Path):
        self.path = path

    def evaluate(self, data, env):
        return self.path.apply(data, env.context_object if self.path.context else None)


class Call:
    """A parsed intrinsic call; ``evaluate(data, env)`` runs it."""

    __slots__ = ("args", "fn", "name", "text")

    def __init__(self, name: str, args: list, fn: Callable, text: str):
        self.name, self.args, self.fn, self.text = name, args, fn, text

    def evaluate(self, data, env):
        values = [a.evaluate(data, env) for a in self.args]
        try:
            return self.fn(self, values, env)
        except IntrinsicError as exc:
            raise IntrinsicError(f"{self.name}: {exc}") from None


def _is_int(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def _need_int(v: Any, what: str) -> int:
    if not _is_int(v):
        raise IntrinsicError(f"{what} must be an integer, got {json.dumps(v)}")
    return int(v)


def _need(v: Any, typ: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(v, typ) or (isinstance(v, bool) and typ is not bool):
        raise IntrinsicError(f"{what} must be {_TYPE_NAMES.get(typ, str(typ))}, got {json.dumps(v)}")
    return v


_TYPE_NAMES: dict[type | tuple[type, ...], str] = {
    str: "a string",
    list: "an array",
    dict: "an object",
    bool: "a boolean",
}


def _key(v: Any) -> str:
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def _format_value(v: Any) -> str:
    if isinstance(v, str):
        return v
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    raise IntrinsicError(
        f"an argument to format must be a string, number, boolean or null, got {json.dumps(v)}"
    )


def _format(call: Call, args: list, env) -> str:
    template = args[0]
    if not isinstance(template, str):
        raise IntrinsicError("the first argument must be a string")
    first = call.args[0]
    text = first.marked if isinstance(first, _Literal) and first.marked is not None else template
    pieces = text.split("{}")
    if len(pieces) - 1 != len(args) - 1:
        raise IntrinsicError(
            f"the template has {len(pieces) - 1} '{{}}' placeholders but {len(args) - 1} values were given"
        )
    out = [pieces[0]]
    for value, piece in zip(args[1:], pieces[1:], strict=True):  # lengths checked just above
        out.append(_format_value(value))
        out.append(piece)
    return "".join(out).replace(_ESC_OPEN, "{").replace(_ESC_CLOSE, "}")


def _string_to_json(call, args, env):
    s = _need(args[0], str, "the argument")
    try:
        return json.loads(s)
    except ValueError as exc:
        raise IntrinsicError(f"not valid JSON: {exc}") from None


def _json_to_string(call, args, env):
    return json.dumps(args[0], separators=(",", ":"), ensure_ascii=False)


def _array(call, args, env):
    return list(args)


def _array_partition(call, args, env):
    arr = _need(args[0], list, "the first argument")
    size = _need_int(args[1], "the chunk size")
    if size <= 0:
        raise IntrinsicError("the chunk size must be a positive integer")
    return [arr[i : i + size] for i in range(0, len(arr), size)]


def _array_contains(call, args, env):
    arr = _need(args[0], list, "the first argument")
    k = _key(args[1])
    return any(_key(v) == k for v in arr)


def _array_range(call, args, env):
    start, end, step = (_need_int(a, w) for a, w in zip(args, ("start", "end", "step"), strict=False))
    if step == 0:
        raise IntrinsicError("the step must not be 0")
    out = list(range(start, end + (1 if step > 0 else -1), step))
    if len(out) > 1000:
        raise IntrinsicError("the range would have more than 1000 elements")
    return out


def _array_get_item(call, args, env):
    arr = _need(args[0], list, "the first argument")
    i = _need_int(args[1], "the index")
    if not 0 <= i < len(arr):
        raise IntrinsicError(f"index {i} is out of bounds for an array of length {len(arr)}")
    return arr[i]


def _array_length(call, args, env):
    return len(_need(args[0], list, "the argument"))


def _array_unique(call: Call, args: list[Any], env: Any) -> list[Any]:
    seen: set[str] = set()
    out = []
    for v in _need(args[0], list, "the argument"):
        k = _key(v)
        if k not in seen:
            seen.add(k)
            out.append(v)
    return out


def _b64encode(call, args, env):
    s = _need(args[0], str, "the argument")
    if len(s) > 10000:
        raise IntrinsicError("the input is longer than 10000 characters")
    return base64.b64encode(s.encode("utf-8")).decode("ascii")


def _b64decode(call, args, env):
    s = _need(args[0], str, "the argument")
    if len(s) > 10000:
        raise IntrinsicError("the input is longer than 10000 characters")
    try:
        return base64.b64decode(s.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise IntrinsicError(f"not valid base64: {exc}") from None


_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


def _hash(call, args, env):
    data, algorithm = args
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    if len(text) > 10000:
        raise IntrinsicError("the input is longer than 10000 characters")
    if algorithm not in _HASHES:
        raise IntrinsicError(f"unknown algorithm {algorithm!r} (one of {', '.join(_HASHES)})")
    return hashlib.new(_HASHES[algorithm], text.encode("utf-8")).hexdigest()


def _json_merge(call, args, env):
    a = _need(args[0], dict, "the first argument")
    b = _need(args[1], dict, "the second argument")
    if args[2] is not False:
        raise IntrinsicError("only shallow merging (third argument false) is supported, as on AWS")
    out = dict(a)
    out.update(b)
    return out


def _math_add(call, args, env):
    return _need_int(args[0], "the first argument") + _need_int(args[1], "the second argument")


def _string_split(call, args, env):
    s = _need(args[0], str, "the first argument")
    sep = _need(args[1], str, "the delimiter")
    if not sep:
        raise IntrinsicError("the delimiter must not be empty")
    return s.split(sep)


def _uuid(call, args, env):
    return env.new_uuid() if env is not None and hasattr(env, "new_uuid") else str(uuid.uuid4())


# name -> (function, min args, max args or None)
FUNCTIONS: dict[str, tuple[Callable, int, int | None]] = {
    "States.Format": (_format, 1, None),
    "States.StringToJson": (_string_to_json, 1, 1),
    "States.JsonToString": (_json_to_string, 1, 1),
    "States.Array": (_array, 0, None),
    "States.ArrayPartition": (_array_partition, 2, 2),
    "States.ArrayContains": (_array_contains, 2, 2),
    "States.ArrayRange": (_array_range, 3, 3),
    "States.ArrayGetItem": (_array_get_item, 2, 2),
    "States.ArrayLength": (_array_length, 1, 1),
    "States.ArrayUnique": (_array_unique, 1, 1),
    "States.Base64Encode": (_b64encode, 1, 1),
    "States.Base64Decode": (_b64decode, 1, 1),
    "States.Hash": (_hash, 2, 2),
    "States.JsonMerge": (_json_merge, 3, 3),
    "States.MathAdd": (_math_add, 2, 2),
    "States.StringSplit": (_string_split, 2, 2),
    "States.UUID": (_uuid, 0, 0),
}
UNSUPPORTED = {"States.MathRandom": "its bounds and seeding semantics are not reproduced locally"}


class _Parser:
    def __init__(self, text: str):
        self.s = text
        self.i = 0

    def fail(self, msg: str) -> NoReturn:
        raise IntrinsicSyntaxError(f"intrinsic function {self.s!r}: {msg} (at position {self.i})")

    def ws(self):
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def call(self) -> Call:
        self.ws()
        start = self.i
        m = _NAME.match(self.s, self.i)
        if not m:
            self.fail("expected a function name")
        name = m.group(0)
        self.i = m.end()
        if name in UNSUPPORTED:
            self.fail(f"{name} is not supported by the local interpreter: {UNSUPPORTED[name]}")
        if name not in FUNCTIONS:
            self.fail(f"unknown intrinsic function {name!r}")
        self.ws()
        if self.i >= len(self.s) or self.s[self.i] != "(":
            self.fail(f"expected '(' after {name}")
        self.i += 1
        args = []
        self.ws()
        if self.i < len(self.s) and self.s[self.i] == ")":
            self.i += 1
        else:
            while True:
                args.append(self.arg())
                self.ws()
                if self.i >= len(self.s):
                    self.fail("missing ')'")
                c = self.s[self.i]
                self.i += 1
                if c == ")":
                    break
                if c != ",":
                    self.fail(f"expected ',' or ')', found {c!r}")
        fn, lo, hi = FUNCTIONS[name]
        if len(args) < lo or (hi is not None and len(args) > hi):
            want = f"{lo}" if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
            self.fail(f"{name} takes {want} arguments, {len(args)} given")
        call = Call(name, args, fn, self.s[start : self.i])
        if name == "States.Format" and isinstance(args[0], _Literal):
            marked = args[0].marked
            if not isinstance(args[0].value, str) or marked is None:
                self.fail("States.Format: the template must be a string")
            n = marked.count("{}")
            if n != len(args) - 1:
                self.fail(
                    f"States.Format: the template has {n} '{{}}' placeholders but {len(args) - 1} values"
                )
        return call

    def arg(self):
        self.ws()
        if self.i >= len(self.s):
            self.fail("missing argument")
        c = self.s[self.i]
        if c == "'":
            return self.string()
        if c == "$":
            return self.path()
        m = _NUMBER.match(self.s, self.i)
        if m:
            self.i = m.end()
            txt = m.group(0)
            return _Literal(int(txt) if m.group(1) is None and m.group(2) is None else float(txt))
        for word, value in (("null", None), ("true", True), ("false", False)):
            if self.s.startswith(word, self.i) and not _NAME.match(self.s, self.i + len(word)):
                self.i += len(word)
                return _Literal(value)
        return self.call()

    def string(self) -> _Literal:
        self.i += 1
        value, marked = [], []
        while True:
            if self.i >= len(self.s):
                self.fail("unterminated string")
            c = self.s[self.i]
            if c == "\\":
                if self.i + 1 >= len(self.s) or self.s[self.i + 1] not in "'{}\\":
                    self.fail("open escape: only \\', \\{, \\} and \\\\ are allowed")
                nxt = self.s[self.i + 1]
                value.append(nxt)
                marked.append({"{": _ESC_OPEN, "}": _ESC_CLOSE}.get(nxt, nxt))
                self.i += 2
                continue
            if c == "'":
                self.i += 1
                return _Literal("".join(value), "".join(marked))
            value.append(c)
            marked.append(c)
            self.i += 1

    def path(self) -> _PathArg:
        start, depth, quote = self.i, 0, None
        while self.i < len(self.s):
            c = self.s[self.i]
            if quote:
                if c == quote:
                    quote = None
            elif c in "'\"" and depth:
                quote = c
            elif c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
            elif depth == 0 and c in ",)":
                break
            self.i += 1
        text = self.s[start : self.i].strip()
        try:
            return _PathArg(Path(text))
        except PathSyntaxError as exc:
            self.fail(str(exc))


def looks_like_intrinsic(text: str) -> bool:
    return bool(re.match(r"\s*[A-Za-z0-9_.]+\s*\(", text))


def parse_intrinsic(text: str) -> Call:
    """Parse ``States.X(...)``; raises :class:`IntrinsicSyntaxError`."""
    p = _Parser(text)
    call = p.call()
    p.ws()
    if p.i != len(text):
        p.fail("unexpected text after the closing ')'")
    return call
