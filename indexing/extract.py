"""Text extraction per format: PDF, DOCX, HTML, Markdown and plain text.

``extract`` turns an uploaded file into the text the pool indexes and cites. PDF keeps its page
structure (``page_spans``) because PDFs are uploaded as they are and cited by page; every other
format is converted to text, and that exact text is what gets uploaded as ``text/plain`` and cited
by character offsets, so nothing here rewrites text beyond newline, NUL and NFC normalisation.

Untrusted input is assumed throughout: sizes are checked before parsing, DOCX archives are
inspected for decompression bombs before python-docx sees them, and any parser failure becomes a
``CorruptFile`` that names the file.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import threading
import unicodedata
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import PurePath
from typing import Any

import charset_normalizer
import docx
import pypdf
import yaml
from docx.table import Table
from docx.text.paragraph import Paragraph

from indexing.errors import CorruptFile, EmptyDocument, FileTooLarge, PoolError, UnsupportedFormat

SUPPORTED_FORMATS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
}

_PDF_MIME = "application/pdf"
_TEXT_MIME = "text/plain"


@dataclass(frozen=True)
class ExtractLimits:
    """Limits that keep one hostile or oversized file from exhausting the server."""

    max_bytes: int = 50 * 1024 * 1024
    max_pages: int = 2_000
    max_chars: int = 10_000_000
    max_unzipped_bytes: int = 200 * 1024 * 1024
    max_zip_ratio: float = 100.0
    max_zip_members: int = 10_000


DEFAULT_LIMITS = ExtractLimits()


@dataclass(frozen=True)
class Extracted:
    """A document's text and what was learned about it on the way."""

    text: str
    format: str
    title: str | None
    metadata: dict[str, Any]
    page_spans: tuple[tuple[int, int], ...] | None
    upload_mime_type: str
    warnings: tuple[str, ...]


@dataclass
class _Parsed:
    """What a per-format extractor returns; ``extract`` adds the format and checks limits."""

    text: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    page_spans: tuple[tuple[int, int], ...] | None = None
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Public entry points


def detect_format(filename: str, data: bytes) -> str:
    """Return the format name for ``filename``, after checking the content agrees with it.

    The extension decides; the first bytes may only veto. Content recognisably of another type
    (a PDF named ``.txt``, a legacy ``.doc`` renamed ``.docx``) raises ``UnsupportedFormat``;
    a PDF or DOCX name over content that is no PDF or ZIP at all raises ``CorruptFile``.
    """
    suffix = PurePath(filename).suffix.lower()
    fmt = SUPPORTED_FORMATS.get(suffix)
    if fmt is None:
        found = f"unsupported format '{suffix}'" if suffix else "no file extension"
        raise UnsupportedFormat(f"{filename}: {found}; supported: {_supported_list()}")
    sniffed = _sniff(data)
    expected = _EXPECTED_CONTAINER.get(fmt)
    if fmt == "pdf" and sniffed is None and b"%PDF-" in data[:1024]:
        sniffed = "pdf"  # readers accept a header preceded by up to 1 KiB of junk
    if sniffed == expected:
        return fmt
    if sniffed is not None:
        raise UnsupportedFormat(
            f"{filename}: named as {fmt} but the content is {_SIGNATURE_NAMES[sniffed]}; "
            f"supported: {_supported_list()}"
        )
    raise CorruptFile(f"{filename}: not a valid {fmt} file ({_MISSING_SIGNATURE[fmt]})")


def extract(filename: str, data: bytes, limits: ExtractLimits = DEFAULT_LIMITS) -> Extracted:
    """Extract text, title and metadata from one file, enforcing ``limits``."""
    if len(data) > limits.max_bytes:
        raise FileTooLarge(
            _over_limit(filename, f"{len(data):,} bytes", limits.max_bytes, "max_bytes")
        )
    if not data:
        raise EmptyDocument(f"{filename}: the file is empty (0 bytes)")
    fmt = detect_format(filename, data)
    parsed = _EXTRACTORS[fmt](filename, data, limits)
    if len(parsed.text) > limits.max_chars:
        raise FileTooLarge(_too_much_text(filename, len(parsed.text), limits))
    if fmt != "pdf" and not parsed.text.strip():
        raise EmptyDocument(f"{filename}: no text found in the {fmt} file")
    return Extracted(
        text=parsed.text,
        format=fmt,
        title=parsed.title,
        metadata=parsed.metadata,
        page_spans=parsed.page_spans,
        upload_mime_type=_PDF_MIME if fmt == "pdf" else _TEXT_MIME,
        warnings=tuple(parsed.warnings),
    )


