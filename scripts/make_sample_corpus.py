"""Generate the sample corpus's PDF and DOCX documents from the text sources.

Each source in ``sample/sources/`` is a ``.txt`` file: the first line is the title, then
paragraphs separated by blank lines. A line starting ``# `` is a section heading, ``- `` a bullet
item, and consecutive lines starting ``|`` form a table (``| cell | cell |``, first row the header).
Dates and metadata are fixed, so re-running produces byte-identical files.

Example: python scripts/make_sample_corpus.py [--out sample/corpus]
"""

from __future__ import annotations

import argparse
import io
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import docx
from docx.document import Document
from docx.opc.coreprops import CoreProperties
from fpdf import FPDF

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "sample" / "sources"
CORPUS = ROOT / "sample" / "corpus"

COMPANY = "Tessaline Instruments Ltd"
CREATED = datetime(2024, 1, 15, 9, 0, tzinfo=UTC)
ZIP_TIMESTAMP = (2024, 1, 15, 9, 0, 0)

#: Source (relative to sample/sources, without .txt) -> format it is generated in.
DOCUMENTS = {
    "finance/expenses": "pdf",
    "finance/travel": "pdf",
    "hr/parental-leave": "pdf",
    "operations/health-and-safety": "pdf",
    "it/information-security": "docx",
    "it/equipment-and-laptops": "docx",
    "hr/performance-reviews": "docx",
    "hr/pay-review-procedure": "docx",
}


@dataclass(frozen=True)
class Block:
    kind: str  # "heading" | "paragraph" | "bullet" | "table"
    text: str = ""
    rows: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Source:
    title: str
    department: str
    blocks: tuple[Block, ...]


def parse_source(path: Path) -> Source:
    """Read a source file into its title and blocks."""
    title, _, body = path.read_text(encoding="utf-8").partition("\n")
    blocks: list[Block] = []
    rows: list[tuple[str, ...]] = []
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("|"):
            rows.append(tuple(cell.strip() for cell in line.strip("|").split("|")))
            continue
        if rows:
            blocks.append(Block("table", rows=tuple(rows)))
            rows = []
        if line.startswith("# "):
            blocks.append(Block("heading", line[2:]))
        elif line.startswith("- "):
            blocks.append(Block("bullet", line[2:]))
        elif line:
            blocks.append(Block("paragraph", line))
    if rows:
        blocks.append(Block("table", rows=tuple(rows)))
    return Source(title.strip(), path.parent.name, tuple(blocks))


# --------------------------------------------------------------------------------------------
# PDF


class _PolicyPDF(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(format="A4")
        self.policy_title = title

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("Helvetica", size=8)
        self.cell(0, 5, f"{COMPANY} - {self.policy_title} - page {self.page_no()} of {{nb}}")


def render_pdf(source: Source) -> bytes:
    """Lay the source out on A4 pages in a core font (latin-1 text only)."""
    pdf = _PolicyPDF(source.title)
    pdf.set_creation_date(CREATED)
    pdf.set_title(source.title)
    pdf.set_author(COMPANY)
    pdf.set_subject(f"{source.department} policy")
    pdf.set_creator("scripts/make_sample_corpus.py")
    pdf.set_producer("fpdf2")
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(True, margin=20)
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=18)
    pdf.multi_cell(0, 9, source.title)
    pdf.ln(3)
    for block in source.blocks:
        _render_pdf_block(pdf, block)
    return bytes(pdf.output())


def _render_pdf_block(pdf: FPDF, block: Block) -> None:
    if block.kind == "heading":
        pdf.ln(2)
        pdf.set_font("Helvetica", style="B", size=12)
        pdf.multi_cell(0, 7, block.text)
    elif block.kind == "bullet":
        pdf.set_font("Helvetica", size=10.5)
        pdf.cell(6, 5.5, "-")
        pdf.multi_cell(0, 5.5, block.text)
    elif block.kind == "table":
        pdf.set_font("Helvetica", size=9.5)
        with pdf.table(first_row_as_headings=True) as table:
            for cells in block.rows:
                table.row(cells)
    else:
        pdf.set_font("Helvetica", size=10.5)
        pdf.multi_cell(0, 5.5, block.text)
    pdf.ln(1.5)


# --------------------------------------------------------------------------------------------
# DOCX


def render_docx(source: Source) -> bytes:
    """A Word document with Title, Heading 1, List Bullet styles and grid tables."""
    document = docx.Document()
    _set_core_properties(document.core_properties, source)
    document.add_heading(source.title, level=0)
    for block in source.blocks:
        if block.kind == "heading":
            document.add_heading(block.text, level=1)
        elif block.kind == "bullet":
            document.add_paragraph(block.text, style="List Bullet")
        elif block.kind == "table":
            _add_table(document, block.rows)
        else:
            document.add_paragraph(block.text)
    out = io.BytesIO()
    document.save(out)
    return _with_fixed_timestamps(out.getvalue())


def _set_core_properties(properties: CoreProperties, source: Source) -> None:
    properties.title = source.title
    properties.author = COMPANY
    properties.subject = f"{source.department} policy"
    properties.comments = "Fictional sample policy for the Knowledge Pool demo."
    properties.last_modified_by = COMPANY
    properties.revision = 1
    properties.created = properties.modified = CREATED


def _add_table(document: Document, rows: tuple[tuple[str, ...], ...]) -> None:
    table = document.add_table(rows=len(rows), cols=len(rows[0]))
    table.style = "Table Grid"
    for row, cells in zip(table.rows, rows, strict=True):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    for cell in table.rows[0].cells:
        for run in cell.paragraphs[0].runs:
            run.bold = True


def _with_fixed_timestamps(data: bytes) -> bytes:
    """Rewrite the ZIP container with fixed member dates (python-docx stamps the current time)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for member in src.infolist():
            info = zipfile.ZipInfo(member.filename, date_time=ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(info, src.read(member))
    return out.getvalue()


# --------------------------------------------------------------------------------------------

RENDERERS = {"pdf": render_pdf, "docx": render_docx}


def generate(out_dir: Path) -> list[Path]:
    """Write every generated document under ``out_dir``; return the paths that changed."""
    changed = []
    for name, fmt in DOCUMENTS.items():
        data = RENDERERS[fmt](parse_source(SOURCES / f"{name}.txt"))
        target = out_dir / f"{name}.{fmt}"
        if not target.exists() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            changed.append(target)
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CORPUS, help="output directory")
    args = parser.parse_args()
    changed = generate(args.out)
    print(f"{len(DOCUMENTS)} documents, {len(changed)} written to {args.out}")


if __name__ == "__main__":
    main()
