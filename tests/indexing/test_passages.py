"""Passages: sections by heading, long sections in overlapping windows, spans into the text."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.passages import PASSAGES_VERSION, Passage, PassageParams, passage_text, split_passages

_WORD = re.compile(r"\S+")


#: Passages as (heading path, body text): what most tests compare.
Bodies = list[tuple[tuple[str, ...], str]]


def bodies(text: str, params: PassageParams | None = None) -> Bodies:
    passages = split_passages(text, params or PassageParams())
    return [(p.headings, text[p.start : p.end]) for p in passages]


def numbered_words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def word_indices(text: str, passage: Passage) -> list[int]:
    """The numbers of the ``w<i>`` words in a passage."""
    return [int(word[1:]) for word in text[passage.start : passage.end].split()]


# --------------------------------------------------------------------------------------------
# Sections and heading paths


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "# Leave\nintro\n## Sick leave\nsick\n## Annual leave\nannual\n",
            [
                (("Leave",), "intro"),
                (("Leave", "Sick leave"), "sick"),
                (("Leave", "Annual leave"), "annual"),
            ],
        ),
        (
            "# A\n### C\nc\n## B\nb\n# D\nd",
            [(("A", "C"), "c"), (("A", "B"), "b"), (("D",), "d")],
        ),
        (
            "## Deep first\nx\n# Top\ny",
            [(("Deep first",), "x"), (("Top",), "y")],
        ),
        (
            "###### Six\nsix\n####### Seven\n",
            [(("Six",), "six\n####### Seven")],
        ),
    ],
    ids=[
        "sibling-replaces-sibling-keeps-parent",
        "shallower-heading-drops-deeper-ones",
        "level-2-before-any-level-1",
        "seven-hashes-is-body-text",
    ],
)
def test_heading_path_nests_and_resets_by_level(text: str, expected: Bodies) -> None:
    assert bodies(text) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("# Title", ("Title",)),
        ("#\tTabbed", ("Tabbed",)),
        ("   # Indented three", ("Indented three",)),
        ("# Closed ##", ("Closed",)),
        ("# Closed ##   ", ("Closed",)),
        ("# C#", ("C#",)),  # a closing run needs a space before it
        ("#   Padded   ", ("Padded",)),
        ("# #", ()),  # only a closing run: an empty heading, left out of the path
        ("#", ()),  # CommonMark: the end of the line may follow the opening run
    ],
)
def test_heading_text(line: str, expected: tuple[str, ...]) -> None:
    assert split_passages(f"{line}\nbody") == [Passage(len(line) + 1, len(line) + 5, expected)]


@pytest.mark.parametrize(
    "line",
    ["#hashtag", "#5 bolts", "    # four spaces is code", "\t# a tab is code", "text # not first"],
)
def test_lines_that_are_not_headings_stay_in_the_body(line: str) -> None:
    assert bodies(f"{line}\nbody") == [((), f"{line.lstrip()}\nbody")]


def test_empty_heading_resets_deeper_levels() -> None:
    assert bodies("# A\n## B\n##\nx") == [(("A",), "x")]


def test_text_before_the_first_heading_has_no_headings() -> None:
    assert bodies("Preamble here.\n\n# Scope\nApplies to all.") == [
        ((), "Preamble here."),
        (("Scope",), "Applies to all."),
    ]


def test_sections_without_words_are_dropped_but_name_their_children() -> None:
    text = "\n\n# Handbook\n\n  \n## Leave\n\t\n### Sick leave\nCall your manager.\n## Pay\n"
    assert bodies(text) == [(("Handbook", "Leave", "Sick leave"), "Call your manager.")]


@pytest.mark.parametrize(
    "text", ["", "   \n\t\r\n", "# Only\n## Headings\n", "#", "# A\n\n# B\n   \n"]
)
def test_text_without_words_is_one_empty_passage(text: str) -> None:
    assert split_passages(text) == [Passage(0, 0, ())]


# --------------------------------------------------------------------------------------------
# Code fences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "# Setup\n```sh\n# not a heading\n```\nafter",
            [(("Setup",), "```sh\n# not a heading\n```\nafter")],
        ),
        (
            "# Setup\n~~~\n# not a heading\n~~~\n# Next\nn",
            [(("Setup",), "~~~\n# not a heading\n~~~"), (("Next",), "n")],
        ),
        (
            "````\n```\n# inside\n````\n# Out\no",
            [((), "````\n```\n# inside\n````"), (("Out",), "o")],
        ),
        (
            "```\n# inside\n~~~\n# still inside\n```\n# Out\no",
            [((), "```\n# inside\n~~~\n# still inside\n```"), (("Out",), "o")],
        ),
        (
            "```\n# inside\n``` not a close\n# still inside",
            [((), "```\n# inside\n``` not a close\n# still inside")],
        ),
        ("```\n# unclosed runs to the end", [((), "```\n# unclosed runs to the end")]),
        ("``` `inline` ```\n# Heading\nh", [((), "``` `inline` ```"), (("Heading",), "h")]),
        ("   ```\n# in\n   ```\n# Out\no", [((), "```\n# in\n   ```"), (("Out",), "o")]),
    ],
    ids=[
        "backticks",
        "tildes",
        "shorter-fence-does-not-close",
        "other-character-does-not-close",
        "text-after-fence-does-not-close",
        "unclosed-fence",
        "backticks-in-info-string-is-no-fence",
        "indented-fences",
    ],
)
def test_headings_inside_code_fences_are_ignored(text: str, expected: Bodies) -> None:
    assert bodies(text) == expected


# --------------------------------------------------------------------------------------------
# Spans into the original text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "  Lead in  \r\n# Policy\r\n\r\n  First line\r\nsecond\r\n## Part\r\n\tpart body \r\n",
            [
                ((), "Lead in"),
                (("Policy",), "First line\r\nsecond"),
                (("Policy", "Part"), "part body"),
            ],
        ),
        (
            "# Old Mac\rbody one\r## Sub\rbody two\r",
            [(("Old Mac",), "body one"), (("Old Mac", "Sub"), "body two")],
        ),
        ("   ## Indented\n      deep body", [(("Indented",), "deep body")]),
        ("# Ünïcødé\n\u00a0naïve café\u2003end ", [(("Ünïcødé",), "naïve café\u2003end")]),
    ],
    ids=["crlf", "cr", "indentation", "unicode-whitespace"],
)
def test_spans_slice_the_original_text(text: str, expected: Bodies) -> None:
    assert bodies(text) == expected


def test_heading_line_is_not_part_of_the_body() -> None:
    assert split_passages("# Leave\nTake it.") == [Passage(8, 16, ("Leave",))]


# --------------------------------------------------------------------------------------------
# Windows over long sections


@pytest.mark.parametrize(
    ("n_words", "window", "stride", "expected_starts"),
    [
        (1, 300, 150, [0]),
        (300, 300, 150, [0]),  # exactly one window's worth: not split
        (301, 300, 150, [0, 150]),
        (450, 300, 150, [0, 150]),  # the second window ends exactly on the last word
        (451, 300, 150, [0, 150, 300]),
        (1000, 300, 150, [0, 150, 300, 450, 600, 750]),
        (10, 4, 4, [0, 4, 8]),  # stride == window: no overlap
        (6, 4, 1, [0, 1, 2]),
        (5, 1, 1, [0, 1, 2, 3, 4]),
    ],
)
def test_long_sections_are_cut_into_overlapping_windows(
    n_words: int, window: int, stride: int, expected_starts: list[int]
) -> None:
    text = "# Long\n" + numbered_words(n_words)
    passages = split_passages(text, PassageParams(window=window, stride=stride))
    windows = [word_indices(text, p) for p in passages]

    assert [w[0] for w in windows] == expected_starts
    assert windows[-1][-1] == n_words - 1
    assert all(w == list(range(w[0], w[0] + len(w))) for w in windows)  # contiguous words
    assert all(len(w) == min(window, n_words) for w in windows[:-1])
    assert 1 <= len(windows[-1]) <= window
    assert {i for w in windows for i in w} == set(range(n_words))
    for previous, following in itertools.pairwise(windows):
        assert len(set(previous) & set(following)) == window - stride
    assert all(p.headings == ("Long",) for p in passages)


def test_default_windows_span_from_first_to_last_word() -> None:
    text = "Intro.\n# Long\n " + numbered_words(1000) + " \n"
    passages = split_passages(text)[1:]

    assert len(passages) == 6
    assert text[passages[0].start : passages[0].end] == numbered_words(300)
    assert passages[-1].start == text.index("w750")
    assert passages[-1].end == text.index("w999") + len("w999")


def test_windows_count_words_not_lines() -> None:
    text = "a b\n\nc\td\n e f"
    assert bodies(text, PassageParams(window=4, stride=2)) == [
        ((), "a b\n\nc\td"),
        ((), "c\td\n e f"),
    ]


# --------------------------------------------------------------------------------------------
# What a passage is indexed as


def test_passage_text_is_title_then_headings_then_body() -> None:
    text = "# Leave\n## Sick leave\nCall your manager before 9am."
    (passage,) = split_passages(text)
    assert passage_text("Staff handbook", text, passage) == (
        "Staff handbook\nLeave\nSick leave\nCall your manager before 9am."
    )


@pytest.mark.parametrize(
    ("title", "text", "expected"),
    [
        ("", "# Leave\nbody", "Leave\nbody"),
        ("Handbook", "just body", "Handbook\njust body"),
        ("Handbook", "", "Handbook"),
    ],
    ids=["no-title", "no-headings", "no-words"],
)
def test_passage_text_leaves_out_missing_parts(title: str, text: str, expected: str) -> None:
    assert passage_text(title, text, split_passages(text)[0]) == expected


# --------------------------------------------------------------------------------------------
# Parameters


def test_params_as_dict() -> None:
    assert PassageParams().as_dict() == {"window": 300, "stride": 150, "version": PASSAGES_VERSION}
    assert PassageParams(window=50, stride=25).as_dict()["window"] == 50


@pytest.mark.parametrize(
    ("window", "stride", "message"),
    [
        (0, 1, "window must be at least 1"),
        (-5, 1, "window must be at least 1"),
        (10, 0, "stride must be between 1 and the window"),
        (10, 11, "stride must be between 1 and the window"),
        (10, -1, "stride must be between 1 and the window"),
    ],
)
def test_invalid_params_are_refused(window: int, stride: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PassageParams(window=window, stride=stride)


# --------------------------------------------------------------------------------------------
# Hostile input: these must finish (linear time); no timing is asserted.


def test_a_million_hashes_is_one_word() -> None:
    assert split_passages("#" * 1_000_000) == [Passage(0, 1_000_000, ())]


def test_a_million_hashes_after_a_heading_marker() -> None:
    text = "# " + "#" * 1_000_000 + "\nbody"
    assert bodies(text) == [((), "body")]  # the heading text is only a closing run


def test_a_ten_megabyte_line_without_spaces() -> None:
    text = "# Blob\n" + "x" * 10_000_000
    assert split_passages(text) == [Passage(7, len(text), ("Blob",))]


def test_a_hundred_thousand_headings() -> None:
    assert split_passages("# h\n" * 100_000) == [Passage(0, 0, ())]
    passages = split_passages("## h\nx\n" * 100_000)
    assert len(passages) == 100_000
    assert passages[-1].headings == ("h",)


def test_a_hundred_thousand_headings_inside_an_unclosed_fence() -> None:
    text = "```\n" + "# h\n" * 100_000
    passages = split_passages(text, PassageParams(window=10, stride=5))
    assert all(p.headings == () for p in passages)
    assert (passages[0].start, passages[-1].end) == (0, len(text) - 1)


def test_a_section_of_a_million_words() -> None:
    passages = split_passages("w " * 1_000_000)
    # Windows start at 0, 150, ..., 999,750: the first to reach word 999,999.
    assert len(passages) == 999_750 // 150 + 1
    assert passages[-1] == Passage(2 * 999_750, 2 * 1_000_000 - 1, ())


# --------------------------------------------------------------------------------------------
# Properties over arbitrary Markdown-like text

_LINES = st.sampled_from(
    ["# A", "## B", " ### C ##", "#", "####### x", "```", "~~~", "````", "``` x `y`", "    # code"]
)
_FRAGMENTS = st.text(alphabet="ab #`~\t \u00a0\n\r", max_size=30)
_TEXTS = st.lists(st.one_of(_LINES, _FRAGMENTS), max_size=20).map("\n".join)


def _on_a_hash_line(text: str, position: int) -> bool:
    """Whether ``position`` is on a line whose first non-space (of at most 3) is ``#``."""
    line_start = max(text.rfind("\n", 0, position), text.rfind("\r", 0, position)) + 1
    line = text[line_start:]
    unindented = line.lstrip(" ")
    return unindented.startswith("#") and len(line) - len(unindented) <= 3


@settings(max_examples=300, deadline=None)
@given(text=_TEXTS, window=st.integers(1, 6), extra=st.integers(0, 5))
def test_every_word_off_a_heading_line_is_in_some_passage(
    text: str, window: int, extra: int
) -> None:
    params = PassageParams(window=window, stride=max(1, window - extra))
    passages = split_passages(text, params)

    assert passages
    assert [p.start for p in passages] == sorted(p.start for p in passages)
    for p in passages:
        assert 0 <= p.start <= p.end <= len(text)
        body = text[p.start : p.end]
        assert body == body.strip()
        assert len(body.split()) <= params.window
    for word in _WORD.finditer(text):
        covered = any(p.start <= word.start() and word.end() <= p.end for p in passages)
        assert covered or _on_a_hash_line(text, word.start()), word