def upload_payload(filename: str, data: bytes, extracted: Extracted) -> tuple[str, bytes, str]:
    """Return ``(filename, content, mime type)`` to send to the Files API.

    PDFs go as they are (the model reads their pages); everything else goes as the extracted
    text, so citation offsets refer to exactly the text the pool stores.
    """
    if extracted.format == "pdf":
        return filename, data, _PDF_MIME
    return filename, extracted.text.encode("utf-8"), _TEXT_MIME


# --------------------------------------------------------------------------------------------
# Shared helpers


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "pdf"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole2"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"\x1f\x8b", "gzip"),
    (b"\x7fELF", "elf"),
)
_SIGNATURE_NAMES = {
    "pdf": "a PDF document",
    "zip": "a ZIP archive",
    "ole2": "a legacy Office (.doc/.xls/.ppt) file",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gif": "a GIF image",
    "gzip": "a gzip archive",
    "elf": "an executable",
}
_EXPECTED_CONTAINER: dict[str, str | None] = {"pdf": "pdf", "docx": "zip"}
_MISSING_SIGNATURE = {"pdf": "no %PDF- header", "docx": "not a ZIP container"}


def _sniff(data: bytes) -> str | None:
    """Name the binary type announced by ``data``'s first bytes, or None for none we know."""
    for magic, kind in _SIGNATURES:
        if data.startswith(magic):
            return kind
    return None


def _supported_list() -> str:
    return ", ".join(sorted(SUPPORTED_FORMATS))


def _over_limit(filename: str, measured: str, limit: float, setting: str) -> str:
    return f"{filename}: {measured} exceeds the limit of {limit:,} ({setting})"


def _too_much_text(filename: str, n_chars: int, limits: ExtractLimits) -> str:
    return _over_limit(filename, f"{n_chars:,}+ characters of text", limits.max_chars, "max_chars")


