"""Filters on what documents carry (tags, attributes), and how attribute values compare.

An attribute's value compares by what it is (``comparable``):

* a number (not a boolean) as a number, so ``1`` equals ``1.0``;
* ``true`` and ``false`` as booleans;
* a string holding an ISO-8601 date, ``YYYY-MM-DD`` alone or followed by a time
  (``2024-03-01T09:30:00Z``), as that calendar date: the time and the zone are ignored;
* any other string as text, exactly (case and spaces count);
* a list as each of its elements: the attribute matches when any element does.

Values of different kinds never match (the text ``"2024"`` is not the number ``2024``); nulls
and objects match nothing; ranges compare numbers or dates, never text.

The index evaluates conditions over all documents at once (``Between.within``); listings check
one document at a time (``attributes_match``), with the same comparisons.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
import numpy.typing as npt

Kind = Literal["text", "number", "date", "bool"]
KINDS: tuple[Kind, ...] = get_args(Kind)
#: The kinds a range compares.
ORDERED: tuple[Kind, ...] = ("number", "date")

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:\Z|[T ][0-9]{2}:[0-9]{2})")


class Value(NamedTuple):
    """An attribute value as it compares: its kind and a key of that kind (the number; the
    date's day number; 1.0 or 0.0 for booleans; the text itself)."""

    kind: Kind
    key: float | str


def iso_day(text: str) -> int | None:
    """The day number (``date.toordinal``) of an ISO-8601 date or date-time, else None."""
    if not _ISO_DATE.match(text):
        return None
    try:
        day = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text).date()
    except ValueError:
        return None
    return day.toordinal()


def comparable(value: object) -> Value | None:
    """How a single attribute value compares (see the module docstring); None for what never
    matches (null, objects, lists, numbers that are not finite)."""
    if isinstance(value, bool):
        return Value("bool", float(value))
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None
        return Value("number", number) if math.isfinite(number) else None
    if isinstance(value, str):
        day = iso_day(value)
        return Value("text", value) if day is None else Value("date", float(day))
    return None


def comparables(value: object) -> list[Value]:
    """Every value an attribute matches on: itself, or each element of a list."""
    items = value if isinstance(value, list) else [value]
    return [v for v in map(comparable, items) if v is not None]


# ------------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class AnyOf:
    """The attribute equals one of ``values`` (one value: plain equality)."""

    values: tuple[Value, ...]

    def matches(self, value: object) -> bool:
        return any(v in self.values for v in comparables(value))


_LOWER: dict[bool, Callable[[Any, float], Any]] = {True: operator.ge, False: operator.gt}
_UPPER: dict[bool, Callable[[Any, float], Any]] = {True: operator.le, False: operator.lt}


@dataclass(frozen=True)
class Between:
    """The attribute is a number, or a date, within the bounds (``None``: open on that side)."""

    kind: Kind
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def within(self, keys: FloatArray) -> BoolArray:
        """Which of ``keys`` (values of this condition's kind) lie in the range."""
        inside = np.ones(len(keys), np.bool_)
        if self.low is not None:
            inside &= _LOWER[self.low_inclusive](keys, self.low)
        if self.high is not None:
            inside &= _UPPER[self.high_inclusive](keys, self.high)
        return inside

    def matches(self, value: object) -> bool:
        keys = [float(v.key) for v in comparables(value) if v.kind == self.kind]
        return bool(self.within(np.asarray(keys, np.float64)).any())


Condition = AnyOf | Between


@dataclass(frozen=True)
class Filters:
    """What a request narrows routing to: documents carrying every one of ``tags`` and meeting
    every attribute condition (a document without the attribute meets none)."""

    tags: frozenset[str] = frozenset()
    attributes: Mapping[str, Condition] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.tags or self.attributes)


def attributes_match(conditions: Mapping[str, Condition], attributes: Mapping[str, Any]) -> bool:
    """Whether a document's ``attributes`` meet every one of ``conditions``."""
    return all(
        key in attributes and condition.matches(attributes[key])
        for key, condition in conditions.items()
    )


# ---------------------------------------------------------------------- building conditions

#: Range operators: (which end of the range, inclusive).
RANGE_OPERATORS: dict[str, tuple[str, bool]] = {
    "gte": ("low", True),
    "gt": ("low", False),
    "lte": ("high", True),
    "lt": ("high", False),
}
SCALAR_HINT = "text, a number, true/false or an ISO date (YYYY-MM-DD)"


def any_of(values: Sequence[object]) -> AnyOf:
    """The condition "equals one of ``values``"; ``ValueError`` saying what is wrong."""
    if not values:
        raise ValueError("give at least one value")
    typed = []
    for raw in values:
        value = comparable(raw)
        if value is None:
            raise ValueError(f"{_show(raw)} is not a value to compare with; give {SCALAR_HINT}")
        typed.append(value)
    return AnyOf(tuple(dict.fromkeys(typed)))


def between(bounds: Mapping[str, object]) -> Between:
    """The range given by operators ``gte``/``gt``/``lte``/``lt`` over numbers or ISO dates;
    ``ValueError`` saying what is wrong."""
    unknown = [op for op in bounds if op not in RANGE_OPERATORS]
    if unknown:
        raise ValueError(f"unknown range operator {unknown[0]!r}; use gte, gt, lte or lt")
    if not bounds:
        raise ValueError("a range needs at least one bound: gte, gt, lte or lt")
    ends: dict[str, tuple[str, Value, bool]] = {}
    for op, raw in bounds.items():
        end, inclusive = RANGE_OPERATORS[op]
        value = comparable(raw)
        if value is None or value.kind not in ORDERED:
            raise ValueError(f"{op} must be a number or an ISO date (YYYY-MM-DD), not {_show(raw)}")
        if end in ends:
            raise ValueError(f"give one lower and one upper bound at most ({ends[end][0]}, {op})")
        ends[end] = (op, value, inclusive)
    kinds = {value.kind for _, value, _ in ends.values()}
    if len(kinds) > 1:
        raise ValueError("both bounds must be numbers, or both dates")
    low, high = ends.get("low"), ends.get("high")
    if low is not None and high is not None and float(low[1].key) > float(high[1].key):
        raise ValueError(f"the range is empty: {low[0]} is above {high[0]}")
    return Between(
        kind=kinds.pop(),
        low=None if low is None else float(low[1].key),
        high=None if high is None else float(high[1].key),
        low_inclusive=True if low is None else low[2],
        high_inclusive=True if high is None else high[2],
    )


def _show(raw: object) -> str:
    """A value as the caller wrote it (JSON), shortened."""
    text = json.dumps(raw, ensure_ascii=False, default=repr)
    return text if len(text) <= 40 else text[:37] + "..."
