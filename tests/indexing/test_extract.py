"""Text extraction per format, the bad-file table, upload payloads and the sample corpus."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import docx
import docx.opc.oxml
import docx.oxml.parser
import docx.text.paragraph
import pytest

from indexing.errors import (
    ContentMismatch,
    CorruptFile,
    EmptyDocument,
    EncryptedFile,
    FileTooLarge,
    PoolError,
    UnsupportedFormat,
)
from indexing.extract import ExtractLimits, _normalise, extract, upload_payload
from indexing.formats import SUPPORTED_FORMATS, detect_format
from tests.factories import (
    make_docx,
    make_docx_edited,
    make_pdf,
    make_pdf_drawing,
    make_zip,
    make_zip_bomb_docx,
)

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
        pytest.param(
            '<meta charset="koi8-r"><p>Отпуск</p>'.encode("koi8-r"), "Отпуск", id="koi8-r"
        ),
        # Codecs Python has and browsers do not: ignored, never a decoding error or surrogates.
        *(
            pytest.param(
                f'<meta charset="{name}"><p>Café +2AA- policy</p>'.encode("latin-1"),
                "Café +2AA- policy",
                id=f"not-for-html-{name}",
            )
            for name in ("undefined", "punycode", "idna", "utf-7", "base64", "rot13")
        ),
    ],
)
def test_html_charset_comes_from_bom_or_meta(data: bytes, expected: str) -> None:
    assert extract("page.html", data).text == expected


@pytest.mark.parametrize(
    ("label", "codec", "text"),
    [
        ("gb2312", "gb2312", "年假政策"),
        ("x-gbk", "gbk", "年假政策"),
        ("iso-8859-9", "cp1254", "Yıllık izin"),
        ("latin5", "cp1254", "Yıllık izin"),
        ("tis-620", "tis-620", "นโยบายการลา"),
        ("windows-949", "cp949", "연차 휴가"),
        ("ms932", "cp932", "年次休暇"),
        ("Shift_JIS", "cp932", "年次休暇①"),  # a Windows-31J character, as browsers read it
        ("iso-8859-8-i", "iso-8859-8", "מדיניות חופשה"),
        ("big5-hkscs", "big5hkscs", "年假政策"),
        ("windows-874", "cp874", "ลาพักร้อน"),
        ("x-cp1253", "cp1253", "Άδεια"),
        ("x-euc-jp", "euc-jp", "年次休暇"),
        ("csisolatin9", "iso-8859-15", "5 € par jour"),
        ("x-mac-ukrainian", "mac-cyrillic", "Відпустка"),
    ],
)
def test_html_labels_browsers_know_are_decoded_as_declared(
    label: str, codec: str, text: str
) -> None:
    page = f'<meta charset="{label}"><p>{text}</p>'.encode(codec)

    extracted = extract("page.html", page)

    assert (extracted.text, extracted.warnings) == (text, ())


def test_text_a_decoder_left_lone_surrogates_in_is_stored_with_replacement_characters() -> None:
    decoded = b"Leave +2AA- policy".decode("utf-7")
    assert "\ud800" in decoded

    assert _normalise(decoded) == "Leave \ufffd policy"


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
    ("garbage.pdf", lambda: b"this is not a pdf at all", None, ContentMismatch),
    ("locked.pdf", lambda: make_pdf(["Secret."], encrypt_with="pw"), None, EncryptedFile),
    ("bomb.docx", make_zip_bomb_docx, None, FileTooLarge),
    ("plain.docx", lambda: b"just some text, not a zip", None, ContentMismatch),
    ("sheet.docx", lambda: make_zip({"xl/workbook.xml": b"<x/>"}), None, ContentMismatch),
    (
        "legacy.docx",
        lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500),
        None,
        ContentMismatch,
    ),
    ("junk.txt", lambda: bytes(range(256)) * 4, None, ContentMismatch),
    (
        "controls.txt",
        lambda: b"a\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f" * 40,
        None,
        ContentMismatch,
    ),
    ("disguised.md", lambda: make_pdf(["Hello."]), None, ContentMismatch),
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
# Parser limits: each refusal names its limit and value

BILLION_LAUGHS = (
    '<!DOCTYPE w:document [<!ENTITY a "lol">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    + "]>"
)


def _with_dtd(dtd: str, reference: str) -> Callable[[str], str]:
    def edit(xml: str) -> str:
        root = xml.index("<w:document")
        return (xml[:root] + dtd + xml[root:]).replace("Body.", f"Body {reference}.")

    return edit


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        pytest.param(
            _with_dtd('<!DOCTYPE w:document [<!ENTITY x SYSTEM "file:///etc/passwd">]>', "&x;"),
            "declares a DTD (<!DOCTYPE>)",
            id="external-entity",
        ),
        pytest.param(_with_dtd(BILLION_LAUGHS, "&j;"), "declares a DTD", id="billion-laughs"),
        pytest.param(
            _with_dtd("<!--" + "x" * 70_000 + "-->", ""),
            "more than 65,536 bytes of comments or instructions before its root",
            id="prolog-too-long-to-check",
        ),
    ],
)
def test_docx_xml_with_a_dtd_is_refused_before_python_docx_parses_it(
    edit: Callable[[str], str], fragment: str
) -> None:
    with pytest.raises(CorruptFile) as caught:
        extract("entities.docx", make_docx_edited(edit))

    assert str(caught.value).startswith("entities.docx: XML part 'word/document.xml' ")
    assert fragment in str(caught.value)


def test_docx_xml_with_a_comment_before_its_root_is_still_read() -> None:
    data = make_docx_edited(_with_dtd("<!-- written by hand -->", "kept"))

    assert extract("commented.docx", data).text == "Body kept."


def test_python_docx_parser_never_resolves_entities(tmp_path: Path) -> None:
    """Behind the DTD refusal: python-docx's own parsers leave entities unexpanded."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    xml = (
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "{secret.as_uri()}"><!ENTITY y "expanded">]><r>&x;&y;</r>'
    )

    for parse in (docx.oxml.parser.parse_xml, docx.opc.oxml.parse_xml):
        text = "".join(parse(xml.encode()).itertext())
        assert "TOP SECRET" not in text and "expanded" not in text