def _normalise(text: str) -> str:
    """Unify newlines to ``\\n``, drop NULs and compose to NFC; nothing else changes."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return unicodedata.normalize("NFC", text)


def _first_line_title(text: str, max_len: int = 120) -> str | None:
    """The first non-blank line, when it is short enough to be a title."""
    for line in text.split("\n"):
        line = line.strip()
        if line:
            return line if len(line) <= max_len else None
    return None


def _clean_title(value: object) -> str | None:
    title = " ".join(str(value).split()) if value is not None else ""
    return title or None


# --------------------------------------------------------------------------------------------
# Decoding bytes to text


_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")  # Cc, less \t \n \f \r
_MAX_CONTROL_RATIO = 0.05
_CP1252_CHAOS_MARGIN = 0.1


@dataclass(frozen=True)
class _Decoded:
    text: str
    encoding: str
    guessed: bool


def _decode_text(filename: str, data: bytes, declared: str | None = None) -> _Decoded:
    """Decode bytes that should be text: BOM, then ``declared``, then UTF-8, then a best guess.

    Raises ``CorruptFile`` when the bytes look binary or no encoding fits convincingly.
    """
    decoded = _decode_with_bom(filename, data)
    if decoded is None:
        if b"\x00" in data:
            raise CorruptFile(f"{filename}: does not look like text (contains NUL bytes)")
        decoded = _decode_declared(data, declared) or _decode_utf8(data) or _guess(filename, data)
    if _control_ratio(decoded.text) > _MAX_CONTROL_RATIO:
        raise CorruptFile(f"{filename}: does not look like text (too many control characters)")
    return _Decoded(_normalise(decoded.text), decoded.encoding, decoded.guessed)


def _decode_with_bom(filename: str, data: bytes) -> _Decoded | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _Decoded(data.decode(encoding), encoding, guessed=False)
            except UnicodeDecodeError as exc:
                raise CorruptFile(
                    f"{filename}: starts with a {encoding} BOM but is not valid {encoding}"
                ) from exc
    return None


def _decode_declared(data: bytes, declared: str | None) -> _Decoded | None:
    if declared is None:
        return None
    try:
        return _Decoded(data.decode(declared), declared, guessed=False)
    except (LookupError, UnicodeDecodeError):
        return None  # a wrong declaration is common; fall back to detection


def _decode_utf8(data: bytes) -> _Decoded | None:
    try:
        return _Decoded(data.decode("utf-8"), "utf-8", guessed=False)
    except UnicodeDecodeError:
        return None


def _guess(filename: str, data: bytes) -> _Decoded:
    """charset_normalizer's best match, except that Windows-1252 wins a near tie.

    Detection is unreliable on short Western European text (a French paragraph in Latin-1 comes
    back as Baltic cp1257), and cp1252 is by far the commonest legacy encoding of office files.
    """
    matches = list(charset_normalizer.from_bytes(data))
    if not matches:
        raise CorruptFile(f"{filename}: does not look like text (no encoding fits it)")
    best = matches[0]
    for match in matches:
        if match.encoding == "cp1252" and match.chaos <= best.chaos + _CP1252_CHAOS_MARGIN:
            best = match
    return _Decoded(str(best), best.encoding, guessed=True)


def _control_ratio(text: str) -> float:
    return len(_CONTROL_CHARS.findall(text)) / len(text) if text else 0.0


def _encoding_warnings(decoded: _Decoded) -> list[str]:
    if not decoded.guessed:
        return []
    return [f"not UTF-8; decoded as {decoded.encoding} (best guess), check accented characters"]


# --------------------------------------------------------------------------------------------
# Plain text


def _extract_text(filename: str, data: bytes, limits: ExtractLimits) -> _Parsed:
    decoded = _decode_text(filename, data)
    return _Parsed(
        text=decoded.text,
        title=_first_line_title(decoded.text),
        warnings=_encoding_warnings(decoded),
    )


# --------------------------------------------------------------------------------------------
# Markdown


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)^(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL | re.M)
# A tag runs to the first closing delimiter, never past it (so "{% a %} text {% b %}" keeps text).
_TAG = r"(?:\{%(?:(?!%\})[\s\S])*%\}|\{\{(?:(?!\}\})[\s\S])*\}\})"
_TAG_LINE = re.compile(rf"^[ \t]*(?:{_TAG}[ \t]*)+(?:\n|\Z)", re.M)
_TAG_INLINE = re.compile(_TAG)
_HEADING = re.compile(r"^#[ \t]+(?P<atx>.+?)[ \t#]*$|^(?P<setext>[^\n]*\S[^\n]*)\n=+[ \t]*$", re.M)
_MAX_FRONT_MATTER_NODES = 10_000
_MAX_FRONT_MATTER_DEPTH = 50


def _extract_markdown(filename: str, data: bytes, limits: ExtractLimits) -> _Parsed:
    decoded = _decode_text(filename, data)
    front, body = _split_front_matter(filename, decoded.text)
    text = _strip_template_tags(body).lstrip("\n")
    parsed = _Parsed(text=text, warnings=_encoding_warnings(decoded))
    if front is not None and not isinstance(front, dict):
        parsed.warnings.append("front matter is not a key/value mapping; ignored")
        front = None
    parsed.metadata = _jsonable(filename, front or {})
    parsed.title = _clean_title(parsed.metadata.pop("title", None)) or _markdown_heading(
        parsed.text
    )
    return parsed


def _split_front_matter(filename: str, text: str) -> tuple[object, str]:
    """Return the parsed YAML front matter (None if there is none) and the rest of the text."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return None, text
    try:
        front = yaml.safe_load(match.group(1))
    except (yaml.YAMLError, RecursionError) as exc:
        raise CorruptFile(
            f"{filename}: malformed YAML front matter ({_yaml_problem(exc)})"
        ) from exc
    return front, text[match.end() :]


def _yaml_problem(exc: BaseException) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return f"{exc.problem} at line {exc.problem_mark.line + 2}"  # +1 for 0-based, +1 for '---'
    return type(exc).__name__


def _strip_template_tags(text: str) -> str:
    """Drop Jekyll/Liquid ``{% ... %}`` and ``{{ ... }}`` tags (and lines holding only tags)."""
    return _TAG_INLINE.sub("", _TAG_LINE.sub("", text))


def _markdown_heading(text: str) -> str | None:
    match = _HEADING.search(text)
    return _clean_title(match.group("atx") or match.group("setext")) if match else None


