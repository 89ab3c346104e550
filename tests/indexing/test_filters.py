"""How attribute values compare, and the conditions built from a filter's values."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from indexing.filters import (
    AnyOf,
    Between,
    Value,
    any_of,
    attributes_match,
    between,
    comparable,
    comparables,
)

DAY = float(date(2024, 3, 1).toordinal())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (3, Value("number", 3.0)),
        (3.0, Value("number", 3.0)),
        (-0.5, Value("number", -0.5)),
        (True, Value("bool", 1.0)),
        (False, Value("bool", 0.0)),
        ("HR", Value("text", "HR")),
        ("", Value("text", "")),
        ("2024", Value("text", "2024")),
        ("2024-03-01", Value("date", DAY)),
        ("2024-03-01T09:30:00Z", Value("date", DAY)),
        ("2024-03-01 23:59:59+05:00", Value("date", DAY)),
        ("2024-02-30", Value("text", "2024-02-30")),
        ("2024-03-01 draft", Value("text", "2024-03-01 draft")),
        ("２０２４-03-01", Value("text", "２０２４-03-01")),
        (None, None),
        ({"a": 1}, None),
        (["a"], None),
        (float("nan"), None),
        (float("inf"), None),
        (10**400, None),
    ],
    ids=repr,
)
def test_values_compare_as_their_kind(raw: object, expected: Value | None) -> None:
    assert comparable(raw) == expected


def test_a_list_compares_as_each_of_its_values_skipping_what_never_matches() -> None:
    assert comparables(["UK", 2, None, {"x": 1}]) == [Value("text", "UK"), Value("number", 2.0)]
    assert comparables("UK") == [Value("text", "UK")]


@pytest.mark.parametrize(
    ("condition", "value", "matches"),
    [
        (any_of(["HR"]), "HR", True),
        (any_of(["HR"]), "hr", False),
        (any_of(["HR"]), ["IT", "HR"], True),
        (any_of(["UK", "IE"]), "IE", True),
        (any_of([2]), 2.0, True),
        (any_of([2]), "2", False),
        (any_of(["2"]), 2, False),
        (any_of([True]), 1, False),
        (any_of([1]), True, False),
        (any_of(["2024-03-01"]), "2024-03-01T17:00:00", True),
        (any_of(["2024-03-01"]), None, False),
        (between({"gte": "2024-01-01", "lte": "2024-12-31"}), "2024-12-31T23:00:00Z", True),
        (between({"gte": "2024-01-01", "lte": "2024-12-31"}), "2025-01-01", False),
        (between({"gt": "2024-03-01"}), "2024-03-01", False),
        (between({"lt": "2024-03-01"}), "2024-02-29", True),
        (between({"gte": 2, "lt": 5}), 5, False),
        (between({"gte": 2, "lt": 5}), [1, 4.5], True),
        (between({"gte": 2}), "3", False),
        (between({"gte": "2024-01-01"}), 20240101, False),
        (between({"gte": "2024-01-01"}), "next year", False),
    ],
    ids=repr,
)
def test_conditions_match_values_of_their_kind_only(
    condition: AnyOf | Between, value: object, matches: bool
) -> None:
    assert condition.matches(value) is matches


def test_a_range_is_evaluated_over_many_values_at_once() -> None:
    keys = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert between({"gt": 2, "lte": 4}).within(keys).tolist() == [False, False, True, True, False]
    assert between({"lt": 2}).within(keys).tolist() == [True, False, False, False, False]


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ({}, "at least one bound"),
        ({"gte": 1, "gt": 0}, "one lower and one upper bound"),
        ({"lte": 1, "lt": 2}, "one lower and one upper bound"),
        ({"gte": "HR"}, 'gte must be a number or an ISO date (YYYY-MM-DD), not "HR"'),
        ({"lt": True}, "lt must be a number or an ISO date"),
        ({"gte": [1]}, "gte must be a number"),
        ({"gte": 1, "lte": "2024-01-01"}, "both bounds must be numbers, or both dates"),
        ({"gte": 5, "lte": 1}, "the range is empty: gte is above lte"),
        ({"like": 1}, "unknown range operator 'like'"),
    ],
    ids=repr,
)
def test_a_bad_range_says_what_is_wrong(bounds: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        between(bounds)


@pytest.mark.parametrize(
    ("values", "message"),
    [([], "at least one value"), ([None], "null is not a value"), ([{"a": 1}], "is not a value")],
    ids=repr,
)
def test_bad_values_to_equal_say_what_is_wrong(values: list[object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        any_of(values)


def test_a_document_without_the_attribute_meets_no_condition_on_it() -> None:
    conditions = {"department": any_of(["HR"]), "level": between({"gte": 2})}
    assert attributes_match(conditions, {"department": "HR", "level": 3})
    assert not attributes_match(conditions, {"department": "HR"})
    assert attributes_match({}, {})
