"""The data query language of ``--where``: text -> tokens -> AST -> SQLAlchemy expression.

Grammar (keywords case-insensitive)::

    query     := [ or_expr ] EOF
    or_expr   := and_expr ( OR and_expr )*
    and_expr  := not_expr ( AND not_expr )*
    not_expr  := NOT not_expr | '(' or_expr ')' | predicate
    predicate := FIELD op literal | FIELD [NOT] IN '(' item ( ',' item )* ')'
    op        := '=' | '!=' | '<>' | '<' | '<=' | '>' | '>='
    item      := literal | INTEGER '..' INTEGER          (inclusive integer range)
    literal   := NUMBER | 'string' | T'ISO time'

Strings are single-quoted; a quote inside is doubled (``'it''s'``). Times ``T'2026-11-20T03:00:00'``
are UTC (an explicit offset is converted; a date alone is midnight UTC). Fields and their
types are in :data:`FIELDS`. Nothing in the text is ever turned into SQL: literals become
bound parameters and field names are looked up in a fixed table. Every error is a
:class:`~isrflow.model.errors.QueryError` carrying the 0-based position of the offending character.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from isrflow.model.errors import QueryError, QueryFieldError, QuerySyntaxError, QueryTypeError

#: Query fields -> value type ("int", "float", "str", "time").
FIELDS: dict[str, str] = {
    "instrument": "str",
    "detector": "int",
    "detector_name": "str",
    "exposure": "int",
    "obs_type": "str",
    "physical_filter": "str",
    "band": "str",
    "day_obs": "int",
    "exptime": "float",
    "exposure_begin": "time",
}

_KEYWORDS = {"AND", "OR", "NOT", "IN"}
#: The deepest nesting of parentheses and NOTs a query may have (deeper: QuerySyntaxError).
MAX_DEPTH = 64
#: The most conditions (predicates, and ranges inside IN lists) and IN-list values a query may hold;
#: databases refuse deeper expression trees (SQLite: depth 1000) and more bound parameters.
MAX_CONDITIONS = 256
MAX_IN_VALUES = 1000
#: Integer literals must fit a signed 64-bit database column.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_OPS = ("<=", ">=", "!=", "<>", "=", "<", ">")


# --- tokens ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # IDENT KEYWORD NUMBER STRING TIME OP LPAREN RPAREN COMMA RANGE EOF
    value: Any
    pos: int
    text: str


_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _read_string(query: str, start: int) -> tuple[str, int]:
    """Read a quoted string whose opening quote is at ``start``; return (value, end offset)."""
    i = start + 1
    out = []
    while i < len(query):
        ch = query[i]
        if ch == "'":
            if i + 1 < len(query) and query[i + 1] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise QuerySyntaxError(
        "unterminated string (strings are 'single-quoted', a quote inside is doubled)", query, start
    )


def _parse_time(text: str, query: str, pos: int) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise QueryTypeError(
            f"invalid time {text!r} (expected ISO 8601, e.g. T'2026-11-20T03:00:00')", query, pos
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _ascii_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


def _number(text: str, integer: bool, query: str, pos: int) -> int | float:
    """A numeric literal; integers must fit 64 bits and floats must be finite (QueryTypeError)."""
    if integer:
        digits = text.lstrip("-")
        number = int(text) if len(digits) <= 20 else None  # int() of thousands of digits is refused by Python
        if number is None or not INT_MIN <= number <= INT_MAX:
            raise QueryTypeError(
                f"integer {text[:24]}{'...' if len(text) > 24 else ''} is out of the 64-bit range", query, pos
            )
        return number
    real = float(text)
    if not math.isfinite(real):
        raise QueryTypeError(f"number {text[:24]} is out of range", query, pos)
    return real


def tokenize(query: str) -> list[Token]:
    """Split a query into tokens; QuerySyntaxError at the first character that fits no token."""
    tokens: list[Token] = []
    i = 0
    n = len(query)
    value: Any
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "'":
            value, end = _read_string(query, i)
            tokens.append(Token("STRING", value, i, query[i:end]))
            i = end
            continue
        if ch in "Tt" and i + 1 < n and query[i + 1] == "'":
            value, end = _read_string(query, i + 1)
            tokens.append(Token("TIME", _parse_time(value, query, i), i, query[i:end]))
            i = end
            continue
        if _ascii_digit(ch) or (ch == "-" and i + 1 < n and _ascii_digit(query[i + 1])):
            m = _NUMBER.match(query, i)
            if m is None:
                raise QuerySyntaxError(f"invalid number starting with {ch!r}", query, i)
            text = m.group(0)
            value = _number(text, m.group(1) is None and m.group(2) is None, query, i)
            end = m.end()
            if end < n and (query[end].isalpha() or query[end] == "_"):
                raise QuerySyntaxError(f"invalid number {query[i : end + 1]!r}", query, i)
            tokens.append(Token("NUMBER", value, i, text))
            i = end
            continue
        if (ch.isascii() and ch.isalpha()) or ch == "_":
            m = _IDENT.match(query, i)
            if m is None:
                raise QuerySyntaxError(f"unexpected character {ch!r}", query, i)
            word = m.group(0)
            kind = "KEYWORD" if word.upper() in _KEYWORDS else "IDENT"
            tokens.append(Token(kind, word.upper() if kind == "KEYWORD" else word, i, word))
            i = m.end()
            continue
        if query.startswith("..", i):
            tokens.append(Token("RANGE", "..", i, ".."))
            i += 2
            continue
        op = next((o for o in _OPS if query.startswith(o, i)), None)
        if op is not None:
            tokens.append(Token("OP", "!=" if op == "<>" else op, i, op))
            i += len(op)
            continue
        if ch in "(),":
            tokens.append(Token({"(": "LPAREN", ")": "RPAREN", ",": "COMMA"}[ch], ch, i, ch))
            i += 1
            continue
        if query.startswith("--", i) or query.startswith("/*", i) or ch == "#":
            raise QuerySyntaxError("comments are not allowed", query, i)
        if ch == '"':
            raise QuerySyntaxError("unexpected '\"' (strings use single quotes)", query, i)
        raise QuerySyntaxError(f"unexpected character {ch!r}", query, i)
    tokens.append(Token("EOF", None, n, ""))
    return tokens


# --- AST -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """An inclusive integer range ``low..high`` inside an IN list."""

    low: int
    high: int


@dataclass(frozen=True)
class Compare:
    field: str
    op: str
    value: Any
    pos: int


@dataclass(frozen=True)
class InList:
    field: str
    items: tuple[Any, ...]  # literals and Range
    negated: bool
    pos: int


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    operand: Node


Node = Compare | InList | And | Or | Not


# --- parser ----------------------------------------------------------------------------------


def _describe(tok: Token) -> str:
    return "end of query" if tok.kind == "EOF" else repr(tok.text)


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.i = 0
        self.depth = 0
        self.conditions = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _is(self, kind: str, value: Any = None) -> bool:
        return self.tok.kind == kind and (value is None or self.tok.value == value)

    def _fail(self, what: str, tok: Token | None = None) -> QuerySyntaxError:
        tok = tok or self.tok
        return QuerySyntaxError(f"expected {what}, found {_describe(tok)}", self.query, tok.pos)

    def parse(self) -> Node | None:
        if self._is("EOF"):
            return None
        node = self._or()
        if not self._is("EOF"):
            raise QuerySyntaxError(
                f"unexpected {_describe(self.tok)} after a complete expression "
                "(combine conditions with AND / OR)",
                self.query,
                self.tok.pos,
            )
        return node

    def _or(self) -> Node:
        node = self._and()
        while self._is("KEYWORD", "OR"):
            self._next()
            node = Or(node, self._and())
        return node

    def _and(self) -> Node:
        node = self._not()
        while self._is("KEYWORD", "AND"):
            self._next()
            node = And(node, self._not())
        return node

    def _not(self) -> Node:
        if not (self._is("KEYWORD", "NOT") or self._is("LPAREN")):
            return self._predicate()
        if self.depth >= MAX_DEPTH:
            raise QuerySyntaxError(
                f"nested more than {MAX_DEPTH} deep (parentheses and NOT)", self.query, self.tok.pos
            )
        self.depth += 1
        try:
            if self._is("KEYWORD", "NOT"):
                self._next()
                return Not(self._not())
            self._next()
            node = self._or()
            if not self._is("RPAREN"):
                raise self._fail("')'")
            self._next()
            return node
        finally:
            self.depth -= 1

    def _field(self) -> tuple[str, Token]:
        tok = self.tok
        if tok.kind != "IDENT":
            raise self._fail("a field name or '('")
        if tok.value not in FIELDS:
            close = difflib.get_close_matches(tok.value, FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (fields: {', '.join(FIELDS)})"
            raise QueryFieldError(f"unknown field {tok.value!r}{hint}", self.query, tok.pos)
        self._next()
        return tok.value, tok

    def _count(self, tok: Token) -> None:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise QuerySyntaxError(f"more than {MAX_CONDITIONS} conditions", self.query, tok.pos)

    def _predicate(self) -> Node:
        self._count(self.tok)
        field, ftok = self._field()
        negated = False
        if self._is("KEYWORD", "NOT"):
            self._next()
            if not self._is("KEYWORD", "IN"):
                raise self._fail("IN after NOT")
            negated = True
        if self._is("KEYWORD", "IN"):
            self._next()
            return self._in_list(field, ftok, negated)
        if not self._is("OP"):
            raise self._fail(f"an operator (=, !=, <, <=, >, >=, IN) after {field!r}")
        op = self._next().value
        value = self._literal(field)
        return Compare(field, op, value, ftok.pos)

    def _in_list(self, field: str, ftok: Token, negated: bool) -> Node:
        if not self._is("LPAREN"):
            raise self._fail("'(' after IN")
        self._next()
        if self._is("RPAREN"):
            raise QuerySyntaxError("empty IN list", self.query, self.tok.pos)
        items: list[Any] = []
        while True:
            start = self.tok
            value = self._literal(field)
            if self._is("RANGE"):
                self._next()
                end_tok = self.tok
                if FIELDS[field] != "int":
                    raise QueryTypeError(
                        f"ranges a..b are only for integer fields, not {field!r}", self.query, start.pos
                    )
                high = self._literal(field)
                if value > high:
                    raise QueryTypeError(f"empty range {value}..{high}", self.query, end_tok.pos)
                self._count(start)
                items.append(Range(value, high))
            else:
                items.append(value)
            if len(items) > MAX_IN_VALUES:
                raise QuerySyntaxError(
                    f"more than {MAX_IN_VALUES} values in one IN list", self.query, start.pos
                )
            if self._is("COMMA"):
                self._next()
                continue
            if self._is("RPAREN"):
                self._next()
                break
            raise self._fail("',' or ')' in the IN list")
        return InList(field, tuple(items), negated, ftok.pos)

    def _literal(self, field: str) -> Any:
        tok = self.tok
        kind = FIELDS[field]
        if tok.kind not in ("NUMBER", "STRING", "TIME"):
            raise self._fail(f"a value for {field!r}")
        value = tok.value
        if kind == "int":
            if tok.kind != "NUMBER" or not isinstance(value, int):
                raise QueryTypeError(f"{field!r} needs an integer, got {tok.text}", self.query, tok.pos)
        elif kind == "float":
            if tok.kind != "NUMBER":
                raise QueryTypeError(f"{field!r} needs a number, got {tok.text}", self.query, tok.pos)
            value = float(value)
        elif kind == "str":
            if tok.kind != "STRING":
                raise QueryTypeError(f"{field!r} needs a 'string', got {tok.text}", self.query, tok.pos)
        elif kind == "time" and tok.kind != "TIME":
            raise QueryTypeError(
                f"{field!r} needs a time like T'2026-11-20T03:00:00', got {tok.text}", self.query, tok.pos
            )
        self._next()
        return value


def parse_query(query: str) -> Node | None:
    """Parse a data query into an AST (None for an empty query: select everything)."""
    if not isinstance(query, str):
        raise QueryError(f"a query must be a string, not {type(query).__name__}")
    return _Parser(query).parse()


# --- compiler --------------------------------------------------------------------------------


def compile_node(node: Node, columns: Mapping[str, Any], query: str = "") -> Any:
    """Turn an AST into a SQLAlchemy boolean expression over ``columns`` (field -> column).

    All values become bound parameters. A field the mapping lacks is a QueryFieldError.
    """
    import sqlalchemy as sa

    def col(field: str, pos: int) -> Any:
        try:
            return columns[field]
        except KeyError:
            raise QueryFieldError(f"field {field!r} cannot be used here", query, pos) from None

    def chain(n: And | Or) -> list[Node]:
        """The operands of a left-deep run of one operator, without recursion (a AND b AND ... z)."""
        kind, operands = type(n), []
        node: Node = n
        while isinstance(node, kind):
            operands.append(node.right)
            node = node.left
        operands.append(node)
        return operands[::-1]

    def walk(n: Node) -> Any:
        if isinstance(n, And):
            return sa.and_(*(walk(x) for x in chain(n)))
        if isinstance(n, Or):
            return sa.or_(*(walk(x) for x in chain(n)))
        if isinstance(n, Not):
            return sa.not_(walk(n.operand))
        if isinstance(n, Compare):
            c = col(n.field, n.pos)
            return {
                "=": c.__eq__,
                "!=": c.__ne__,
                "<": c.__lt__,
                "<=": c.__le__,
                ">": c.__gt__,
                ">=": c.__ge__,
            }[n.op](n.value)
        if isinstance(n, InList):
            c = col(n.field, n.pos)
            values = [v for v in n.items if not isinstance(v, Range)]
            parts = [c.in_(values)] if values else []
            parts += [c.between(r.low, r.high) for r in n.items if isinstance(r, Range)]
            expr = parts[0] if len(parts) == 1 else sa.or_(*parts)
            return sa.not_(expr) if n.negated else expr
        raise TypeError(f"not a query node: {n!r}")

    return walk(node)


def compile_where(query: str | None, columns: Mapping[str, Any]) -> Any | None:
    """Parse and compile a ``--where`` query; None when the query is empty or None."""
    if query is None:
        return None
    node = parse_query(query)
    return None if node is None else compile_node(node, columns, query)


__all__ = [
    "FIELDS",
    "And",
    "Compare",
    "InList",
    "Not",
    "Or",
    "Range",
    "Token",
    "compile_node",
    "compile_where",
    "parse_query",
    "tokenize",
]