def test_docx_xml_part_over_its_limit_is_refused() -> None:
    data = make_docx(["A paragraph of ordinary length."] * 50)

    with pytest.raises(FileTooLarge) as caught:
        extract("long.docx", data, ExtractLimits(max_xml_part_bytes=4_000))

    assert "XML part 'word/document.xml' of " in str(caught.value)
    assert "exceeds the limit of 4,000 (max_xml_part_bytes)" in str(caught.value)


def test_docx_text_over_max_chars_stops_extraction() -> None:
    data = make_docx(["Forty characters of text in a paragraph."] * 10)

    with pytest.raises(FileTooLarge, match=r"exceeds the limit of 100 \(max_chars\)"):
        extract("wordy.docx", data, ExtractLimits(max_chars=100))


def test_docx_title_lookup_does_not_resolve_each_paragraphs_style(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Paragraph.style`` resolves the default style afresh for every unstyled paragraph
    (about a millisecond each: minutes for a long document); titles come from one table."""
    data = make_docx(["Unstyled."] * 30 + [("Heading 1", "Found Late"), "More."])

    def refuse(_paragraph: object) -> None:
        raise AssertionError("Paragraph.style called")

    monkeypatch.setattr(docx.text.paragraph.Paragraph, "style", property(refuse))

    assert extract("late.docx", data).title == "Found Late"


@pytest.mark.parametrize(
    "markup",
    [
        pytest.param("<a" * 500_000, id="unclosed-tag-starts"),
        pytest.param("</" * 500_000, id="unclosed-end-tags"),
        pytest.param("<!" * 500_000, id="unclosed-declarations"),
        pytest.param("<?" * 500_000, id="unclosed-instructions"),
        pytest.param("<svg>" * 5_000 + "</svg>" * 5_000, id="nested-hidden-elements"),
    ],
)
def test_malformed_html_is_read_in_one_pass(markup: str) -> None:
    """html.parser takes ~13 s for 100 KB of ``<a``, growing with the square of the size;
    these would run far past the suite's timeout if parsing were quadratic again."""
    data = ("<p>Leave policy.</p>" + markup).encode()

    assert extract("odd.html", data).text.startswith("Leave policy.")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("{%" * 200_000, id="unclosed-tags"),
        pytest.param("{{" * 200_000, id="unclosed-expressions"),
        pytest.param("{{ x }} " * 100_000, id="many-tags-on-one-line"),
        pytest.param("word " * 200_000 + "\n", id="one-long-line"),
        pytest.param("# " + "# x" * 100_000 + "\n", id="long-heading"),
    ],
)
def test_pathological_markdown_is_read_in_one_pass(body: str) -> None:
    extracted = extract("odd.md", ("Leave policy.\n\n" + body).encode())

    assert extracted.text.startswith("Leave policy.")


