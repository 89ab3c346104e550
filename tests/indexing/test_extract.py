"""Text extraction per format, the bad-file table, upload payloads and the sample corpus."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from indexing.errors import CorruptFile, EmptyDocument, FileTooLarge, PoolError, UnsupportedFormat
from indexing.extract import (
    SUPPORTED_FORMATS,
    ExtractLimits,
    detect_format,
    extract,
    upload_payload,
)
from tests.factories import make_docx, make_pdf, make_zip, make_zip_bomb_docx

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample"
CORPUS = SAMPLE / "corpus"

FRENCH = "Le garçon a déjà mangé la crème brûlée au café.\r\nDeuxième ligne, à côté.\r\n"
HTML_PAGE = b"""<!doctype html>
<html><head>
<meta charset="utf-8"><title>Travel &amp; Expenses</title>
<meta name="Description" content="How to claim travel costs">
<style>p { color: red }</style>
<script>var hidden = "<p>not text</p>";</script>
</head>
<body>
<h1>Claiming   costs</h1>
<p>Claims over &pound;50 need
   a receipt.<br>Submit within 30&nbsp;days.</p>
<ul><li>Rail</li><li>Hotels &ndash; up to &pound;140</li></ul>
<table><tr><th>Item</th><th>Limit</th></tr><tr><td>Meals</td><td>&pound;25</td></tr></table>
<noscript>Enable JavaScript</noscript><template><p>template text</p></template>
</body></html>
"""


# --------------------------------------------------------------------------------------------
# Each format


@pytest.mark.parametrize(
    ("filename", "data", "expected_text", "expected_title"),
    [
        pytest.param(
            "notes.txt",
            b"Leave Policy\n\nTake 25 days a year.\n",
            "Leave Policy\n\nTake 25 days a year.\n",
            "Leave Policy",
            id="text-first-line-title",
        ),
        pytest.param(
            "leave.md",
            b"# Annual leave\n\nTake *25 days* a year.\n",
            "# Annual leave\n\nTake *25 days* a year.\n",
            "Annual leave",
            id="markdown-heading-title",
        ),
        pytest.param(
            "page.htm",
            b"<html><body><h1>Annual leave</h1><p>Take 25 days.</p></body></html>",
            "Annual leave\n\nTake 25 days.",
            "Annual leave",
            id="html-h1-title",
        ),
        pytest.param(
            "leave.docx",
            make_docx([("Heading 1", "Annual leave"), "Take 25 days.", "Ask your manager."]),
            "Annual leave\nTake 25 days.\nAsk your manager.",
            "Annual leave",
            id="docx-heading-title",
        ),
        pytest.param(
            "leave.pdf",
            make_pdf(["Take 25 days."], title="Annual leave"),
            "Take 25 days.",
            "Annual leave",
            id="pdf-metadata-title",
        ),
    ],
)
def test_each_format_extracts_text_and_title(
    filename: str, data: bytes, expected_text: str, expected_title: str
) -> None:
    extracted = extract(filename, data)

    assert extracted.text == expected_text
    assert extracted.title == expected_title
    assert extracted.format == SUPPORTED_FORMATS[Path(filename).suffix]
    assert extracted.warnings == ()
    json.dumps(extracted.metadata)


def test_pdf_page_spans_map_each_page_text_exactly() -> None:
    pages = ["First page.\nIt has two lines.", "Second page.", "Third page, the last."]

    extracted = extract("three.pdf", make_pdf(pages))

    assert extracted.page_spans is not None
    assert [extracted.text[start:end] for start, end in extracted.page_spans] == pages
    assert extracted.text == "\n\n".join(pages)
    assert extracted.metadata["page_count"] == 3


@pytest.mark.parametrize(
    ("pages", "warning"),
    [
        pytest.param([""], "the PDF has no text layer (scanned?)", id="all-pages"),
        pytest.param(["Text.", "", "More."], "page 2 has no text layer", id="one-page"),
    ],
)
def test_pdf_without_text_layer_is_ingested_with_a_warning(pages: list[str], warning: str) -> None:
    extracted = extract("scan.pdf", make_pdf(pages))

    assert extracted.page_spans is not None
    assert len(extracted.page_spans) == len(pages)
    assert len(extracted.warnings) == 1
    assert extracted.warnings[0].startswith(warning)


def test_recoverable_pdf_damage_is_read_without_warnings_or_log_noise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = make_pdf(["Still readable."])
    damaged = data.replace(b"startxref\n", b"startxref\n9", 1)  # a wrong xref offset
    assert damaged != data

    with caplog.at_level(logging.WARNING):
        extracted = extract("damaged.pdf", damaged)

    assert extracted.text == "Still readable."
    assert caplog.records == []


def test_markdown_front_matter_gives_title_and_json_metadata() -> None:
    data = b"""---