def _jsonable(filename: str, mapping: dict[Any, Any]) -> dict[str, Any]:
    """Copy YAML values into JSON types (dates become ISO strings, unknown types strings).

    YAML aliases can make a few bytes describe an exponentially large tree, or a cycle, so the
    copy counts nodes and depth and gives up past fixed budgets.
    """
    budget = [_MAX_FRONT_MATTER_NODES]

    def convert(item: object, depth: int = 1) -> object:
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_FRONT_MATTER_DEPTH:
            raise CorruptFile(f"{filename}: front matter is too large or self-referencing")
        if isinstance(item, dict):
            return {str(key): convert(val, depth + 1) for key, val in item.items()}
        if isinstance(item, (list, tuple, set, frozenset)):
            return [convert(val, depth + 1) for val in item]
        if isinstance(item, (datetime, date)):
            return item.isoformat()
        if item is None or isinstance(item, (str, int, float, bool)):
            return item
        return str(item)

    return {str(key): convert(value) for key, value in mapping.items()}


# --------------------------------------------------------------------------------------------
# HTML


_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def _extract_html(filename: str, data: bytes, limits: ExtractLimits) -> _Parsed:
    decoded = _decode_text(filename, data, declared=_declared_charset(data[:4096]))
    parser = _HTMLText()
    parser.feed(decoded.text)
    parser.close()
    return _Parsed(
        text=_normalise(parser.text()),
        title=_clean_title(parser.title) or _clean_title(parser.first_h1),
        metadata=dict(parser.meta),
        warnings=_encoding_warnings(decoded),
    )


def _declared_charset(head: bytes) -> str | None:
    match = _META_CHARSET.search(head)
    if match is None:
        return None
    try:
        name = codecs.lookup(match.group(1).decode("ascii")).name
    except LookupError:
        return None
    # The tag was readable as ASCII, so a UTF-16/32 declaration is wrong (HTML spec: use UTF-8);
    # and browsers read "ISO-8859-1" and "ASCII" pages as Windows-1252, so we do too.
    if name.startswith(("utf-16", "utf-32")):
        return "utf-8"
    return "cp1252" if name in ("iso8859-1", "latin-1", "ascii") else name


_SKIPPED = frozenset({"script", "style", "template", "noscript", "head", "svg"})
_HEAD_TAGS = frozenset("title meta link style script base noscript template".split())
_PARAGRAPH_TAGS = frozenset(
    "p h1 h2 h3 h4 h5 h6 ul ol dl table section article header footer nav aside main "
    "blockquote pre figure form fieldset address details hr".split()
)
_LINE_TAGS = frozenset("div li dt dd tr br caption figcaption summary legend option".split())
_CELL_TAGS = frozenset({"td", "th"})
_SEPARATOR_RANK = {"": 0, "\t": 1, "\n": 2, "\n\n": 3}
_WHITESPACE = re.compile(r"[ \t\n\r\f]+")  # HTML whitespace; not \u00a0 (&nbsp;)


