"""Deciding a file's format: the extension, checked against the bytes and the declared type."""

from __future__ import annotations

import codecs
from collections.abc import Callable

import pytest

from indexing.errors import (
    ContentMismatch,
    CorruptFile,
    FileTooLarge,
    PoolError,
    UnsupportedFormat,
)
from indexing.formats import (
    DOCX_MIME,
    GENERIC_TYPES,
    bomless_utf16,
    detect_format,
    media_type_of,
    sniff,
    zip_declared_members,
)
from tests.factories import make_docx, make_pdf, make_zip

PDF = make_pdf(["Annual leave is 25 days."])
DOCX = make_docx(["Annual leave is 25 days."])
TEXT = "Annual leave is 25 days, café included.\n"

# --------------------------------------------------------------------------------------------
# Accepted


@pytest.mark.parametrize(
    ("filename", "data", "declared", "expected"),
    [
        pytest.param("a.pdf", PDF, None, "pdf", id="pdf"),
        pytest.param("A.PDF", PDF, None, "pdf", id="uppercase-extension"),
        pytest.param("a.pdf", b"\r\n  \t" + PDF, None, "pdf", id="pdf-after-whitespace"),
        pytest.param("a.pdf", codecs.BOM_UTF8 + PDF, None, "pdf", id="pdf-after-a-bom"),
        pytest.param("a.pdf", b"X" * 1000 + PDF, None, "pdf", id="pdf-after-1000-bytes-of-junk"),
        pytest.param("a.docx", DOCX, None, "docx", id="docx"),
        pytest.param("a.htm", b"<p>Leave</p>", None, "html", id="htm"),
        pytest.param("a.markdown", b"# Leave\n", None, "markdown", id="markdown-long-suffix"),
        pytest.param("a.text", b"Leave\n", None, "text", id="text-suffix"),
        pytest.param("a.txt", TEXT.encode("utf-8-sig"), None, "text", id="utf-8-bom"),
        pytest.param("a.txt", TEXT.encode("utf-16"), None, "text", id="utf-16-bom"),
        pytest.param("a.txt", TEXT.encode("utf-16-le"), None, "text", id="utf-16-le-no-bom"),
        pytest.param("a.txt", TEXT.encode("utf-16-be"), None, "text", id="utf-16-be-no-bom"),
        pytest.param("a.txt", TEXT.encode("utf-32"), None, "text", id="utf-32-bom"),
        pytest.param("a.txt", b"MZ Richtlinie zum Urlaub\n", None, "text", id="text-starting-MZ"),
        pytest.param("a.md", b"BM: notes\n" + b"x" * 20, None, "markdown", id="text-starting-BM"),
        pytest.param("a.txt", b"On %PDF- headers\n", None, "text", id="text-mentioning-pdf"),
        pytest.param("a.pdf", PDF, "application/pdf", "pdf", id="declared-pdf"),
        pytest.param("a.pdf", PDF, "Application/PDF; x=1", "pdf", id="declared-pdf-params"),
        pytest.param("a.docx", DOCX, DOCX_MIME, "docx", id="declared-docx"),
        pytest.param("a.docx", DOCX, "application/zip", "docx", id="docx-declared-zip"),
        pytest.param("a.md", b"# Leave\n", "text/markdown", "markdown", id="declared-markdown"),
        pytest.param("a.md", b"# Leave\n", "text/plain", "markdown", id="md-declared-plain"),
        pytest.param("a.html", b"<p>x</p>", "text/html; charset=utf-8", "html", id="html-charset"),
        pytest.param("a.html", b"<p>x</p>", "application/xhtml+xml", "html", id="xhtml"),
    ]
    + [
        pytest.param("a.pdf", PDF, generic, "pdf", id=f"generic-{generic or 'empty'}")
        for generic in sorted(GENERIC_TYPES)
    ],
)
def test_legitimate_variants_are_accepted(
    filename: str, data: bytes, declared: str | None, expected: str
) -> None:
    assert detect_format(filename, data, declared) == expected


