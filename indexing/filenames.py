"""Filenames and sources from uploads and folders, made safe to store, show and upload.

A filename is only ever a label: it decides the format (by its extension), is shown in listings
and citations and names the file uploaded to the Files API. Nothing is written to disk under it
(the local Files store names files by id). What is kept is the last path component, without
control, private-use or unassigned characters and without formatting characters that hide or
reorder text (a right-to-left override makes ``report\\u202efdp.exe`` read as
``reportexe.pdf``; joiners and direction marks, which spell words, stay), with whitespace runs
made one space, NFC-composed and shortened with its extension kept.

A source (a document's identity: a path, or a name given with an upload) cannot be rewritten
like that without merging identities, so one that could not be stored or shown faithfully is
refused instead (``check_source``). So are tags and groups (``check_labels``), which are
shown, matched and stored as given.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import PurePath

from indexing.errors import InvalidInput

#: Longest filename kept, in characters and in UTF-8 bytes (most file systems stop at 255).
MAX_FILENAME_CHARS = 200
MAX_FILENAME_BYTES = 255
#: Longest tail kept as the extension when a name is shortened.
MAX_EXTENSION_CHARS = 20

_DRIVE = re.compile(r"\A[A-Za-z]:")
#: Format characters that spell words (zero-width joiners: Persian, Indic scripts, emoji) or
#: mark a direction without overriding it; every other one can hide or reorder what is shown.
_HARMLESS_FORMAT = frozenset("\u200c\u200d\u200e\u200f\u061c")


def sanitise_filename(raw: str) -> str:
    """``raw`` made safe as described above; "" when nothing usable is left.

    For example ``C:\\Users\\me\\Leave  Policy.pdf`` gives ``Leave Policy.pdf`` and
    ``../../etc/passwd`` gives ``passwd``.
    """
    name = _DRIVE.sub("", raw.replace("\\", "/").rsplit("/", 1)[-1])
    name = "".join(ch for ch in name if ch.isspace() or not _hidden(ch))
    name = unicodedata.normalize("NFC", " ".join(name.split()))  # any whitespace: one space
    name = name.rstrip(". ")  # Windows drops trailing dots and spaces: "a.pdf." is "a.pdf"
    if not name.strip("."):
        return ""
    return _shortened(name)


def _hidden(char: str) -> bool:
    """Control, formatting (but see ``_HARMLESS_FORMAT``), surrogate, private or unassigned."""
    return unicodedata.category(char)[0] == "C" and char not in _HARMLESS_FORMAT


def _shortened(name: str) -> str:
    """``name`` cut to the length limits, keeping its extension and whole characters."""
    if len(name) <= MAX_FILENAME_CHARS and len(name.encode("utf-8")) <= MAX_FILENAME_BYTES:
        return name
    full_suffix = PurePath(name).suffix
    suffix = full_suffix[:MAX_EXTENSION_CHARS]
    stem = name[: len(name) - len(full_suffix)][: MAX_FILENAME_CHARS - len(suffix)]
    budget = MAX_FILENAME_BYTES - len(suffix.encode("utf-8"))
    stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore")  # no half characters
    return unicodedata.normalize("NFC", stem.rstrip()) + suffix


#: Characters a source may not contain, by Unicode category, and how messages name them.
_UNSAFE_IN_SOURCE = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def _unsafe(char: str) -> str | None:
    """How messages name ``char`` if it hides or reorders text when shown, or is a lone
    surrogate (which no database stores); ``None`` for a safe one."""
    category = unicodedata.category(char)
    if category == "Cs":
        return "a lone surrogate"
    if category in _UNSAFE_IN_SOURCE and char not in _HARMLESS_FORMAT:
        return _UNSAFE_IN_SOURCE[category]
    return None


def unsafe_character(text: str) -> str | None:
    """The first unsafe character of ``text`` (``_unsafe``), named with its code point, or
    ``None``. PostgreSQL, for one, refuses NUL in text."""
    for char in text:
        kind = _unsafe(char)
        if kind is not None:
            return f"{kind} (U+{ord(char):04X})"
    return None


def clean_title(title: str) -> str:
    """A title with its unsafe characters turned into spaces and its runs of whitespace into
    one: metadata found in a file is shown as it can be, not refused."""
    return " ".join("".join(" " if _unsafe(c) else c for c in title).split())


#: Longest source the store keeps: its column's size, in characters; and, as UTF-8, within
#: what PostgreSQL's unique index on it holds (about 2,700 bytes).
MAX_SOURCE_CHARS = 2000
MAX_SOURCE_BYTES = 2000


def check_source(source: str) -> None:
    """Refuse a source that is not valid Unicode, longer than the store keeps, or holds
    characters that hide or reorder text when shown (controls, bidirectional overrides and
    isolates, zero-width spaces, line separators); joiners and direction marks, which spell
    words, pass."""
    if len(source) > MAX_SOURCE_CHARS or len(source.encode(errors="replace")) > MAX_SOURCE_BYTES:
        raise InvalidInput(
            f"source {source[:60]!r}... is {len(source.encode(errors='replace')):,} bytes as "
            f"UTF-8; at most {MAX_SOURCE_BYTES:,} (a path that deep: ingest from nearer the file)"
        )
    if any(unicodedata.category(char) == "Cs" for char in source):
        raise InvalidInput(
            f"source {source!r} is not valid Unicode (a path whose bytes are not UTF-8?); rename it"
        )
    problem = unsafe_character(source)
    if problem is not None:
        raise InvalidInput(
            f"source {source!r} contains {problem}; rename it or give another source"
        )


def check_labels(tags: Sequence[str], groups: Sequence[str]) -> None:
    """Refuse a tag or group holding a character that hides text or that a store refuses."""
    for kind, labels in (("tag", tags), ("group", groups)):
        for label in labels:
            problem = unsafe_character(label)
            if problem is not None:
                raise InvalidInput(f"{kind} {label!r} contains {problem}")
