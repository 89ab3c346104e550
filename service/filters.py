"""The filter language of ``/v1/route``, ``/v1/ask``, ``/v1/documents`` and the CLI.

In a request body, ``filters`` is ``{"tags": [...], "attributes": {NAME: CONDITION}}`` where a
condition is a value the attribute must equal, ``{"in": [values]}`` (any of them), or a range
``{"gte"|"gt": low, "lte"|"lt": high}`` (either end may be left out) over numbers or ISO dates.
On the command line and in query strings a condition is ``NAME=VALUE`` (repeat the name for any
of several values) or ``NAME>=VALUE``, ``NAME>VALUE``, ``NAME<=VALUE``, ``NAME<VALUE``; a VALUE
is read as JSON when it is JSON (``2024`` is a number, ``true`` a boolean, ``"2024"`` text) and
as text otherwise. How values compare is ``indexing.filters``'s business.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Query
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

from indexing.filters import RANGE_OPERATORS, Condition, Filters, any_of, between

MAX_CONDITIONS = 20
MAX_VALUES = 100
MAX_NAME_CHARS = 100

_SCALAR_SCHEMA: dict[str, Any] = {"type": ["string", "number", "boolean"]}
_CONDITION_SCHEMA: dict[str, Any] = {
    "description": (
        "A value the attribute must equal; or {in: [values]}; or a range over numbers or ISO "
        "dates (YYYY-MM-DD) with gte or gt and/or lte or lt."
    ),
    "anyOf": [
        _SCALAR_SCHEMA,
        {
            "type": "object",
            "properties": {
                "in": {"type": "array", "items": _SCALAR_SCHEMA, "minItems": 1},
                **{op: {"type": ["string", "number"]} for op in RANGE_OPERATORS},
            },
            "additionalProperties": False,
        },
    ],
}


def parse_condition(raw: object) -> Condition:
    """One attribute's condition from JSON; ``ValueError`` saying what is wrong."""
    if isinstance(raw, list):
        raise ValueError('for any of several values write {"in": [...]}')
    if not isinstance(raw, dict):
        return any_of([raw])
    unknown = [op for op in raw if op != "in" and op not in RANGE_OPERATORS]
    if unknown:
        raise ValueError(f"unknown operator {unknown[0]!r}; use in, gte, gt, lte or lt")
    if not raw:
        raise ValueError("an empty condition: give a value, or in, gte, gt, lte or lt")
    if "in" not in raw:
        return between(raw)
    if len(raw) > 1:
        raise ValueError("'in' cannot be combined with a range")
    values = raw["in"]
    if not isinstance(values, list) or not values:
        raise ValueError("'in' takes a non-empty list of values")
    if len(values) > MAX_VALUES:
        raise ValueError(f"'in' takes at most {MAX_VALUES} values")
    return any_of(values)


def _valid_condition(raw: Any) -> Any:
    try:
        parse_condition(raw)
    except ValueError as exc:
        raise PydanticCustomError("invalid_filter", str(exc)) from None
    return raw


Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ConditionJSON = Annotated[Any, AfterValidator(_valid_condition), WithJsonSchema(_CONDITION_SCHEMA)]


class RequestFilters(BaseModel):
    """Narrow routing to documents with every tag and meeting every attribute condition."""

    model_config = ConfigDict(extra="forbid")

    tags: list[Tag] = Field(default_factory=list, max_length=20)
    attributes: dict[Name, ConditionJSON] = Field(
        default_factory=dict,
        max_length=MAX_CONDITIONS,
        examples=[{"department": "HR", "effective": {"gte": "2024-01-01"}}],
    )

    def parsed(self) -> Filters:
        return Filters(
            tags=frozenset(self.tags),
            attributes={name: parse_condition(raw) for name, raw in self.attributes.items()},
        )


def request_filters(filters: RequestFilters | None) -> Filters | None:
    """A request's filters as routing takes them (None when it gave none)."""
    return None if filters is None else filters.parsed()


# ------------------------------------------------------------- NAME=VALUE, NAME>=VALUE, ...

_EXPRESSION = re.compile(r"\s*(?P<name>[^=<>]*?)\s*(?P<op>>=|<=|=|>|<)\s*(?P<value>.*?)\s*")
_SYMBOLS = {">=": "gte", ">": "gt", "<=": "lte", "<": "lt"}


def json_or_text(text: str) -> Any:
    """``text`` as JSON if it is JSON (numbers, true/false, quoted text, lists), else as text."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except ValueError:
        return text


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")  # NaN and Infinity stay text


def _split(expression: str, *, operators: str) -> tuple[str, str, str]:
    match = _EXPRESSION.fullmatch(expression)
    if match is None or not match["name"] or match["op"] not in operators.split():
        shapes = " or ".join(f"NAME{op}VALUE" for op in operators.split())
        raise ValueError(f"{expression!r} is not {shapes}")
    return match["name"], match["op"], match["value"]


def parse_expressions(expressions: Sequence[str]) -> dict[str, Condition]:
    """Conditions from ``NAME=VALUE``-style expressions (see the module docstring): a name
    repeated with ``=`` means any of its values, with ``>=``/``<=``... the bounds of one range."""
    equal: dict[str, list[Any]] = {}
    ranges: dict[str, dict[str, Any]] = {}
    for expression in expressions:
        name, op, text = _split(expression, operators="= >= > <= <")
        value = json_or_text(text)
        if op == "=":
            equal.setdefault(name, []).append(value)
            continue
        bounds = ranges.setdefault(name, {})
        if _SYMBOLS[op] in bounds:
            raise ValueError(f"{name}{op} is given twice")
        bounds[_SYMBOLS[op]] = value
    conditions: dict[str, Condition] = {}
    for name in [*equal, *ranges]:
        if name in equal and name in ranges:
            raise ValueError(f"{name}: give values (=) or a range (>=, <=...), not both")
        try:
            conditions[name] = any_of(equal[name]) if name in equal else between(ranges[name])
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    if len(conditions) > MAX_CONDITIONS:
        raise ValueError(f"at most {MAX_CONDITIONS} attributes can be filtered on")
    return conditions


def parse_assignments(expressions: Sequence[str]) -> dict[str, Any]:
    """Attributes to set from ``NAME=VALUE`` expressions; a name given twice gets a list."""
    attributes: dict[str, Any] = {}
    for expression in expressions:
        name, _, text = _split(expression, operators="=")
        value = json_or_text(text)
        if name in attributes:
            earlier = attributes[name]
            value = [*(earlier if isinstance(earlier, list) else [earlier]), value]
        attributes[name] = value
    return attributes


def attribute_query(
    attribute: Annotated[
        list[str] | None,
        Query(
            max_length=MAX_CONDITIONS,
            description="NAME=VALUE, NAME>=VALUE, NAME<=VALUE...; repeat for more conditions.",
        ),
    ] = None,
) -> dict[str, Condition]:
    """``?attribute=`` conditions of a listing, refused (422) as a body's filters would be."""
    try:
        return parse_expressions(attribute or [])
    except ValueError as exc:
        error = {"loc": ("query", "attribute"), "msg": str(exc), "type": "value_error"}
        raise RequestValidationError([error]) from None