# --------------------------------------------------------------------------------------------
# Refused


def _zip_with_members(count: int) -> bytes:
    return make_zip({"word/document.xml": b"<w/>", **{f"m{i}": b"" for i in range(count)}})


REFUSED: list[tuple[str, Callable[[], bytes], str | None, type[PoolError], str]] = [
    ("a.pdf", lambda: b"this is no PDF", None, ContentMismatch,
     "declared .pdf but the content is not a PDF (no %PDF- header in its first 1,024 bytes)"),
    ("a.pdf", lambda: b"X" * 1100 + PDF, None, ContentMismatch, "no %PDF- header"),
    ("a.pdf", lambda: DOCX, None, ContentMismatch,
     "declared .pdf but the content is a Word document (DOCX)"),
    ("a.pdf", lambda: b"\x89PNG\r\n\x1a\n" + b"%PDF-1.7" + bytes(64), None, ContentMismatch,
     "declared .pdf but the content is a PNG image"),
    ("a.docx", lambda: b"just text", None, ContentMismatch,
     "declared .docx but the content is not a DOCX (not a ZIP archive)"),
    ("a.docx", lambda: PDF, None, ContentMismatch, "declared .docx but the content is a PDF"),
    ("a.docx", lambda: make_zip({"xl/workbook.xml": b"<x/>"}), None, ContentMismatch,
     "declared .docx but the content is an Excel workbook (XLSX)"),
    ("a.docx", lambda: make_zip({"ppt/presentation.xml": b"<x/>"}), None, ContentMismatch,
     "a PowerPoint presentation (PPTX)"),
    ("a.docx", lambda: make_zip({"mimetype": b"application/vnd.oasis.opendocument.text"}),
     None, ContentMismatch, "an OpenDocument or EPUB file"),
    ("a.docx", lambda: make_zip({"notes.txt": b"x"}), None, ContentMismatch,
     "a ZIP archive without word/document.xml"),
    ("a.docx", lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), None, ContentMismatch,
     "a legacy Office file (.doc, .xls or .ppt)"),
    ("a.docx", lambda: b"PK\x03\x04" + bytes(100), None, CorruptFile,
     "not a readable DOCX (damaged ZIP container)"),
    ("a.docx", lambda: _zip_with_members(10_001), None, FileTooLarge,
     "10,002 archive members exceeds the limit of 10,000 (max_zip_members)"),
    ("a.txt", lambda: PDF, None, ContentMismatch, "declared .txt but the content is a PDF"),
    ("a.md", lambda: b"\n  " + PDF, None, ContentMismatch, "declared .md but the content is a PDF"),
    ("a.txt", lambda: DOCX, None, ContentMismatch, "the content is a Word document (DOCX)"),
    ("a.html", lambda: make_zip({"a.txt": b"x"}), None, ContentMismatch, "a ZIP archive"),
    ("a.html", lambda: b"\x89PNG\r\n\x1a\n" + bytes(64), None, ContentMismatch, "a PNG image"),
    ("a.txt", lambda: b"\xff\xd8\xff\xe0" + bytes(64), None, ContentMismatch, "a JPEG image"),
    ("a.txt", lambda: b"GIF89a" + bytes(64), None, ContentMismatch, "a GIF image"),
    ("a.txt", lambda: b"RIFF\x00\x00\x00\x00WEBPVP8 ", None, ContentMismatch, "a WebP image"),
    ("a.txt", lambda: b"\x7fELF\x02\x01\x01" + bytes(64), None, ContentMismatch,
     "declared .txt but the content is an executable program"),
    ("a.md", lambda: b"MZ\x90\x00\x03" + bytes(64), None, ContentMismatch,
     "an executable program"),
    ("a.txt", lambda: b"\x1f\x8b\x08\x00" + bytes(32), None, ContentMismatch, "a gzip archive"),
    ("a.txt", lambda: b"{\\rtf1\\ansi Leave}", None, ContentMismatch, "an RTF document"),
    ("a.txt", lambda: b"SQLite format 3\x00" + bytes(84), None, ContentMismatch, "SQLite"),
    ("a.txt", lambda: b"text\x00with a NUL", None, ContentMismatch,
     "declared .txt but the content is binary, not text (it contains NUL bytes)"),
    ("a.pdf", lambda: PDF, "application/vnd.openxmlformats-officedocument.wordprocessingml"
     ".document", ContentMismatch, "declared Content-Type " + DOCX_MIME + " but the content "
     "is a PDF"),
    ("a.docx", lambda: DOCX, "application/pdf", ContentMismatch,
     "declared Content-Type application/pdf but the content is a Word document (DOCX)"),
    ("a.pdf", lambda: PDF, "text/plain", ContentMismatch,
     "declared Content-Type text/plain but the content is a PDF"),
    ("a.md", lambda: b"# Leave\n", "application/pdf", ContentMismatch,
     "declared Content-Type application/pdf but the content is text"),
    ("a.txt", lambda: b"Leave\n", "image/png", ContentMismatch,
     "declared Content-Type image/png but the content is text"),
    ("a.docx", lambda: DOCX, "application/msword", ContentMismatch,
     "declared Content-Type application/msword"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("filename", "build", "declared", "error", "fragment"),
    REFUSED,
    ids=[f"{row[0]}:{row[4][:40]}" for row in REFUSED],
)
def test_content_that_contradicts_the_declaration_is_refused_naming_the_rule(
    filename: str,
    build: Callable[[], bytes],
    declared: str | None,
    error: type[PoolError],
    fragment: str,
) -> None:
    with pytest.raises(error) as caught:
        detect_format(filename, build(), declared)

    assert type(caught.value) is error
    message = str(caught.value)
    assert message.startswith(f"{filename}: ")
    assert fragment in message


