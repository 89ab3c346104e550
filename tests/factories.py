"""Small builders for test inputs: real PDF, DOCX and ZIP bytes made in memory."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import docx
from fpdf import FPDF
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

FIXED_DATE = datetime(2024, 1, 15, 9, 0, tzinfo=UTC)

#: A DOCX block: a plain paragraph, a ``(style, text)`` paragraph, or a table as rows of cells.
DocxBlock = str | tuple[str, str] | list[list[str]]


def make_pdf(
    pages: Sequence[str], *, title: str | None = None, encrypt_with: str | None = None
) -> bytes:
    """A PDF with one page per string, in a core font (so latin-1 text only).

    An empty string makes a page with only a drawn rectangle: what a scan without OCR looks like
    to a text extractor.
    """
    pdf = FPDF()
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_font("Helvetica", size=12)
    if title is not None:
        pdf.set_title(title)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 6, text)
        else:
            pdf.rect(20, 20, 120, 80, style="F")
    if encrypt_with is not None:
        pdf.set_encryption(owner_password="owner", user_password=encrypt_with)
    return bytes(pdf.output())


def make_docx(
    blocks: Sequence[DocxBlock], *, title: str | None = None, author: str | None = None
) -> bytes:
    """A DOCX with the given paragraphs and tables, in order, and optional core properties."""
    document = docx.Document()
    properties = document.core_properties
    properties.title = title or ""
    properties.author = author or ""
    properties.created = properties.modified = FIXED_DATE
    for block in blocks:
        if isinstance(block, str):
            document.add_paragraph(block)
        elif isinstance(block, tuple):
            style, text = block
            document.add_paragraph(text, style=style)
        else:
            _add_table(document, block)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _add_table(document: docx.document.Document, rows: list[list[str]]) -> None:
    table = document.add_table(rows=len(rows), cols=max(len(row) for row in rows))
    for cells, row in zip(table.rows, rows, strict=False):
        for cell, text in zip(cells.cells, row, strict=False):
            cell.text = text


def make_zip_bomb_docx(inflated_bytes: int = 40 * 1024 * 1024) -> bytes:
    """A DOCX-shaped ZIP with one member of ``inflated_bytes`` zeros that compresses to ~40 KB.

    Written in chunks so the test never holds the inflated member in memory.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
        chunk = bytes(1024 * 1024)
        with archive.open("word/media/image1.bin", "w", force_zip64=True) as member:
            for _ in range(inflated_bytes // len(chunk)):
                member.write(chunk)
    return out.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    """A deflated ZIP archive with the given members."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def make_docx_edited(edit: Callable[[str], str], blocks: Sequence[DocxBlock] = ("Body.",)) -> bytes:
    """A DOCX of ``blocks`` whose ``word/document.xml`` is passed through ``edit`` (to plant a
    DTD, say), every other member kept as python-docx wrote it."""
    original = zipfile.ZipFile(io.BytesIO(make_docx(blocks)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member in original.infolist():
            content = original.read(member.filename)
            if member.filename == "word/document.xml":
                content = edit(content.decode("utf-8")).encode("utf-8")
            archive.writestr(member.filename, content)
    return out.getvalue()


def make_pdf_drawing(content: bytes, *, pages: int = 1) -> bytes:
    """A PDF whose ``pages`` pages all draw one shared, compressed content stream ``content``
    (raw PDF operators, Helvetica available as ``/F1``)."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    stream = DecodedStreamObject()
    stream.set_data(content)
    shared = writer._add_object(stream.flate_encode())
    resources = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Contents")] = shared
        page[NameObject("/Resources")] = resources
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