title: Annual Leave Policy
owner: People Team
effective: 2024-04-01
reviewed: 2024-03-01T10:30:00
tags: [hr, leave]
---
# Something else

Body text.
"""
    extracted = extract("leave.md", data)

    assert extracted.title == "Annual Leave Policy"
    assert extracted.metadata == {
        "owner": "People Team",
        "effective": "2024-04-01",
        "reviewed": "2024-03-01T10:30:00",
        "tags": ["hr", "leave"],
    }
    assert extracted.text == "# Something else\n\nBody text.\n"
    json.dumps(extracted.metadata)


def test_markdown_template_tags_are_stripped() -> None:
    data = b"""# Leave

Days: {{ site.leave_days }} per year.
{% include policy-footer.md %}
{%- if page.draft -%}
Keep {% raw %}this{% endraw %} line.
{% comment
   spans lines
%}
End.
"""
    extracted = extract("leave.md", data)

    assert extracted.text == "# Leave\n\nDays:  per year.\nKeep this line.\nEnd.\n"


@pytest.mark.parametrize(
    ("data", "title", "warning"),
    [
        pytest.param(b"---\n- a\n- b\n---\nText.\n", None, "front matter is not", id="list"),
        pytest.param(b"---\n---\nText.\n", None, None, id="empty"),
        pytest.param(b"Text.\n\nTitle Later\n===========\n", "Title Later", None, id="setext"),
        pytest.param(b"No heading here.\n", None, None, id="no-title"),
    ],
)
def test_markdown_title_fallbacks_and_ignored_front_matter(
    data: bytes, title: str | None, warning: str | None
) -> None:
    extracted = extract("doc.md", data)

    assert extracted.title == title
    assert extracted.metadata == {}
    if warning is None:
        assert extracted.warnings == ()
    else:
        assert [w.startswith(warning) for w in extracted.warnings] == [True]


def test_html_drops_hidden_content_and_decodes_entities() -> None:
    extracted = extract("travel.html", HTML_PAGE)

    assert extracted.text == (
        "Claiming costs\n\n"
        "Claims over £50 need a receipt.\nSubmit within 30\u00a0days.\n\n"
        "Rail\nHotels – up to £140\n\n"
        "Item\tLimit\nMeals\t£25"
    )
    assert extracted.title == "Travel & Expenses"
    assert extracted.metadata == {"description": "How to claim travel costs"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            '<meta charset="iso-8859-1"><p>Crème brûlée</p>'.encode("latin-1"),
            "Crème brûlée",
            id="meta-charset",
        ),
        pytest.param(
            '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
            "<p>“Quoted” – dash</p>".encode("cp1252"),
            "“Quoted” – dash",
            id="http-equiv",
        ),
        pytest.param(
            '<meta charset="ISO-8859-1"><p>“Smart” quotes</p>'.encode("cp1252"),
            "“Smart” quotes",
            id="latin-1-read-as-windows-1252",
        ),
        pytest.param("<p>Grüße</p>".encode("utf-16"), "Grüße", id="utf16-bom"),
        pytest.param(b'<meta charset="nonsense"><p>plain</p>', "plain", id="unknown-charset"),
    ],
)
def test_html_charset_comes_from_bom_or_meta(data: bytes, expected: str) -> None:
    assert extract("page.html", data).text == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(FRENCH.encode("latin-1"), FRENCH, id="latin-1"),
        pytest.param(FRENCH.encode("utf-16"), FRENCH, id="utf-16-bom"),
        pytest.param(FRENCH.encode("utf-8-sig"), FRENCH, id="utf-8-bom"),
        pytest.param(FRENCH.encode("utf-8"), FRENCH, id="utf-8"),
    ],
)
def test_text_encodings_are_decoded_and_newlines_normalised(data: bytes, expected: str) -> None:
    extracted = extract("lettre.txt", data)

    assert extracted.text == expected.replace("\r\n", "\n")


def test_text_is_normalised_to_nfc_lf_and_no_nul() -> None:
    data = "Cafe\u0301\r\nold mac\rend\x00.".encode("utf-16")

    assert extract("n.txt", data).text == "Café\nold mac\nend."


def test_docx_keeps_paragraphs_and_table_rows_in_document_order() -> None:
    data = make_docx(
        [
            ("Title", "Expenses"),
            "Before the table.",
            [["Item", "Limit"], ["Meals", "£25 a day"]],
            ("Heading 2", "Receipts"),
            "After the table.",
        ],
        title="Expenses Policy",
        author="Finance",
    )

    extracted = extract("expenses.docx", data)

    assert extracted.text == (
        "Expenses\nBefore the table.\nItem\tLimit\nMeals\t£25 a day\nReceipts\nAfter the table."
    )
    assert extracted.title == "Expenses Policy"
    assert extracted.metadata["author"] == "Finance"
    json.dumps(extracted.metadata)


# --------------------------------------------------------------------------------------------
# Bad files

TINY = ExtractLimits(max_bytes=1_000, max_pages=2, max_chars=100)

BAD_FILES: list[tuple[str, Callable[[], bytes], ExtractLimits | None, type[PoolError]]] = [
    ("truncated.pdf", lambda: make_pdf(["Some text."])[:300], None, CorruptFile),
    ("garbage.pdf", lambda: b"this is not a pdf at all", None, CorruptFile),
    ("locked.pdf", lambda: make_pdf(["Secret."], encrypt_with="pw"), None, CorruptFile),
    ("bomb.docx", make_zip_bomb_docx, None, FileTooLarge),
    ("plain.docx", lambda: b"just some text, not a zip", None, CorruptFile),
    ("sheet.docx", lambda: make_zip({"xl/workbook.xml": b"<x/>"}), None, CorruptFile),
    (
        "legacy.docx",
        lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500),
        None,
        UnsupportedFormat,
    ),
    ("junk.txt", lambda: bytes(range(256)) * 4, None, CorruptFile),
    ("controls.txt", lambda: b"a\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f" * 40, None, CorruptFile),
    ("disguised.md", lambda: make_pdf(["Hello."]), None, UnsupportedFormat),
    ("empty.txt", lambda: b"", None, EmptyDocument),
    ("empty.pdf", lambda: b"", None, EmptyDocument),
    ("blank.html", lambda: b"<html><script>x()</script><p>  </p></html>", None, EmptyDocument),
    ("spaces.md", lambda: b"---\ntitle: Only front matter\n---\n \n\t\n", None, EmptyDocument),
    ("broken.md", lambda: b"---\ntitle: [unclosed\n---\nText.\n", None, CorruptFile),
    ("cycle.md", lambda: b"---\nloop: &a [*a]\n---\nText.\n", None, CorruptFile),
    ("huge.txt", lambda: b"word " * 300, TINY, FileTooLarge),
    ("huge.pdf", lambda: b"not even parsed" * 100, TINY, FileTooLarge),
    ("long.pdf", lambda: make_pdf(["One.", "Two.", "Three."]), TINY, FileTooLarge),
    ("wordy.html", lambda: b"<p>" + b"word " * 150 + b"</p>", TINY, FileTooLarge),
]


@pytest.mark.parametrize(
    ("filename", "build", "limits", "error"), BAD_FILES, ids=[row[0] for row in BAD_FILES]
)
def test_bad_files_raise_their_specific_error_naming_the_file(
    filename: str,
    build: Callable[[], bytes],
    limits: ExtractLimits | None,
    error: type[PoolError],
) -> None:
    with pytest.raises(error) as caught:
        extract(filename, build(), limits or ExtractLimits())

    assert type(caught.value) is error
    assert str(caught.value).startswith(f"{filename}: ")


@pytest.mark.parametrize("filename", ["budget.xlsx", "setup.exe", "README", "archive.tar.gz"])
def test_unsupported_extension_lists_the_supported_ones(filename: str) -> None:
    with pytest.raises(UnsupportedFormat) as caught:
        extract(filename, b"anything")

    message = str(caught.value)
    assert message.startswith(f"{filename}: ")
    assert ".docx, .htm, .html, .markdown, .md, .pdf, .text, .txt" in message


@pytest.mark.parametrize(
    ("limits", "setting"),
    [
        pytest.param(ExtractLimits(max_zip_members=3), "max_zip_members", id="members"),
        pytest.param(ExtractLimits(max_unzipped_bytes=5_000), "max_unzipped_bytes", id="total"),
        pytest.param(ExtractLimits(max_zip_ratio=1_000_000), None, id="within-limits"),
    ],
)
def test_docx_archive_limits_are_checked_before_parsing(
    limits: ExtractLimits, setting: str | None
) -> None:
    data = make_docx(["A normal document."])

    if setting is None:
        assert extract("ok.docx", data, limits).text == "A normal document."
        return
    with pytest.raises(FileTooLarge, match=setting):
        extract("big.docx", data, limits)


def test_zip_bomb_message_names_the_member_and_the_limit() -> None:
    with pytest.raises(FileTooLarge) as caught:
        extract("bomb.docx", make_zip_bomb_docx())

    assert "word/media/image1.bin" in str(caught.value)
    assert "max_zip_ratio" in str(caught.value)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("Policy.PDF", "pdf"),
        ("notes.TXT", "text"),
        ("guide.markdown", "markdown"),
        ("page.htm", "html"),
        ("dir.v2/report.docx", "docx"),
    ],
)
def test_detect_format_goes_by_extension_whatever_its_case(filename: str, expected: str) -> None:
    data = {"pdf": make_pdf(["x"]), "docx": make_docx(["x"])}.get(expected, b"plain text")

    assert detect_format(filename, data) == expected


# --------------------------------------------------------------------------------------------
# Upload payload


def test_upload_payload_sends_pdf_bytes_as_they_are() -> None:
    data = make_pdf(["Page text."])

    payload = upload_payload("Handbook 2024.pdf", data, extract("Handbook 2024.pdf", data))

    assert payload == ("Handbook 2024.pdf", data, "application/pdf")


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("notes.txt", FRENCH.encode("latin-1")),
        ("leave.md", b"---\ntitle: Leave\n---\nBody {{ x }}.\n"),
        ("page.html", HTML_PAGE),
        ("policy.docx", make_docx(["Docx body."])),
    ],
)
def test_upload_payload_sends_other_formats_as_utf8_extracted_text(
    filename: str, data: bytes
) -> None:
    extracted = extract(filename, data)

    name, content, mime_type = upload_payload(filename, data, extracted)

    assert (name, mime_type) == (filename, "text/plain")
    assert content.decode("utf-8") == extracted.text
    assert extracted.upload_mime_type == "text/plain"


# --------------------------------------------------------------------------------------------
# The sample corpus


def _corpus_files() -> list[Path]:
    return sorted(path for path in CORPUS.rglob("*") if path.is_file())


@pytest.mark.parametrize("path", _corpus_files(), ids=lambda path: path.name)
def test_every_sample_document_extracts_with_a_title(path: Path) -> None:
    extracted = extract(path.name, path.read_bytes())

    assert extracted.title
    assert len(extracted.text.split()) >= 250
    assert extracted.warnings == ()


def test_sample_corpus_has_all_formats_and_multi_page_pdfs() -> None:
    files = _corpus_files()
    formats = {SUPPORTED_FORMATS[path.suffix.lower()] for path in files}
    pdf_pages = [
        len(extract(path.name, path.read_bytes()).page_spans or ())
        for path in files
        if path.suffix == ".pdf"
    ]

    assert 15 <= len(files) <= 25
    assert formats == set(SUPPORTED_FORMATS.values())
    assert sum(pages >= 2 for pages in pdf_pages) >= 2


def test_sample_manifest_rows_match_the_documents() -> None:
    with (SAMPLE / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))

    assert rows
    assert any(row["groups"] for row in rows)
    for row in rows:
        path = CORPUS / row["path"]
        assert extract(path.name, path.read_bytes()).title == row["title"]


def test_committed_pdf_and_docx_are_up_to_date_with_their_sources(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "make_sample_corpus.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True)

    generated = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*.*"))
    assert len(generated) == len(list((SAMPLE / "sources").rglob("*.txt")))
    for relative in generated:
        fresh = extract(relative.name, (tmp_path / relative).read_bytes())
        committed = extract(relative.name, (CORPUS / relative).read_bytes())
        assert (fresh.title, fresh.text) == (committed.title, committed.text), relative
