"""The JSONPath subset the States Language uses, compiled once at load time.

Supported (Jayway semantics, as the ASL specification prescribes):

- ``$`` (the whole document), ``$$`` (the Context Object: ``$$.Execution.Id``, ``$$.Map.Item.Value``)
- child fields ``$.a.b`` and ``$['a']['b c']`` (names may contain ``-``, spaces, ...)
- array indexes ``$.a[0].b``, ``$.a[-1]``
- "Paths" (not Reference Paths) may also select several nodes: slices ``$.a[1:3]``,
  ``$.a[-3:]``, unions ``$.a[0,1]`` / ``$['x','y']`` and wildcards ``$.a[*]`` / ``$.a.*``;
  such a path yields a JSON array of the matches.

Not supported (rejected at load with a clear message): deep scan ``..``, filters ``[?()]``,
script expressions ``[()]``, ``@``.

A Reference Path (ResultPath, ItemsPath, ...) must be definite: fields and indexes only.
"""

from __future__ import annotations

from typing import Any

KEY, INDEX, SLICE, UNION_INDEX, UNION_KEY, WILD = range(6)
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>", "__slots__": ()})()


class PathSyntaxError(ValueError):
    """The text is not a path of the supported subset."""


class PathNotFound(LookupError):
    """A definite path selects nothing in the document."""


class PathSetError(ValueError):
    """A ResultPath cannot be applied to the document (e.g. ``$.x`` on a string)."""


