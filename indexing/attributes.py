"""What a document's free-form attributes may hold.

Attributes arrive from an upload form, a ``PUT``, a bulk manifest and a file's own front
matter, and every listing of documents serialises them again. Whatever one of those paths
accepts must store in SQLite and PostgreSQL alike and come back out of every listing, so the
rules live here, once: JSON types only, finite numbers (NaN is not JSON; PostgreSQL refuses
it), text without NUL or lone surrogates (no UTF-8 holds a surrogate, so the listing's
serialisation would fail), and a bounded depth and size (a deeply nested value stores, then
breaks every listing of the pool).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .errors import InvalidInput

#: Deepest nesting of objects and arrays an attribute value may have.
MAX_ATTRIBUTE_DEPTH = 16
#: Largest the attributes of one document may be, as compact JSON.
MAX_ATTRIBUTES_BYTES = 64 * 1024


def check_attributes(attributes: Mapping[str, Any], *, where: str = "attributes") -> None:
    """Raise ``InvalidInput`` naming the first thing in ``attributes`` that cannot be stored;
    ``where`` says whose attributes they are in the message."""
    if not isinstance(attributes, Mapping):
        raise InvalidInput(f"{where} must be a JSON object")
    # Depth first: serialising a very deep value would hit the recursion limit.
    _check_value(dict(attributes), where, depth=0)
    size = len(json.dumps(attributes, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_ATTRIBUTES_BYTES:
        raise InvalidInput(f"{where} take {size:,} bytes as JSON; at most {MAX_ATTRIBUTES_BYTES:,}")


def _check_value(value: object, path: str, depth: int) -> None:
    # Iterative over siblings, recursive over depth, which is bounded before it can grow.
    if isinstance(value, (dict, list)):
        if depth >= MAX_ATTRIBUTE_DEPTH:
            raise InvalidInput(f"{path} is nested more than {MAX_ATTRIBUTE_DEPTH} levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidInput(f"{path} has a key that is not a string: {key!r:.40}")
                _check_text(key, f"{path} key {_shown(key)!r}")
                _check_value(item, f"{path}.{_shown(key)}", depth + 1)
        else:
            for index, item in enumerate(value):
                _check_value(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{path} is {value}; JSON numbers must be finite")
    elif value is not None and not isinstance(value, (bool, int)):
        raise InvalidInput(f"{path} is a {type(value).__name__}, not a JSON value")


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        raise InvalidInput(f"{path} contains a NUL character (U+0000)")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise InvalidInput(f"{path} is not valid Unicode (a lone surrogate)") from None


def _shown(key: str) -> str:
    return key if len(key) <= 40 else key[:37] + "..."
