"""Splitting a document's text into passages, for passage-aware BM25 routing.

A document is scored by its whole text and by its best passage: scoring a document by its best
passage lifts Recall@3 on real policy handbooks where long documents otherwise lose to short
ones (BM25's length normalisation dilutes the one section that answers the question).

Passages follow the document's own structure first. Policies are written as headed sections,
and one section usually answers a question, so each Markdown ATX heading (``#`` to ``######``)
starts a section, and the heading path above it ("Leave" › "Sick leave") goes with the passage:
it is what the passage is about even when the body never repeats it. Text without headings
(everything extracted from PDF, DOCX or HTML today) is one section.

A section longer than ``window`` words is cut into overlapping windows starting every
``stride`` words, so a passage that straddles one cut is still whole in the neighbouring window.

Passages are character spans of the original text, never copies, and the text is scanned
without backtracking regular expressions: time is linear in its length even for hostile input
(a million ``#``, a 10 MB line, 100,000 headings).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: Bumped whenever the splitting changes in a way that moves passage boundaries.
PASSAGES_VERSION = 1

_WORD = re.compile(r"\S+")
# The start of a line that might open a heading or a code fence; every other line is body text,
# so only these few are looked at in Python. Each alternative is bounded: no backtracking.
_CANDIDATE_LINE = re.compile(r"(?:\A|(?<=[\r\n]))[ ]{0,3}(?:#|```|~~~)")
_LINE_END = re.compile(r"[\r\n]")
_MAX_HEADING_LEVEL = 6


@dataclass(frozen=True)
class PassageParams:
    """Stored with the pool's index parameters; changing them means re-indexing."""

    window: int = 300  # words per window when a section is longer than this
    stride: int = 150  # words between window starts
    version: int = PASSAGES_VERSION

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"passage window must be at least 1 word, got {self.window}")
        if not 1 <= self.stride <= self.window:
            raise ValueError(
                f"passage stride must be between 1 and the window ({self.window}) words, "
                f"got {self.stride}"
            )

    def as_dict(self) -> dict[str, Any]:
        return {"window": self.window, "stride": self.stride, "version": self.version}


@dataclass(frozen=True)
class Passage:
    """A passage body, ``text[start:end]``, and the heading path above it, outermost first."""

    start: int
    end: int
    headings: tuple[str, ...]


@dataclass(frozen=True)
class _Section:
    headings: tuple[str, ...]
    start: int  # the body: from the end of the heading line ...
    end: int  # ... to the start of the next heading line


def split_passages(text: str, params: PassageParams = PassageParams()) -> list[Passage]:
    """The passages of ``text``, in order; ``[Passage(0, 0, ())]`` when it has no words."""
    passages = [
        passage
        for section in _sections(text)
        for passage in _section_passages(text, section, params)
    ]
    return passages or [Passage(0, 0, ())]


def passage_text(title: str, text: str, passage: Passage) -> str:
    """What a passage is indexed as: the document title, its heading path, then its body (title
    and headings are what the passage is about even when the body never repeats them)."""
    parts = [title, *passage.headings, text[passage.start : passage.end]]
    return "\n".join(part for part in parts if part)


def _window_bounds(n_words: int, window: int, stride: int) -> list[tuple[int, int]]:
    """``(first, last)`` word indices of the windows over ``n_words`` words.

    Windows start every ``stride`` words; the last is the first one to reach the last word, and
    may be shorter than ``window``. Consecutive windows share ``window - stride`` words.
    """
    if n_words <= window:
        return [(0, n_words - 1)]
    last_start = -(-(n_words - window) // stride) * stride  # ceil to a multiple of stride
    return [(start, min(start + window, n_words) - 1) for start in range(0, last_start + 1, stride)]


def _section_passages(text: str, section: _Section, params: PassageParams) -> list[Passage]:
    # Two passes, keeping only the offsets of window boundaries: a list of every word's span
    # would cost a hundred bytes a word on a section of millions of words.
    n_words = sum(1 for _ in _WORD.finditer(text, section.start, section.end))
    if n_words == 0:
        return []
    bounds = _window_bounds(n_words, params.window, params.stride)
    starts = dict.fromkeys((first for first, _ in bounds), 0)
    ends = dict.fromkeys((last for _, last in bounds), 0)
    for index, word in enumerate(_WORD.finditer(text, section.start, section.end)):
        if index in starts:
            starts[index] = word.start()
        if index in ends:
            ends[index] = word.end()
    return [Passage(starts[first], ends[last], section.headings) for first, last in bounds]


def _sections(text: str) -> Iterator[_Section]:
    """Sections in order, the one before the first heading included, empty ones too."""
    path: list[tuple[int, str]] = []  # (level, heading text), outermost first
    headings: tuple[str, ...] = ()
    body_start = 0
    for line_start, line_end, level, title in _heading_lines(text):
        yield _Section(headings, body_start, line_start)
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        headings = tuple(title for _, title in path if title)
        body_start = line_end
    yield _Section(headings, body_start, len(text))


def _heading_lines(text: str) -> Iterator[tuple[int, int, int, str]]:
    """``(line start, line end, level, heading text)`` of each ATX heading outside code fences.

    Lines end at ``\\n``, ``\\r\\n`` or ``\\r``; the line end excludes the line break.
    """
    fence: tuple[str, int] | None = None  # the open fence's character and length
    position = 0
    while (candidate := _CANDIDATE_LINE.search(text, position)) is not None:
        line_start = candidate.start()
        line_break = _LINE_END.search(text, candidate.end())
        line_end = line_break.start() if line_break else len(text)
        position = line_end
        line = text[line_start:line_end].lstrip(" ")
        if fence is not None:
            if _closes_fence(line, fence):
                fence = None
        elif (opened := _opens_fence(line)) is not None:
            fence = opened
        elif (heading := _atx_heading(line)) is not None:
            yield line_start, line_end, heading[0], heading[1]


def _atx_heading(line: str) -> tuple[int, str] | None:
    """``(level, text)`` if ``line`` (indentation removed) is an ATX heading, as CommonMark
    reads it: the ``#`` run is followed by a space, a tab or the end of the line, and a closing
    ``#`` run is dropped only when a space or tab precedes it (``# C#`` keeps its ``#``)."""
    prefix = line[: _MAX_HEADING_LEVEL + 1]  # enough to tell a heading from a run of 7 or more
    level = len(prefix) - len(prefix.lstrip("#"))
    if not 1 <= level <= _MAX_HEADING_LEVEL:
        return None
    rest = line[level:]
    if rest and rest[0] not in " \t":
        return None
    title = rest.strip(" \t")
    unclosed = title.rstrip("#")
    if not unclosed or unclosed[-1] in " \t":
        title = unclosed.rstrip(" \t")
    return level, title


def _opens_fence(line: str) -> tuple[str, int] | None:
    """The fence ``line`` opens, as ``(character, length)``, if it opens one."""
    mark = line[:1]
    if mark not in ("`", "~"):
        return None
    length = len(line) - len(line.lstrip(mark))
    # CommonMark: a backtick fence's info string holds no backtick (else it is inline code).
    if length < 3 or (mark == "`" and "`" in line[length:]):
        return None
    return mark, length


def _closes_fence(line: str, fence: tuple[str, int]) -> bool:
    """Whether ``line`` closes ``fence``: the same character, at least as many, nothing after."""
    mark, opened_length = fence
    length = len(line) - len(line.lstrip(mark))
    return length >= opened_length and not line[length:].strip(" \t")