def test_a_mismatch_is_caught_as_an_unsupported_format() -> None:
    with pytest.raises(UnsupportedFormat) as caught:
        detect_format("a.txt", PDF)

    assert caught.value.kind == "content_mismatch"


# --------------------------------------------------------------------------------------------
# The pieces


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (PDF, "pdf"),
        (DOCX, "zip"),
        (b"\x00\x00\x00\x18ftypheic" + bytes(16), "media"),
        (b"ID3\x04\x00" + bytes(16), "media"),
        (b"BM\x36\x00\x0c\x00\x00\x00\x00\x00", "bmp"),
        (b"x" * 257 + b"ustar\x0000" + bytes(8), "tar"),
        (b"ID3 tags explained\n", None),
        (b"The ftyp box\n", None),
        (b"plain words", None),
    ],
)
def test_sniff_believes_short_signatures_only_with_their_binary_context(
    data: bytes, kind: str | None
) -> None:
    assert sniff(data) == kind


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("Leave policy".encode("utf-16-le"), "utf-16-le"),
        ("Leave policy".encode("utf-16-be"), "utf-16-be"),
        (b"Leave policy", None),
        (bytes([0, 1, 0, 0, 2, 0]), None),  # NULs in both columns: binary
        (b"a\x00", None),  # too short to tell
    ],
)
def test_bomless_utf16_needs_nuls_in_one_column_only(data: bytes, encoding: str | None) -> None:
    assert bomless_utf16(data) == encoding


def test_zip_declared_members_reads_the_end_record_without_listing() -> None:
    assert zip_declared_members(make_zip({f"m{i}": b"" for i in range(7)})) == 7
    assert zip_declared_members(b"no archive here") is None


@pytest.mark.parametrize(
    ("header", "media_type"),
    [
        (None, ""),
        ("", ""),
        ("Text/HTML; charset=UTF-8", "text/html"),
        (" application/pdf ", "application/pdf"),
    ],
)
def test_media_type_of_drops_parameters_and_case(header: str | None, media_type: str) -> None:
    assert media_type_of(header) == media_type