def test_html_nesting_deeper_than_the_limit_is_refused() -> None:
    data = ("<div>" * 60 + "Deep.").encode()

    with pytest.raises(FileTooLarge) as caught:
        extract("deep.html", data, ExtractLimits(max_html_depth=50))

    assert (
        str(caught.value)
    ) == "deep.html: HTML elements nested 51 deep exceeds the limit of 50 (max_html_depth)"


def test_sloppy_html_with_thousands_of_unclosed_tags_is_read() -> None:
    assert extract("sloppy.html", ("<b>" * 5_000 + "Bold.").encode()).text == "Bold."


def test_front_matter_over_its_limit_is_refused() -> None:
    data = ("---\n" + "key: value\n" * 10 + "---\nBody.\n").encode()

    with pytest.raises(FileTooLarge) as caught:
        extract("front.md", data, ExtractLimits(max_front_matter_chars=50))

    assert "front matter of 110 characters exceeds the limit of 50 (max_front_matter_chars)" in (
        str(caught.value)
    )


TEXT_PAGE = b"BT /F1 12 Tf 72 700 Td (Keepers climb the lighthouse stairs at dusk.) Tj ET\n"


@pytest.mark.parametrize(
    ("pages", "refused"),
    [pytest.param(1, False, id="one-page"), pytest.param(40, True, id="shared-by-40-pages")],
)
def test_pdf_page_content_is_counted_on_every_page_that_draws_it(pages: int, refused: bool) -> None:
    data = make_pdf_drawing(TEXT_PAGE * 100, pages=pages)  # 7.8 KB of operators per page
    limits = ExtractLimits(max_pdf_content_bytes=200_000)

    if not refused:
        assert extract("drawn.pdf", data, limits).text.startswith("Keepers climb")
        return
    with pytest.raises(FileTooLarge) as caught:
        extract("drawn.pdf", data, limits)
    assert "bytes of page content exceeds the limit of 200,000 (max_pdf_content_bytes)" in str(
        caught.value
    )


def test_pdf_stream_inflating_past_pypdfs_limit_is_refused() -> None:
    data = make_pdf_drawing(b" " * 80_000_000)  # 80 MB of spaces, ~80 KB compressed

    with pytest.raises(FileTooLarge) as caught:
        extract("bomb.pdf", data)

    assert str(caught.value).startswith("bomb.pdf: the PDF exceeds a parser safety limit (")


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        pytest.param("pw", "the PDF is encrypted with a password", id="user-password"),
        pytest.param("", "it opens without a password but restricts", id="owner-password-only"),
    ],
)
def test_encrypted_pdfs_are_refused_saying_what_to_do(password: str, fragment: str) -> None:
    with pytest.raises(EncryptedFile) as caught:
        extract("locked.pdf", make_pdf(["Secret."], encrypt_with=password))

    assert fragment in str(caught.value)
    assert caught.value.kind == "encrypted_file"


@pytest.mark.parametrize(
    ("filename", "data", "limits", "message"),
    [
        pytest.param(
            "big.txt",
            b"x" * 2_000,
            ExtractLimits(max_bytes=1_000),
            "big.txt: 2,000 bytes exceeds the limit of 1,000 (max_file_bytes)",
            id="bytes",
        ),
        pytest.param(
            "long.pdf",
            make_pdf(["One.", "Two.", "Three."]),
            ExtractLimits(max_pages=2),
            "long.pdf: 3 pages exceeds the limit of 2 (max_pdf_pages)",
            id="pages",
        ),
    ],
)
def test_configurable_limits_are_named_as_their_settings(
    filename: str, data: bytes, limits: ExtractLimits, message: str
) -> None:
    with pytest.raises(FileTooLarge) as caught:
        extract(filename, data, limits)

    assert str(caught.value) == message


def test_utf16_text_without_a_bom_is_read_with_a_warning() -> None:
    extracted = extract("notepad.txt", FRENCH.encode("utf-16-le"))

    assert extracted.text == FRENCH.replace("\r\n", "\n")
    assert extracted.warnings == (
        "not UTF-8; decoded as utf-16-le (best guess), check accented characters",
    )


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
