"""Filters in requests: the language, its validation (422 naming the field), and routing,
answers and listings narrowed by them, never beyond what the caller's groups allow."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from indexing.filters import any_of, between
from indexing.pool import Pool
from service.filters import json_or_text, parse_assignments, parse_condition, parse_expressions
from service.keys import Keys

LEAVE = "leave days holiday absence"
PAY = "pay review salary bands"
#: Attributes given to sample documents by title (the pay review is restricted to group hr).
ATTRIBUTES: dict[str, dict[str, Any]] = {
    "Annual Leave Policy": {"department": "HR", "region": ["UK", "IE"], "effective": "2024-04-01"},
    "Sickness Absence Policy": {"department": "HR", "region": "UK", "effective": "2023-01-01"},
    "Parental Leave Policy": {"department": "HR", "region": "IE", "effective": "2025-01-01"},
    "Pay Review Procedure": {"department": "HR", "region": "IE", "effective": "2024-06-01"},
    "Expenses Policy": {"department": "Finance", "effective": "2024-02-01"},
}


# ------------------------------------------------------------------------------ the language


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("HR", "HR"),
        ("2024", 2024),
        ("2.5", 2.5),
        ("true", True),
        ('"2024"', "2024"),
        ('["UK", "IE"]', ["UK", "IE"]),
        ("2024-01-01", "2024-01-01"),
        ("NaN", "NaN"),
        ("", ""),
    ],
    ids=repr,
)
def test_a_value_is_json_when_it_parses_and_text_otherwise(text: str, value: Any) -> None:
    assert json_or_text(text) == value


def test_expressions_build_equals_in_and_ranges() -> None:
    conditions = parse_expressions(
        [
            "department=HR",
            "region=UK",
            " region = IE ",
            "effective>=2024-01-01",
            "effective<2025-01-01",
            "level>2",
        ]
    )
    assert conditions == {
        "department": any_of(["HR"]),
        "region": any_of(["UK", "IE"]),
        "effective": between({"gte": "2024-01-01", "lt": "2025-01-01"}),
        "level": between({"gt": 2}),
    }


@pytest.mark.parametrize(
    ("expressions", "message"),
    [
        (["department"], "is not NAME=VALUE"),
        (["=HR"], "is not NAME=VALUE"),
        (["level>=2", "level>=3"], "level>= is given twice"),
        (["level=2", "level>=3"], "level: give values (=) or a range"),
        (["effective>=soon"], "effective: gte must be a number or an ISO date"),
        (["level>5", "level<1"], "level: the range is empty"),
        (['region=["UK"]'], "region: .* is not a value to compare with"),
        (["region=null"], "region: null is not a value"),
    ],
    ids=repr,
)
def test_bad_expressions_say_what_is_wrong(expressions: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_expressions(expressions)


def test_assignments_set_values_and_a_repeated_name_makes_a_list() -> None:
    assert parse_assignments(["department=HR", "year=2024", "region=UK", "region=IE"]) == {
        "department": "HR",
        "year": 2024,
        "region": ["UK", "IE"],
    }
    with pytest.raises(ValueError, match="is not NAME=VALUE"):
        parse_assignments(["level>=2"])


def test_a_json_condition_is_a_value_in_or_a_range() -> None:
    assert parse_condition("HR") == any_of(["HR"])
    assert parse_condition({"in": ["UK", "IE"]}) == any_of(["UK", "IE"])
    assert parse_condition({"gte": 1, "lt": 3}) == between({"gte": 1, "lt": 3})


# ---------------------------------------------------------------------------- over HTTP


@pytest.fixture
def described(client: TestClient, sample_pool: Pool) -> dict[str, str]:
    """Give sample documents attributes (as an admin would, by PUT); their ids by title."""
    docs = {d.title: d.id for d in sample_pool.store.list_documents(limit=100)[0]}
    for title, attributes in ATTRIBUTES.items():
        response = client.put(f"/v1/documents/{docs[title]}", json={"attributes": attributes})
        assert response.status_code == 200, response.text
    return docs


def titles(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {d["title"] for d in response.json()["documents"]}


def route(
    client: TestClient, question: str, headers: dict[str, str] | None = None, **body: Any
) -> set[str]:
    request = {"question": question, "top_k": 10, **body}
    return titles(client.post("/v1/route", json=request, headers=headers))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"attributes": {"region": "IE"}}, {"Annual Leave Policy", "Parental Leave Policy"}),
        (
            {"attributes": {"region": {"in": ["UK"]}, "effective": {"gte": "2024-01-01"}}},
            {"Annual Leave Policy"},
        ),
        ({"attributes": {"effective": {"lt": "2024-01-01"}}}, {"Sickness Absence Policy"}),
        ({"attributes": {"department": "Finance"}}, {"Expenses Policy"}),
        ({"attributes": {"department": "Legal"}}, set()),
        ({"tags": ["family"], "attributes": {"department": "HR"}}, {"Parental Leave Policy"}),
    ],
    ids=[
        "equals-or-list-element",
        "in-and-date-range",
        "before-a-date",
        "a-weak-match-that-passes-the-filter",
        "nothing-passes",
        "tags-too",
    ],
)
def test_filters_narrow_routing(
    client: TestClient, described: dict[str, str], filters: dict[str, Any], expected: set[str]
) -> None:
    assert route(client, LEAVE, filters=filters) == expected


def test_the_top_level_tags_still_filter_and_combine_with_filters(
    client: TestClient, described: dict[str, str]
) -> None:
    assert route(client, LEAVE, tags=["family"]) == {"Parental Leave Policy"}
    ie = {"attributes": {"region": "IE"}}
    assert route(client, LEAVE, tags=["leave"], filters=ie) == {
        "Annual Leave Policy",
        "Parental Leave Policy",
    }
    assert route(client, LEAVE, tags=["absence"], filters=ie) == set()


def test_a_filter_narrows_the_documents_an_answer_is_drawn_from(
    client: TestClient, described: dict[str, str]
) -> None:
    body = {"question": LEAVE, "top_k": 10, "filters": {"attributes": {"region": "IE"}}}
    answer = client.post("/v1/ask", json=body)
    assert titles(answer) == {"Annual Leave Policy", "Parental Leave Policy"}
    cited = {c["document_title"] for c in answer.json()["citations"]}
    assert cited <= {"Annual Leave Policy", "Parental Leave Policy"}


def test_a_restricted_document_never_routes_to_a_caller_outside_its_groups(
    client: TestClient, described: dict[str, str], sample_pool: Pool
) -> None:
    hr = {"attributes": {"department": "HR", "region": "IE"}}
    assert "Pay Review Procedure" not in route(client, PAY, filters=hr)  # open: public only
    keys = Keys(sample_pool.store)
    user = {"Authorization": f"Bearer {keys.create(role='user')[1]}"}
    hr_user = {"Authorization": f"Bearer {keys.create(role='user', groups=['hr'])[1]}"}
    assert "Pay Review Procedure" not in route(client, PAY, user, filters=hr)
    assert "Pay Review Procedure" in route(client, PAY, hr_user, filters=hr)
    answer = client.post("/v1/ask", json={"question": PAY, "filters": hr}, headers=user)
    assert "Pay Review Procedure" not in titles(answer)


def test_changed_attributes_reach_routing_at_once(
    client: TestClient, described: dict[str, str]
) -> None:
    ie = {"attributes": {"region": "IE"}}
    sick = described["Sickness Absence Policy"]
    assert "Sickness Absence Policy" not in route(client, LEAVE, filters=ie)
    client.put(f"/v1/documents/{sick}", json={"attributes": {"region": ["IE"]}})
    assert "Sickness Absence Policy" in route(client, LEAVE, filters=ie)


BAD_FILTERS: list[tuple[Any, str, str]] = [
    ({"attributes": {"region": {"like": "U%"}}}, "filters.attributes.region", "unknown operator"),
    ({"attributes": {"region": {"in": []}}}, "filters.attributes.region", "non-empty list"),
    ({"attributes": {"region": {"in": "UK"}}}, "filters.attributes.region", "non-empty list"),
    ({"attributes": {"region": {}}}, "filters.attributes.region", "an empty condition"),
    ({"attributes": {"region": ["UK", "IE"]}}, "filters.attributes.region", '{"in": [...]}'),
    ({"attributes": {"region": None}}, "filters.attributes.region", "null is not a value"),
    ({"attributes": {"region": {"a": 1}}}, "filters.attributes.region", "unknown operator"),
    ({"attributes": {"region": {"in": [["UK"]]}}}, "filters.attributes.region", "not a value"),
    ({"attributes": {"n": {"in": [1], "gte": 0}}}, "filters.attributes.n", "cannot be combined"),
    ({"attributes": {"n": {"gte": "soon"}}}, "filters.attributes.n", "number or an ISO date"),
    ({"attributes": {"n": {"gte": 1, "gt": 0}}}, "filters.attributes.n", "one lower"),
    ({"attributes": {"n": {"gte": 9, "lte": 1}}}, "filters.attributes.n", "the range is empty"),
    ({"attributes": {"": "x"}}, "filters.attributes..[key]", "at least 1 character"),
    ({"attributes": {"region": "UK"}, "groups": ["hr"]}, "filters.groups", "not permitted"),
    ({"attributes": "region=UK"}, "filters.attributes", "valid dictionary"),
]


@pytest.mark.parametrize("path", ["/v1/route", "/v1/ask"])
@pytest.mark.parametrize(
    ("filters", "where", "message"), BAD_FILTERS, ids=[m for _, _, m in BAD_FILTERS]
)
def test_bad_filters_are_422_naming_the_field(
    client: TestClient, path: str, filters: Any, where: str, message: str
) -> None:
    response = client.post(path, json={"question": LEAVE, "filters": filters})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert error["message"].startswith(f"body.{where}: ")
    assert message in error["message"]


def test_listings_filter_by_attributes(client: TestClient, described: dict[str, str]) -> None:
    def listed(*conditions: str) -> set[str]:
        query = "&".join(f"attribute={c}" for c in conditions)
        response = client.get(f"/v1/documents?limit=100&{query}")
        assert response.status_code == 200, response.text
        return {d["title"] for d in response.json()["data"]}

    assert listed("region=IE") == {
        "Annual Leave Policy",
        "Parental Leave Policy",
        "Pay Review Procedure",  # the service is open: whoever may change documents sees all
    }
    assert listed("department=HR", "effective%3E%3D2024-05-01") == {
        "Parental Leave Policy",
        "Pay Review Procedure",
    }
    assert listed("department=Legal") == set()


@pytest.mark.parametrize(
    ("query", "message"),
    [("attribute=region", "is not NAME"), ("attribute=n%3E%3Dsoon", "number or an ISO date")],
)
def test_bad_listing_filters_are_422(client: TestClient, query: str, message: str) -> None:
    response = client.get(f"/v1/documents?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith("query.attribute: ")
    assert message in response.json()["error"]["message"]