class _HTMLText(HTMLParser):
    """Visible text of an HTML page, laid out roughly the way a browser's ``innerText`` does.

    Block elements end lines (paragraph-like ones leave a blank line), table cells are separated
    by tabs so a row stays on one line, whitespace runs collapse to one space outside ``<pre>``.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.first_h1: str | None = None
        self.meta: dict[str, str] = {}
        self._parts: list[str] = []
        self._skipping: list[str] = []  # open elements whose content is not shown
        self._pending = ""  # separator owed before the next visible text
        self._in_title = False
        self._h1: list[str] | None = None
        self._pre_depth = 0

    def text(self) -> str:
        return "".join(self._parts).rstrip()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skipping == ["head"] and tag not in _HEAD_TAGS:
            self._skipping.clear()  # body content implies the head has ended, closed or not
        if tag == "meta":
            self._record_meta(dict(attrs))
        elif tag == "title":
            self._in_title = self._skipping in ([], ["head"]) and not self.title
        elif tag in _SKIPPED:
            self._skipping.append(tag)
        elif not self._skipping:
            self._open_visible(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIPPED:
            if tag in self._skipping:
                last = len(self._skipping) - 1 - self._skipping[::-1].index(tag)
                del self._skipping[last:]
        elif not self._skipping:
            self._close_visible(tag)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skipping:
            if self._h1 is not None:
                self._h1.append(data)
            self._emit(data)

    def _record_meta(self, attrs: dict[str, str | None]) -> None:
        name, content = attrs.get("name"), attrs.get("content")
        if name and content is not None:
            self.meta[name.strip().lower()] = content.strip()

    def _open_visible(self, tag: str) -> None:
        if tag == "pre":
            self._pre_depth += 1
        if tag == "h1" and self.first_h1 is None:
            self._h1 = []
        if tag in _CELL_TAGS:
            self._separate("\t")
        else:
            self._break_for(tag)

    def _close_visible(self, tag: str) -> None:
        if tag == "pre" and self._pre_depth:
            self._pre_depth -= 1
        if tag == "h1" and self._h1 is not None:
            self.first_h1 = " ".join("".join(self._h1).split())
            self._h1 = None
        self._break_for(tag)

    def _break_for(self, tag: str) -> None:
        if tag in _PARAGRAPH_TAGS:
            self._separate("\n\n")
        elif tag == "br" and self._pending.startswith("\n"):
            self._separate("\n\n")  # consecutive <br>s leave a blank line
        elif tag in _LINE_TAGS:
            self._separate("\n")

    def _separate(self, sep: str) -> None:
        """Owe ``sep`` before the next text; the strongest separator owed wins."""
        if self._parts and _SEPARATOR_RANK[sep] > _SEPARATOR_RANK[self._pending]:
            self._pending = sep

    def _emit(self, data: str) -> None:
        if not self._pre_depth:
            data = _WHITESPACE.sub(" ", data)
            if self._pending or not self._parts or self._parts[-1].endswith((" ", "\n")):
                data = data.lstrip(" ")
        if not data:
            return
        if self._pending:
            self._parts[-1] = self._parts[-1].rstrip(" ")
            self._parts.append(self._pending)
            self._pending = ""
        self._parts.append(data)


# --------------------------------------------------------------------------------------------
# DOCX


_DOCX_MAIN_PART = "word/document.xml"
_RATIO_CHECK_MIN_BYTES = 1024 * 1024
_DOCX_PROPERTIES = (
    "author", "category", "comments", "content_status", "created", "identifier", "keywords",
    "language", "last_modified_by", "modified", "subject", "version",
)  # fmt: skip


def _extract_docx(filename: str, data: bytes, limits: ExtractLimits) -> _Parsed:
    _check_docx_archive(filename, data, limits)
    try:
        document = docx.Document(io.BytesIO(data))
        lines = list(_docx_lines(document.iter_inner_content()))
        properties = document.core_properties
        metadata = _docx_metadata(properties)
        title = _clean_title(properties.title) or _docx_heading(document.paragraphs)
    except PoolError:
        raise
    except Exception as exc:  # python-docx and lxml raise many types on malformed parts
        raise CorruptFile(f"{filename}: cannot read the DOCX ({type(exc).__name__})") from exc
    text = _normalise(re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n"))
    return _Parsed(text=text, title=title, metadata=metadata)


def _check_docx_archive(filename: str, data: bytes, limits: ExtractLimits) -> None:
    """Refuse archives that are not a DOCX or that would inflate beyond the limits.

    Only declared sizes are checked; ``zipfile`` will not inflate a member past its declared
    size without failing its CRC check, so declared sizes bound what python-docx can read.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except Exception as exc:  # BadZipFile, but also ValueError/EOFError on mangled headers
        raise CorruptFile(f"{filename}: not a valid DOCX (unreadable ZIP container)") from exc
    if len(members) > limits.max_zip_members:
        measured = f"{len(members):,} archive members"
        raise FileTooLarge(
            _over_limit(filename, measured, limits.max_zip_members, "max_zip_members")
        )
    total = sum(member.file_size for member in members)
    if total > limits.max_unzipped_bytes:
        measured = f"{total:,} bytes uncompressed"
        raise FileTooLarge(
            _over_limit(filename, measured, limits.max_unzipped_bytes, "max_unzipped_bytes")
        )
    for member in members:
        _check_zip_ratio(filename, member, limits)
    if _DOCX_MAIN_PART not in {member.filename for member in members}:
        raise CorruptFile(f"{filename}: not a valid DOCX (no {_DOCX_MAIN_PART} in the archive)")


def _check_zip_ratio(filename: str, member: zipfile.ZipInfo, limits: ExtractLimits) -> None:
    if member.file_size <= _RATIO_CHECK_MIN_BYTES:
        return
    ratio = member.file_size / max(member.compress_size, 1)
    if ratio > limits.max_zip_ratio:
        measured = f"member {member.filename!r} compression ratio {ratio:,.0f}:1"
        raise FileTooLarge(_over_limit(filename, measured, limits.max_zip_ratio, "max_zip_ratio"))


def _docx_lines(blocks: Iterator[Paragraph | Table]) -> Iterator[str]:
    """One line per paragraph; one line per table row with its cells separated by tabs."""
    for block in blocks:
        if isinstance(block, Paragraph):
            yield block.text.rstrip()
        else:
            for row in block.rows:
                yield "\t".join(_docx_row_cells(row.cells))


