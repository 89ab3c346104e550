"""Filenames made safe to store, show and upload; sources refused when they are not."""

from __future__ import annotations

import unicodedata

import pytest

from indexing.errors import InvalidInput
from indexing.filenames import (
    MAX_FILENAME_BYTES,
    MAX_FILENAME_CHARS,
    check_source,
    clean_title,
    sanitise_filename,
    unsafe_character,
)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        pytest.param("policy.pdf", "policy.pdf", id="plain"),
        pytest.param("../../etc/passwd", "passwd", id="dot-dot-path"),
        pytest.param("/etc/passwd.txt", "passwd.txt", id="absolute-path"),
        pytest.param("C:\\x\\y.pdf", "y.pdf", id="windows-path"),
        pytest.param("C:y.pdf", "y.pdf", id="windows-drive-relative"),
        pytest.param("..\\..\\Users\\me\\Leave Policy.docx", "Leave Policy.docx", id="backslashes"),
        pytest.param("bad\x00na\x1bme\x7f.md", "badname.md", id="nul-and-controls"),
        pytest.param("evil\u202etxt.exe", "eviltxt.exe", id="right-to-left-override"),
        pytest.param("a\u2066b\u2069\u200b.md", "ab.md", id="isolates-and-zero-width-space"),
        pytest.param(
            "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.txt",
            "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.txt",
            id="persian-zero-width-non-joiner-kept",
        ),
        pytest.param(
            "\U0001f469\u200d\U0001f4bb notes.md",
            "\U0001f469\u200d\U0001f4bb notes.md",
            id="emoji-joiner-kept",
        ),
        pytest.param("line\u2028sep\tx.md", "line sep x.md", id="separators-become-spaces"),
        pytest.param("  spaced   out.md  ", "spaced out.md", id="whitespace-runs"),
        pytest.param("Cafe\u0301.txt", "Café.txt", id="nfc"),
        pytest.param("e\u200b\u0301.txt", "é.txt", id="nfc-after-removal"),
        pytest.param("report.pdf. ", "report.pdf", id="trailing-dots-and-spaces"),
        pytest.param("x" * 300 + ".pdf", "x" * 196 + ".pdf", id="long-keeps-extension"),
        pytest.param("dir/", "", id="directory-only"),
        pytest.param("..", "", id="dots-only"),
        pytest.param("\x00\x01", "", id="controls-only"),
        pytest.param("\u202e", "", id="override-only"),
        pytest.param("", "", id="empty"),
    ],
)
def test_sanitise_filename(raw: str, clean: str) -> None:
    assert sanitise_filename(raw) == clean


@pytest.mark.parametrize("char", ["é", "日", "😀"])
def test_long_names_are_cut_to_whole_characters_within_the_byte_limit(char: str) -> None:
    name = sanitise_filename(char * 300 + ".docx")

    assert name.endswith(".docx")
    assert len(name) <= MAX_FILENAME_CHARS
    assert len(name.encode("utf-8")) <= MAX_FILENAME_BYTES
    assert set(name.removesuffix(".docx")) == {char}


def test_a_sanitised_name_is_stable() -> None:
    raw = "../x/\u202eLong  name " + "é" * 300 + ".pdf"

    once = sanitise_filename(raw)

    assert sanitise_filename(once) == once
    assert unicodedata.is_normalized("NFC", once)


@pytest.mark.parametrize(
    "source",
    [
        "upload:policy.pdf",
        "/srv/policies/Leave Policy.pdf",
        "intranet:hr/leave",
        "upload:日本.md",
        "upload:\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.txt",  # a joiner
        "upload:\u05d0\u200f-2024.md",  # a right-to-left mark
    ],
)
def test_ordinary_sources_pass(source: str) -> None:
    check_source(source)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("upload:a\x00b", "a control character (U+0000)"),
        ("upload:a\nb", "a control character (U+000A)"),
        ("upload:evil\u202etxt.md", "an invisible formatting character (U+202E)"),
        ("upload:a\u200bb", "an invisible formatting character (U+200B)"),
        ("upload:a\u2028b", "a line separator (U+2028)"),
        ("/srv/bad\udcff.txt", "is not valid Unicode"),
    ],
)
def test_sources_that_would_not_store_or_show_faithfully_are_refused(
    source: str, fragment: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_source(source)

    assert fragment in str(caught.value)
    assert str(caught.value).startswith("source ")


@pytest.mark.parametrize(
    ("raw", "shown", "problem"),
    [
        ("Leave policy", "Leave policy", None),
        ("Leave\x00policy", "Leave policy", "a control character (U+0000)"),
        ("  Leave\r\n\tpolicy  ", "Leave policy", "a control character (U+000D)"),
        ("evil\u202etxt", "evil txt", "an invisible formatting character (U+202E)"),
        ("caf\u00e9 \u200d\U0001f44b", "caf\u00e9 \u200d\U0001f44b", None),  # a joiner spells
        ("half\udcff", "half", "a lone surrogate (U+DCFF)"),
    ],
)
def test_titles_found_in_files_are_cleaned_and_given_ones_checked(
    raw: str, shown: str, problem: str | None
) -> None:
    assert clean_title(raw) == shown
    assert unsafe_character(raw.strip(" ")) == problem