def _parse_int(text: str, where: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise PathSyntaxError(f"{where}: {text.strip()!r} is not an integer") from None


def _split_quoted_names(inner: str, path: str) -> list[str]:
    names: list[str] = []
    i, n = 0, len(inner)
    while i < n:
        while i < n and inner[i] in " \t":
            i += 1
        if i >= n or inner[i] not in "'\"":
            raise PathSyntaxError(f"path {path!r}: bracket names must be quoted")
        quote = inner[i]
        i += 1
        buf = []
        while i < n and inner[i] != quote:
            if inner[i] == "\\" and i + 1 < n:
                i += 1
            buf.append(inner[i])
            i += 1
        if i >= n:
            raise PathSyntaxError(f"path {path!r}: unterminated quoted name")
        names.append("".join(buf))
        i += 1
        while i < n and inner[i] in " \t":
            i += 1
        if i < n:
            if inner[i] != ",":
                raise PathSyntaxError(f"path {path!r}: expected ',' between bracket names")
            i += 1
    return names


def _parse_steps(path: str, start: int) -> list[tuple]:
    steps: list[tuple] = []
    i, n = start, len(path)
    while i < n:
        c = path[i]
        if c == ".":
            if i + 1 < n and path[i + 1] == ".":
                raise PathSyntaxError(f"path {path!r}: deep scan '..' is not supported")
            j = i + 1
            buf = []
            while j < n and path[j] not in ".[":
                if path[j] == "\\" and j + 1 < n:  # $.store\.book
                    j += 1
                buf.append(path[j])
                j += 1
            name = "".join(buf)
            if not name:
                raise PathSyntaxError(f"path {path!r}: empty field name")
            steps.append((WILD,) if name == "*" else (KEY, name))
            i = j
        elif c == "[":
            j, quote = i + 1, None
            while j < n:
                ch = path[j]
                if quote:
                    if ch == "\\":
                        j += 1
                    elif ch == quote:
                        quote = None
                elif ch in "'\"":
                    quote = ch
                elif ch == "]":
                    break
                j += 1
            if j >= n:
                raise PathSyntaxError(f"path {path!r}: unclosed '['")
            inner = path[i + 1 : j].strip()
            if not inner:
                raise PathSyntaxError(f"path {path!r}: empty brackets")
            if inner[0] in "'\"":
                names = _split_quoted_names(inner, path)
                steps.append((KEY, names[0]) if len(names) == 1 else (UNION_KEY, tuple(names)))
            elif inner == "*":
                steps.append((WILD,))
            elif inner[0] in "?(" or "@" in inner:
                raise PathSyntaxError(f"path {path!r}: filter and script expressions are not supported")
            elif ":" in inner:
                parts = inner.split(":")
                if len(parts) > 3:
                    raise PathSyntaxError(f"path {path!r}: bad slice [{inner}]")
                vals = [None if not p.strip() else _parse_int(p, f"path {path!r}") for p in parts]
                while len(vals) < 3:
                    vals.append(None)
                if vals[2] == 0:
                    raise PathSyntaxError(f"path {path!r}: slice step cannot be 0")
                steps.append((SLICE, slice(*vals)))
            elif "," in inner:
                steps.append((UNION_INDEX, tuple(_parse_int(p, f"path {path!r}") for p in inner.split(","))))
            else:
                steps.append((INDEX, _parse_int(inner, f"path {path!r}")))
            i = j + 1
        else:
            raise PathSyntaxError(f"path {path!r}: unexpected character {c!r} at position {i}")
    return steps


class Path:
    """A compiled path. ``context`` is True for ``$$...`` (applies to the Context Object)."""

    __slots__ = ("context", "definite", "is_root", "steps", "text")

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise PathSyntaxError(f"a path must be a string, not {type(text).__name__}")
        if not text.startswith("$"):
            raise PathSyntaxError(f"path {text!r} must begin with '$'")
        self.text = text
        self.context = text.startswith("$$")
        self.steps = tuple(_parse_steps(text, 2 if self.context else 1))
        self.definite = all(s[0] in (KEY, INDEX) for s in self.steps)
        self.is_root = not self.steps and not self.context

    def __repr__(self) -> str:
        return f"Path({self.text!r})"

    def apply(self, data: Any, context_object: Any = MISSING) -> Any:
        """The selected value (a definite path) or the list of matches (any other path).

        ``context_object`` is used for ``$$`` paths. Raises :class:`PathNotFound` when a
        definite path selects nothing.
        """
        if self.context:
            if context_object is MISSING:
                raise PathNotFound(f"{self.text}: no Context Object here")
            data = context_object
        if self.definite:
            cur = data
            for kind, arg in self.steps:
                if kind == KEY:
                    if isinstance(cur, dict) and arg in cur:
                        cur = cur[arg]
                    else:
                        raise PathNotFound(self.text)
                else:
                    if isinstance(cur, list) and -len(cur) <= arg < len(cur):
                        cur = cur[arg]
                    else:
                        raise PathNotFound(self.text)
            return cur
        nodes = [data]
        for step in self.steps:
            kind = step[0]
            out: list = []
            for node in nodes:
                if kind == KEY:
                    if isinstance(node, dict) and step[1] in node:
                        out.append(node[step[1]])
                elif kind == INDEX:
                    if isinstance(node, list) and -len(node) <= step[1] < len(node):
                        out.append(node[step[1]])
                elif kind == SLICE:
                    if isinstance(node, list):
                        out.extend(node[step[1]])
                elif kind == UNION_INDEX:
                    if isinstance(node, list):
                        out.extend(node[k] for k in step[1] if -len(node) <= k < len(node))
                elif kind == UNION_KEY:
                    if isinstance(node, dict):
                        out.extend(node[k] for k in step[1] if k in node)
                else:  # WILD
                    if isinstance(node, dict):
                        out.extend(node.values())
                    elif isinstance(node, list):
                        out.extend(node)
            nodes = out
        return nodes

    def exists(self, data: Any, context_object: Any = MISSING) -> bool:
        try:
            self.apply(data, context_object)
        except PathNotFound:
            return False
        return True

    def assign(self, data: Any, value: Any) -> Any:
        """A copy of ``data`` with ``value`` placed at this (reference) path.

        Intervening objects are created as needed; ``data`` itself is never modified (only
        the containers along the path are copied). Raises :class:`PathSetError`.
        """
        if not self.steps:
            return value
        return self._assign(data, 0, value)

    def _assign(self, node: Any, i: int, value: Any) -> Any:
        kind, arg = self.steps[i]
        last = i == len(self.steps) - 1
        if kind == KEY:
            if node is MISSING:
                node = {}
            if not isinstance(node, dict):
                raise PathSetError(
                    f"cannot set field {arg!r} of a {_json_type(node)} (ResultPath {self.text!r})"
                )
            new = dict(node)
            new[arg] = value if last else self._assign(node.get(arg, MISSING), i + 1, value)
            return new
        if not isinstance(node, list) or not -len(node) <= arg < len(node):
            raise PathSetError(f"index [{arg}] does not exist (ResultPath {self.text!r})")
        new_list = list(node)
        new_list[arg] = value if last else self._assign(node[arg], i + 1, value)
        return new_list


def _json_type(value: Any) -> str:
    if value is MISSING:
        return "missing value"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


ROOT = Path("$")


def compile_path(text: str) -> Path:
    return ROOT if text == "$" else Path(text)


def compile_reference_path(text: str) -> Path:
    """A Reference Path: definite (fields and indexes only)."""
    p = compile_path(text)
    if not p.definite:
        raise PathSyntaxError(f"{text!r} is not a Reference Path (only fields and indexes are allowed)")
    return p