def _docx_row_cells(cells: tuple[Any, ...]) -> Iterator[str]:
    previous = None
    for cell in cells:
        if cell is not previous:  # a horizontally merged cell is repeated once per grid column
            yield " ".join(line for line in _docx_lines(cell.iter_inner_content()) if line)
        previous = cell


def _docx_heading(paragraphs: list[Paragraph]) -> str | None:
    for paragraph in paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        if style and (style == "Title" or style.startswith("Heading")):
            title = _clean_title(paragraph.text)
            if title:
                return title
    return None


def _docx_metadata(properties: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for name in _DOCX_PROPERTIES:
        value = getattr(properties, name, None)
        if isinstance(value, datetime):
            value = value.isoformat()
        if value not in (None, ""):
            metadata[name] = value
    return metadata


# --------------------------------------------------------------------------------------------
# PDF

# pypdf reports every repair of a malformed file at WARNING. Those are not actionable for whoever
# uploads a document; failures that matter arrive as exceptions. An explicit level set by the
# application wins.
if logging.getLogger("pypdf").level == logging.NOTSET:
    logging.getLogger("pypdf").setLevel(logging.ERROR)


# ``warnings.catch_warnings`` swaps process-wide state, so two threads inside it at once could
# leave the filters wrong; PDF parsing holds the GIL anyway, so serialising it costs nothing.
_PDF_LOCK = threading.Lock()


def _extract_pdf(filename: str, data: bytes, limits: ExtractLimits) -> _Parsed:
    try:
        with _PDF_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _read_pdf(filename, data, limits)
    except PoolError:
        raise
    except Exception as exc:  # pypdf raises far more than PyPdfError on malformed input
        # Only the type: pypdf messages can quote bytes of the document.
        raise CorruptFile(f"{filename}: cannot read the PDF ({type(exc).__name__})") from exc


def _read_pdf(filename: str, data: bytes, limits: ExtractLimits) -> _Parsed:
    reader = pypdf.PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        raise CorruptFile(
            f"{filename}: the PDF is encrypted; remove the password and upload it again"
        )
    n_pages = len(reader.pages)
    if n_pages > limits.max_pages:
        raise FileTooLarge(
            _over_limit(filename, f"{n_pages:,} pages", limits.max_pages, "max_pages")
        )
    pages = list(_pdf_page_texts(filename, reader, limits))
    text, spans = _join_pages(pages)
    info = reader.metadata
    return _Parsed(
        text=text,
        title=_clean_title(info.title) if info is not None else None,
        metadata=_pdf_metadata(info, n_pages),
        page_spans=spans,
        warnings=_pdf_warnings(pages),
    )


def _pdf_page_texts(filename: str, reader: pypdf.PdfReader, limits: ExtractLimits) -> Iterator[str]:
    total = 0
    for page in reader.pages:
        text = _normalise(page.extract_text()).strip()
        total += len(text)
        if total > limits.max_chars:
            raise FileTooLarge(_too_much_text(filename, total, limits))
        yield text


def _join_pages(pages: list[str], sep: str = "\n\n") -> tuple[str, tuple[tuple[int, int], ...]]:
    """Join page texts with ``sep`` and return each page's ``[start, end)`` span in the result."""
    spans = []
    start = 0
    for page in pages:
        spans.append((start, start + len(page)))
        start += len(page) + len(sep)
    return sep.join(pages), tuple(spans)


def _pdf_metadata(info: Any, n_pages: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {"page_count": n_pages}
    if info is not None:
        for name in ("author", "subject", "keywords"):
            value = _clean_title(getattr(info, name, None))
            if value:
                metadata[name] = value
    return metadata


def _pdf_warnings(pages: list[str]) -> list[str]:
    blank = [number for number, text in enumerate(pages, start=1) if not text]
    if len(blank) == len(pages):
        return [
            "the PDF has no text layer (scanned?); it cannot be searched or cited until it is OCR'd"
        ]
    if blank:
        which = (
            f"page {blank[0]} has"
            if len(blank) == 1
            else f"pages {', '.join(map(str, blank))} have"
        )
        return [f"{which} no text layer (scanned?); that content cannot be searched or cited"]
    return []


# --------------------------------------------------------------------------------------------

_EXTRACTORS: dict[str, Callable[[str, bytes, ExtractLimits], _Parsed]] = {
    "pdf": _extract_pdf,
    "docx": _extract_docx,
    "html": _extract_html,
    "markdown": _extract_markdown,
    "text": _extract_text,
}
