"""The ``--where`` data query language: parsing, errors with positions, injection, execution."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
import sqlalchemy as sa
from registry_helpers import T0, count, dims, raw_msg, utc

from isrflow.model.errors import QueryError, QueryFieldError, QuerySyntaxError, QueryTypeError
from isrflow.registry import Registry
from isrflow.registry.columns import query_columns
from isrflow.registry.query import And, Compare, InList, Not, Or, Range, compile_where, parse_query

# --- parsing ---------------------------------------------------------------------------------


def test_parse_example_from_the_issue() -> None:
    node = parse_query("instrument = 'HSC' AND exposure = 903334 AND detector IN (0..9, 22)")
    assert node == And(
        And(Compare("instrument", "=", "HSC", 0), Compare("exposure", "=", 903334, 23)),
        InList("detector", (Range(0, 9), 22), False, 45),
    )


def test_precedence_not_and_or_and_parentheses() -> None:
    a = Compare("detector", "=", 1, 0)
    assert parse_query("detector = 1 OR detector = 2 AND NOT detector = 3") == Or(
        a, And(Compare("detector", "=", 2, 16), Not(Compare("detector", "=", 3, 37)))
    )
    assert parse_query("(detector = 1 OR detector = 2) AND detector = 3") == And(
        Or(Compare("detector", "=", 1, 1), Compare("detector", "=", 2, 17)), Compare("detector", "=", 3, 35)
    )


def test_keywords_case_insensitive_and_operators() -> None:
    node = parse_query("detector not in (1, 2) and exptime >= 1.5 or band <> 'r'")
    assert node == Or(
        And(InList("detector", (1, 2), True, 0), Compare("exptime", ">=", 1.5, 27)),
        Compare("band", "!=", "r", 45),
    )
    for op in ("=", "!=", "<", "<=", ">", ">="):
        assert parse_query(f"day_obs {op} 20261119") == Compare("day_obs", op, 20261119, 0)


def test_literals_strings_quotes_times_numbers() -> None:
    assert parse_query("physical_filter = 'it''s'").value == "it's"
    assert parse_query("physical_filter = ''").value == ""
    assert (
        parse_query("physical_filter = '-- not a comment /* */ ; DROP'").value
        == "-- not a comment /* */ ; DROP"
    )
    assert parse_query("exposure_begin > T'2026-11-20T03:00:00'").value == T0
    assert parse_query("exposure_begin > t'2026-11-19T17:00:00-10:00'").value == T0
    assert parse_query("exposure_begin > T'2026-11-20'").value == utc(2026, 11, 20)
    assert parse_query("exposure_begin > T'2026-11-20T03:00:00Z'").value.tzinfo == UTC
    assert parse_query("exptime > 3").value == 3.0
    assert parse_query("exptime < 1e2").value == 100.0
    assert parse_query("detector > -1").value == -1


def test_empty_query_selects_everything() -> None:
    assert parse_query("") is None
    assert parse_query("   ") is None
    assert compile_where(None, {}) is None


# --- errors: every path, with the position ---------------------------------------------------

ERRORS = [
    # (query, error class, position, text in message)
    ("detector = 1; DROP TABLE dataset", QuerySyntaxError, 12, "unexpected character ';'"),
    ("detector = 1 -- comment", QuerySyntaxError, 13, "comments are not allowed"),
    ("detector = 1 /* c */", QuerySyntaxError, 13, "comments are not allowed"),
    ("detector = 1 # c", QuerySyntaxError, 13, "comments are not allowed"),
    ('band = "r"', QuerySyntaxError, 7, "single quotes"),
    ("band = 'r", QuerySyntaxError, 7, "unterminated string"),
    ("band = 'it's'", QuerySyntaxError, 12, "unterminated string"),
    ("detector = 1 DROP TABLE dataset", QuerySyntaxError, 13, "after a complete expression"),
    ("detector = 1 OR", QuerySyntaxError, 15, "expected a field name or '(', found end of query"),
    ("detector", QuerySyntaxError, 8, "expected an operator"),
    ("detector =", QuerySyntaxError, 10, "expected a value for 'detector'"),
    ("detector = detector", QuerySyntaxError, 11, "expected a value"),
    ("(detector = 1", QuerySyntaxError, 13, "expected ')'"),
    ("detector = 1)", QuerySyntaxError, 12, "unexpected ')'"),
    ("detector IN 1", QuerySyntaxError, 12, "'(' after IN"),
    ("detector IN ()", QuerySyntaxError, 13, "empty IN list"),
    ("detector IN (1 2)", QuerySyntaxError, 15, "',' or ')'"),
    ("detector NOT = 1", QuerySyntaxError, 13, "IN after NOT"),
    ("= 1", QuerySyntaxError, 0, "expected a field name"),
    ("detector = 12abc", QuerySyntaxError, 11, "invalid number"),
    ("detector == 1", QuerySyntaxError, 10, "expected a value"),
    ("detector = 1 AND band = 'r' AND", QuerySyntaxError, 31, "found end of query"),
    ("colour = 'red'", QueryFieldError, 0, "unknown field 'colour'"),
    ("band = 'r' AND dataset_id = 1", QueryFieldError, 15, "unknown field 'dataset_id'"),
    ("band = 'r' AND dataset.id = 1", QuerySyntaxError, 22, "unexpected character '.'"),
    ("detector = 'one'", QueryTypeError, 11, "'detector' needs an integer"),
    ("detector = 1.5", QueryTypeError, 11, "'detector' needs an integer"),
    ("band = 3", QueryTypeError, 7, "'band' needs a 'string'"),
    ("exptime = 'long'", QueryTypeError, 10, "'exptime' needs a number"),
    ("exposure_begin > '2026-11-20'", QueryTypeError, 17, "needs a time"),
    ("exposure_begin > T'yesterday'", QueryTypeError, 17, "invalid time"),
    ("band IN ('a'..'c')", QueryTypeError, 9, "ranges a..b are only for integer fields"),
    ("detector IN (9..1)", QueryTypeError, 16, "empty range 9..1"),
    ("detector IN (1..'x')", QueryTypeError, 16, "needs an integer"),
    ("instrument = T'2026-11-20'", QueryTypeError, 13, "needs a 'string'"),
]


@pytest.mark.parametrize(("query", "error", "position", "text"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_point_at_the_position(query: str, error: type[QueryError], position: int, text: str) -> None:
    with pytest.raises(error) as info:
        parse_query(query)
    exc = info.value
    assert exc.position == position, (exc.position, str(exc))
    assert text in str(exc)
    assert f"at position {position}" in str(exc)
    assert exc.pointer().splitlines() == [query, " " * position + "^"]


def test_unknown_field_suggestion() -> None:
    with pytest.raises(QueryFieldError, match="did you mean 'detector'"):
        parse_query("detectr = 1")


def test_non_string_query_is_an_error() -> None:
    with pytest.raises(QueryError):
        parse_query(42)  # type: ignore[arg-type]


def test_tokenizer_never_lets_sql_through() -> None:
    hostile = [
        "' OR 1=1 --",
        "1; SELECT pg_sleep(10)",
        "detector = 1 UNION SELECT * FROM dataset",
        "band = 'x' || 'y'",
        "detector = 0x10",
        "detector = @x",
        "band = `r`",
        "detector = $1",
        "band = E'\\x27'",
        "detector = 1\x00",
    ]
    for q in hostile:
        with pytest.raises(QueryError):
            parse_query(q)


# --- compilation and execution on both engines -----------------------------------------------


def test_compiled_sql_has_only_bound_parameters() -> None:
    columns, _ = query_columns()
    expr = compile_where("band = 'r''; DROP TABLE dataset; --' AND detector IN (1..3, 7)", columns)
    sql = str(expr.compile(compile_kwargs={}))
    assert "DROP" not in sql and "--" not in sql
    params = expr.compile().params
    assert "r'; DROP TABLE dataset; --" in params.values()


@pytest.fixture
def populated(registry: Registry) -> Registry:
    msgs = dims(
        detectors=tuple(range(12)),
        exposures={
            100: (T0, "HSC-R"),
            101: (T0 + timedelta(hours=1), "HSC-G"),
            102: (T0 + timedelta(days=1), "HSC-R"),
        },
    )
    msgs += [raw_msg(e, d) for e in (100, 101, 102) for d in range(12)]
    registry.apply(msgs)
    return registry


def _keys(refs) -> set[tuple[int, int]]:
    return {(r.data_id["exposure"], r.data_id["detector"]) for r in refs}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("instrument = 'HSC' AND exposure = 100 AND detector IN (0..2, 9)", {(100, d) for d in (0, 1, 2, 9)}),
        ("detector_name = 'D3' AND physical_filter = 'HSC-R'", {(100, 3), (102, 3)}),
        ("band = 'g' AND detector < 2", {(101, 0), (101, 1)}),
        ("exposure_begin >= T'2026-11-20T04:00:00' AND detector = 0", {(101, 0), (102, 0)}),
        ("exposure_begin > T'2026-11-20T04:00:00' AND detector = 0", {(102, 0)}),
        ("NOT (exposure IN (100, 101)) AND detector NOT IN (0..10)", {(102, 11)}),
        (
            "day_obs = 20261119 AND exptime > 29.5 AND obs_type = 'science' AND detector = 5 "
            "AND exposure != 101",
            {(100, 5), (102, 5)},
        ),
        ("instrument = 'HSC''; DROP TABLE dataset; --'", set()),
        ("physical_filter = '-- /* */'", set()),
    ],
)
def test_queries_select_the_right_datasets(populated: Registry, where: str, expected: set) -> None:
    assert _keys(populated.query_datasets("raw", where=where)) == expected
    assert count(populated, "dataset") == 36  # nothing was dropped or changed


def test_query_error_from_registry_read(populated: Registry) -> None:
    with pytest.raises(QuerySyntaxError, match="position 12"):
        populated.query_datasets("raw", where="detector = 1; DROP TABLE dataset")
    with populated.engine.connect() as conn:
        assert sa.inspect(conn).has_table("dataset")


def test_field_not_available_in_a_context_is_an_error_with_position() -> None:
    columns, _ = query_columns()
    with pytest.raises(QueryFieldError, match="'band' cannot be used here at position 16"):
        compile_where("detector = 1 OR band = 'r'", {"detector": columns["detector"]})
