"""Text extraction per format: PDF, DOCX, HTML, Markdown and plain text.

``extract`` turns an uploaded file into the text the pool indexes and cites. PDF keeps its page
structure (``page_spans``) because PDFs are uploaded as they are and cited by page; every other
format is converted to text, and that exact text is what gets uploaded as ``text/plain`` and cited
by character offsets, so nothing here rewrites text beyond newline, NUL and NFC normalisation.

Untrusted input is assumed throughout. ``check_upload`` runs first (size, emptiness, and the
format checks of ``indexing.formats``); then every parser works under a limit of
``ExtractLimits`` or a fixed bound, each refusal naming its limit and value: DOCX archives are
inspected for decompression bombs and DTDs before python-docx sees them, PDFs for the decoded
size of their page contents before pypdf extracts text, HTML goes through libxml2 (linear time,
unlike ``html.parser`` on malformed markup), and Markdown is scanned without backtracking
regular expressions. Any other parser failure becomes a ``CorruptFile`` that names the file.
"""

from __future__ import annotations

import io
import logging
import math
import re
import threading
import unicodedata
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import PurePath
from typing import Any

import charset_normalizer
import docx
import pypdf
import webencodings
import yaml
from docx.table import Table
from docx.text.paragraph import Paragraph
from lxml import etree
from pypdf.errors import LimitReachedError
from pypdf.generic import ArrayObject, DictionaryObject, PdfObject, StreamObject

from indexing.errors import (
    ContentMismatch,
    CorruptFile,
    EmptyDocument,
    EncryptedFile,
    FileTooLarge,
    PoolError,
)
from indexing.filenames import clean_title
from indexing.formats import (
    BOMS,
    bomless_utf16,
    detect_format,
)

_PDF_MIME = "application/pdf"
_TEXT_MIME = "text/plain"


@dataclass(frozen=True)
class ExtractLimits:
    """Limits that keep one hostile or oversized file from exhausting the server.

    ``max_bytes`` and ``max_pages`` come from the settings ``max_file_bytes`` and
    ``max_pdf_pages`` and are named so in messages; the others are fixed here.
    """

    max_bytes: int = 50 * 1024 * 1024
    max_pages: int = 2_000
    #: Text extracted from one file, in characters.
    max_chars: int = 10_000_000
    #: A DOCX archive: its members inflated, together; one member's compression ratio (checked
    #: above 1 MiB); its member count; one XML part inflated. python-docx holds a part as a tree
    #: and walks it in Python: 32 MiB of XML can cost half a minute and 400 MB at worst.
    max_unzipped_bytes: int = 200 * 1024 * 1024
    max_zip_ratio: float = 100.0
    max_zip_members: int = 10_000
    max_xml_part_bytes: int = 32 * 1024 * 1024
    #: A PDF's page content streams (and the forms they draw), decoded, summed over its pages
    #: (a page may reuse a huge stream). pypdf extracts text from about 0.3 MB of operators a
    #: second, so this bounds one PDF to under two minutes; ordinary pages hold 3-20 KB.
    max_pdf_content_bytes: int = 32 * 1024 * 1024
    #: Elements open at once in an HTML page (sloppy pages nest unclosed tags deeply; this is
    #: far beyond them).
    max_html_depth: int = 10_000
    #: YAML front matter of a Markdown file, in characters.
    max_front_matter_chars: int = 64 * 1024


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


def check_upload(
    filename: str,
    data: bytes,
    declared_type: str | None = None,
    limits: ExtractLimits = DEFAULT_LIMITS,
) -> str:
    """The file's format, once its size, emptiness, extension, bytes and declared type pass.

    Cheap (no parsing beyond a ZIP's member list), so callers may run it before deciding
    whether to extract at all.
    """
    check_size(filename, len(data), limits)
    if not data:
        raise EmptyDocument(f"{filename}: the file is empty (0 bytes)")
    return detect_format(filename, data, declared_type, max_zip_members=limits.max_zip_members)


def check_size(filename: str, size: int, limits: ExtractLimits = DEFAULT_LIMITS) -> None:
    """Refuse a file of ``size`` bytes over ``limits.max_bytes``."""
    if size > limits.max_bytes:
        raise FileTooLarge(
            _over_limit(filename, f"{size:,} bytes", limits.max_bytes, "max_file_bytes")
        )


def extract(
    filename: str,
    data: bytes,
    limits: ExtractLimits = DEFAULT_LIMITS,
    *,
    declared_type: str | None = None,
) -> Extracted:
    """Extract text, title and metadata from one file, enforcing ``limits``.

    ``declared_type`` is the Content-Type the file came with, if any (see ``check_upload``).
    """
    fmt = check_upload(filename, data, declared_type, limits)
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


def _over_limit(filename: str, measured: str, limit: float, setting: str) -> str:
    return f"{filename}: {measured} exceeds the limit of {limit:,} ({setting})"


def _too_much_text(filename: str, n_chars: int, limits: ExtractLimits) -> str:
    return _over_limit(filename, f"{n_chars:,}+ characters of text", limits.max_chars, "max_chars")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _normalise(text: str) -> str:
    """Unify newlines to ``\\n``, drop NULs, turn lone surrogates (which some decoders, such as
    UTF-7's, produce and nothing can store) into U+FFFD, and compose to NFC; nothing else
    changes."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return unicodedata.normalize("NFC", _LONE_SURROGATE.sub("\ufffd", text))


def _first_line_title(text: str, max_len: int = 120) -> str | None:
    """The first non-blank line, when it is short enough to be a title."""
    for line in text.split("\n"):
        line = line.strip()
        if line:
            return line if len(line) <= max_len else None
    return None


def _clean_title(value: object) -> str | None:
    title = clean_title(str(value)) if value is not None else ""
    return title or None


# --------------------------------------------------------------------------------------------
# Decoding bytes to text


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")  # Cc, less \t \n \f \r
#: Share of control characters beyond which decoded "text" is taken to be binary.
MAX_CONTROL_RATIO = 0.05
_CP1252_CHAOS_MARGIN = 0.1


@dataclass(frozen=True)
class _Decoded:
    text: str
    encoding: str
    guessed: bool


def _decode_text(filename: str, data: bytes, declared: str | None = None) -> _Decoded:
    """Decode bytes that should be text: BOM, UTF-16 without one, ``declared``, UTF-8, then a
    best guess.

    Raises ``ContentMismatch`` when the bytes are binary, ``CorruptFile`` when no encoding
    fits them convincingly.
    """
    decoded = _decode_with_bom(filename, data) or _decode_bomless_utf16(data)
    if decoded is None:
        if b"\x00" in data:
            raise _binary(filename, "it contains NUL bytes")
        decoded = _decode_declared(data, declared) or _decode_utf8(data) or _guess(filename, data)
    ratio = _control_ratio(decoded.text)
    if ratio > MAX_CONTROL_RATIO:
        raise _binary(
            filename, f"{ratio:.0%} control characters; at most {MAX_CONTROL_RATIO:.0%} in text"
        )
    return _Decoded(_normalise(decoded.text), decoded.encoding, decoded.guessed)


def _binary(filename: str, reason: str) -> ContentMismatch:
    declared = PurePath(filename).suffix.lower()
    return ContentMismatch(
        f"{filename}: declared {declared} but the content is binary, not text ({reason})"
    )


def _decode_with_bom(filename: str, data: bytes) -> _Decoded | None:
    for bom, encoding in BOMS:
        if data.startswith(bom):
            try:
                return _Decoded(data.decode(encoding), encoding, guessed=False)
            except UnicodeDecodeError as exc:
                raise CorruptFile(
                    f"{filename}: starts with a {encoding} BOM but is not valid {encoding}"
                ) from exc
    return None


def _decode_bomless_utf16(data: bytes) -> _Decoded | None:
    encoding = bomless_utf16(data)
    if encoding is None:
        return None
    try:
        return _Decoded(data.decode(encoding), encoding, guessed=True)
    except UnicodeDecodeError:
        return None


def _decode_declared(data: bytes, declared: str | None) -> _Decoded | None:
    if declared is None:
        return None
    try:
        return _Decoded(data.decode(declared), declared, guessed=False)
    except (LookupError, UnicodeError):
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
        raise CorruptFile(f"{filename}: cannot be decoded as text (no encoding fits it)")
    best = matches[0]
    for match in matches:
        if match.encoding == "cp1252" and match.chaos <= best.chaos + _CP1252_CHAOS_MARGIN:
            best = match
    return _Decoded(str(best), best.encoding, guessed=True)


def _control_ratio(text: str) -> float:
    # subn counts without a list of every match (50 MB of binary would make 50 million).
    return _CONTROL_CHARS.subn("", text)[1] / len(text) if text else 0.0


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
#: Jekyll/Liquid template tags and what closes each.
_TAG_CLOSERS = {"{%": "%}", "{{": "}}"}
_ATX_TITLE = re.compile(r"#[ \t]")
_SETEXT_UNDERLINE = re.compile(r"=+[ \t]*")
_MAX_FRONT_MATTER_NODES = 10_000
_MAX_FRONT_MATTER_DEPTH = 50


def _extract_markdown(filename: str, data: bytes, limits: ExtractLimits) -> _Parsed:
    decoded = _decode_text(filename, data)
    front, body = _split_front_matter(filename, decoded.text, limits)
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


def _split_front_matter(filename: str, text: str, limits: ExtractLimits) -> tuple[object, str]:
    """Return the parsed YAML front matter (None if there is none) and the rest of the text."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return None, text
    size = len(match.group(1))
    if size > limits.max_front_matter_chars:
        measured = f"front matter of {size:,} characters"
        limit, name = limits.max_front_matter_chars, "max_front_matter_chars"
        raise FileTooLarge(_over_limit(filename, measured, limit, name))
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
    """Drop Jekyll/Liquid ``{% ... %}`` and ``{{ ... }}`` tags, and lines holding only tags.

    A tag runs to the first closing delimiter, never past it (so ``{% a %} text {% b %}`` keeps
    the text). Scanned by hand: a regular expression would rescan the rest of the text from
    every unclosed opener, quadratic in a file of ``{%`` repeated.
    """
    pieces: list[str] = []
    kept = line_start = previous_end = 0  # text[kept:] is not in pieces yet
    for run in _tag_runs(text):
        start, end = run[0][0], run[-1][1]
        newline = text.rfind("\n", previous_end, start)
        if newline >= 0:
            line_start = newline + 1
        after = end
        while after < len(text) and text[after] in " \t":
            after += 1
        alone_on_line = (
            line_start >= previous_end  # runs are maximal: one earlier on the line is not blank
            and not text[line_start:start].strip(" \t")
            and (after == len(text) or text[after] == "\n")
        )
        previous_end = end
        if alone_on_line:
            run = [(line_start, min(after + 1, len(text)))]
        for tag_start, tag_end in run:
            pieces.append(text[kept:tag_start])
            kept = tag_end
    pieces.append(text[kept:])
    return "".join(pieces)


def _tag_runs(text: str) -> Iterator[list[tuple[int, int]]]:
    """The template tags, ``[start, end)``, in runs separated only by spaces or tabs."""
    run: list[tuple[int, int]] = []
    for start, end in _tags(text):
        if run and text[run[-1][1] : start].strip(" \t"):
            yield run
            run = []
        run.append((start, end))
    if run:
        yield run


def _tags(text: str) -> Iterator[tuple[int, int]]:
    """``[start, end)`` of each template tag, left to right, in linear time."""
    next_open = {opener: text.find(opener) for opener in _TAG_CLOSERS}
    position = 0
    while True:
        for opener, at in next_open.items():
            if 0 <= at < position:
                next_open[opener] = text.find(opener, position)
        found = [(at, opener) for opener, at in next_open.items() if at >= 0]
        if not found:
            return
        start, opener = min(found)
        close = text.find(_TAG_CLOSERS[opener], start + 2)
        if close < 0:
            next_open[opener] = -1  # no later opener of this kind can close either
            continue
        position = close + 2
        yield start, position


def _markdown_heading(text: str) -> str | None:
    """The first level-1 heading: ``# Title`` or ``Title`` underlined with ``===``."""
    lines = text.split("\n")
    for number, line in enumerate(lines):
        body = line[1:].strip(" \t") if _ATX_TITLE.match(line) else ""
        if body:
            return _clean_title(body.rstrip(" \t#") or body[:1])
        following = lines[number + 1] if number + 1 < len(lines) else ""
        if line.strip() and _SETEXT_UNDERLINE.fullmatch(following):
            return _clean_title(line)
    return None


def _jsonable(filename: str, mapping: dict[Any, Any]) -> dict[str, Any]:
    """Copy YAML values into JSON types (dates become ISO strings; unknown types and the
    numbers JSON cannot hold, strings; text as ``_storable`` makes it).

    YAML aliases can make a few bytes describe an exponentially large tree, or a cycle, so the
    copy counts nodes and depth and gives up past fixed budgets.
    """
    budget = [_MAX_FRONT_MATTER_NODES]

    def convert(item: object, depth: int = 1) -> object:
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_FRONT_MATTER_DEPTH:
            raise CorruptFile(
                f"{filename}: front matter has more than {_MAX_FRONT_MATTER_NODES:,} values or "
                f"{_MAX_FRONT_MATTER_DEPTH} levels (self-referencing YAML aliases?)"
            )
        if isinstance(item, dict):
            return {_storable(str(key)): convert(val, depth + 1) for key, val in item.items()}
        if isinstance(item, (list, tuple, set, frozenset)):
            return [convert(val, depth + 1) for val in item]
        if isinstance(item, (datetime, date)):
            return item.isoformat()
        if isinstance(item, float) and not math.isfinite(item):
            return str(item)  # YAML's .nan and .inf have no JSON number
        if isinstance(item, str):
            return _storable(item)
        if item is None or isinstance(item, (int, float, bool)):
            return item
        return _storable(str(item))

    return {_storable(str(key)): convert(value) for key, value in mapping.items()}


def _storable(text: str) -> str:
    """Text found in a file's metadata as it can be stored: NULs dropped and lone surrogates
    replaced, as in the body text (metadata found in a file is cleaned, not refused)."""
    return _LONE_SURROGATE.sub("\ufffd", text.replace("\x00", ""))


# --------------------------------------------------------------------------------------------
# HTML


_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def _extract_html(filename: str, data: bytes, limits: ExtractLimits) -> _Parsed:
    decoded = _decode_text(filename, data, declared=_declared_charset(data[:4096]))
    page = _HTMLText(filename, limits.max_html_depth)
    # libxml2's HTML parser is C and linear; html.parser goes quadratic on some malformed
    # markup ("<a" repeated: 100 KB take seconds). A target receives events, no tree is built.
    parser = etree.HTMLParser(target=page, no_network=True)
    try:
        parser.feed(decoded.text)
        parser.close()
    except PoolError:
        raise
    except etree.LxmlError as exc:
        raise CorruptFile(f"{filename}: cannot read the HTML ({type(exc).__name__})") from exc
    return _Parsed(
        text=_normalise(page.text()),
        title=_clean_title(page.title) or _clean_title(page.first_h1),
        metadata=dict(page.meta),
        warnings=_encoding_warnings(decoded),
    )


def _declared_charset(head: bytes) -> str | None:
    """The codec for a page's ``<meta charset>``, as a browser picks it: by the labels of the
    HTML standard's Encoding table (``webencodings``; "ISO-8859-1" and "ASCII" mean
    Windows-1252, "GB2312" GBK, "Shift_JIS" Windows-31J...). ``None`` when there is none or it
    names nothing a browser knows (UTF-7, "undefined", punycode...), so the bytes are detected
    as for a page without one."""
    match = _META_CHARSET.search(head)
    if match is None:
        return None
    encoding = webencodings.lookup(match.group(1).decode("ascii"))
    if encoding is None:
        return None
    # The tag was readable as ASCII, so a UTF-16 declaration is wrong (HTML spec: use UTF-8).
    if encoding.name.startswith("utf-16"):
        return "utf-8"
    return str(encoding.codec_info.name)


_SKIPPED = frozenset({"script", "style", "template", "noscript", "head", "svg"})
_PARAGRAPH_TAGS = frozenset(
    "p h1 h2 h3 h4 h5 h6 ul ol dl table section article header footer nav aside main "
    "blockquote pre figure form fieldset address details hr".split()
)
_LINE_TAGS = frozenset("div li dt dd tr br caption figcaption summary legend option".split())
_CELL_TAGS = frozenset({"td", "th"})
_SEPARATOR_RANK = {"": 0, "\t": 1, "\n": 2, "\n\n": 3}
_WHITESPACE = re.compile(r"[ \t\n\r\f]+")  # HTML whitespace; not \u00a0 (&nbsp;)


class _HTMLText:
    """Visible text of an HTML page, laid out roughly the way a browser's ``innerText`` does.

    A parser target: libxml2 calls ``start``, ``end`` and ``data``, with every element closed
    in order (implied ends included). Block elements end lines (paragraph-like ones leave a
    blank line), table cells are separated by tabs so a row stays on one line, whitespace runs
    collapse to one space outside ``<pre>``.
    """

    def __init__(self, filename: str, max_depth: int) -> None:
        self.filename = filename
        self.max_depth = max_depth
        self.title = ""
        self.first_h1: str | None = None
        self.meta: dict[str, str] = {}
        self._parts: list[str] = []
        self._depth = 0
        self._hidden = 0  # depth inside the outermost open element whose content is not shown
        self._hidden_tag = ""
        self._pending = ""  # separator owed before the next visible text
        self._in_title = False
        self._h1: list[str] | None = None
        self._pre_depth = 0

    def text(self) -> str:
        return "".join(self._parts).rstrip()

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self._depth += 1
        if self._depth > self.max_depth:
            measured = f"HTML elements nested {self._depth:,} deep"
            raise FileTooLarge(
                _over_limit(self.filename, measured, self.max_depth, "max_html_depth")
            )
        if tag == "meta":
            self._record_meta(attrib)
        elif tag == "title":
            in_head = self._hidden == 1 and self._hidden_tag == "head"
            self._in_title = (not self._hidden or in_head) and not self.title
        if self._hidden:
            self._hidden += 1
        elif tag in _SKIPPED:
            self._hidden, self._hidden_tag = 1, tag
        elif tag != "title":
            self._open_visible(tag)

    def end(self, tag: str) -> None:
        self._depth -= 1
        if tag == "title":
            self._in_title = False
        if self._hidden:
            self._hidden -= 1
        elif tag != "title":
            self._close_visible(tag)

    def data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._hidden:
            if self._h1 is not None:
                self._h1.append(data)
            self._emit(data)

    def close(self) -> None:
        return None

    def _record_meta(self, attrs: dict[str, str]) -> None:
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
        if tag != "br":  # a void element: its start did the break, its implied end must not
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


_RATIO_CHECK_MIN_BYTES = 1024 * 1024
#: How much of an XML part is read to find its root element (past any DTD, comments, PIs).
_XML_PROLOG_BYTES = 64 * 1024
_DOCX_PROPERTIES = (
    "author", "category", "comments", "content_status", "created", "identifier", "keywords",
    "language", "last_modified_by", "modified", "subject", "version",
)  # fmt: skip


def _extract_docx(filename: str, data: bytes, limits: ExtractLimits) -> _Parsed:
    _check_docx_archive(filename, data, limits)
    try:
        document = docx.Document(io.BytesIO(data))
        lines = list(_bounded_lines(filename, document.iter_inner_content(), limits))
        properties = document.core_properties
        metadata = _docx_metadata(properties)
        title = _clean_title(properties.title) or _docx_heading(document)
    except PoolError:
        raise
    except Exception as exc:  # python-docx and lxml raise many types on malformed parts
        raise CorruptFile(f"{filename}: cannot read the DOCX ({type(exc).__name__})") from exc
    text = _normalise(re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n"))
    return _Parsed(text=text, title=title, metadata=metadata)


def _check_docx_archive(filename: str, data: bytes, limits: ExtractLimits) -> None:
    """Refuse archives that would inflate beyond the limits, or whose XML declares a DTD.

    Only declared sizes are checked; ``zipfile`` will not inflate a member past its declared
    size without failing its CRC check, so declared sizes bound what python-docx can read.
    python-docx parses without resolving entities, but a part with a DTD would then lose the
    text behind each entity without a word; no DOCX writer emits one, so it is refused.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            _check_zip_sizes(filename, members, limits)
            for member in members:
                if member.filename.endswith((".xml", ".rels")):
                    _check_xml_part(filename, archive, member, limits)
    except PoolError:
        raise
    except Exception as exc:  # BadZipFile, but also ValueError/EOFError on mangled headers
        raise CorruptFile(f"{filename}: not a readable DOCX (damaged ZIP container)") from exc


def _check_zip_sizes(filename: str, members: list[zipfile.ZipInfo], limits: ExtractLimits) -> None:
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


def _check_zip_ratio(filename: str, member: zipfile.ZipInfo, limits: ExtractLimits) -> None:
    if member.file_size <= _RATIO_CHECK_MIN_BYTES:
        return
    ratio = member.file_size / max(member.compress_size, 1)
    if ratio > limits.max_zip_ratio:
        measured = f"member {member.filename!r} compression ratio {ratio:,.0f}:1"
        raise FileTooLarge(_over_limit(filename, measured, limits.max_zip_ratio, "max_zip_ratio"))


def _check_xml_part(
    filename: str, archive: zipfile.ZipFile, member: zipfile.ZipInfo, limits: ExtractLimits
) -> None:
    if member.file_size > limits.max_xml_part_bytes:
        measured = f"XML part {member.filename!r} of {member.file_size:,} bytes"
        limit = limits.max_xml_part_bytes
        raise FileTooLarge(_over_limit(filename, measured, limit, "max_xml_part_bytes"))
    with archive.open(member) as part:
        head = part.read(_XML_PROLOG_BYTES)
    problem = _xml_prolog_problem(head, complete=len(head) == member.file_size)
    if problem is not None:
        raise CorruptFile(f"{filename}: XML part {member.filename!r} {problem}")


_XML_ENCODINGS: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00", "utf-16-le"),
    (b"\x00<", "utf-16-be"),
)


_XML_PROLOG_ITEMS = (("<?", "?>"), ("<!--", "-->"))


def _xml_prolog_problem(head: bytes, *, complete: bool) -> str | None:
    """What is wrong before an XML document's root element: a DTD, or a prolog too long to
    check. ``head`` is the start of the part (all of it when ``complete``)."""
    encoding = next((enc for prefix, enc in _XML_ENCODINGS if head.startswith(prefix)), "latin-1")
    text = head.decode(encoding, errors="ignore").lstrip("\ufeff")
    position = 0
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if text.startswith("<!DOCTYPE", position):
            return "declares a DTD (<!DOCTYPE>); DOCX parts never do, and entities are not expanded"
        closer = next((c for o, c in _XML_PROLOG_ITEMS if text.startswith(o, position)), None)
        if closer is None:
            return None  # the root element (or something the XML parser will refuse)
        end = text.find(closer, position)
        if end < 0:
            if complete:
                return None
            limit = f"{_XML_PROLOG_BYTES:,}"
            return f"has more than {limit} bytes of comments or instructions before its root"
        position = end + len(closer)


def _bounded_lines(
    filename: str, blocks: Iterator[Paragraph | Table], limits: ExtractLimits
) -> Iterator[str]:
    """``_docx_lines``, stopping as soon as the text passes ``max_chars``."""
    total = 0
    for line in _docx_lines(blocks):
        total += len(line) + 1
        if total > limits.max_chars:
            raise FileTooLarge(_too_much_text(filename, total, limits))
        yield line


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


def _docx_heading(document: Any) -> str | None:
    """The first paragraph styled Title or Heading N.

    Styles are looked up by id in one table: ``Paragraph.style`` resolves the default style
    afresh for every unstyled paragraph, about a millisecond each.
    """
    names = {style.style_id: style.name or "" for style in document.styles}
    for paragraph in document.paragraphs:
        style = names.get(paragraph._p.style or "", "")
        if style == "Title" or style.startswith("Heading"):
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
    except LimitReachedError as exc:
        # pypdf's own safety limits (a stream inflating past 75 MB, a cyclic page tree ...):
        # their messages state the limit, never document text.
        raise FileTooLarge(f"{filename}: the PDF exceeds a parser safety limit ({exc})") from exc
    except Exception as exc:  # pypdf raises far more than PyPdfError on malformed input
        # Only the type: pypdf messages can quote bytes of the document.
        raise CorruptFile(f"{filename}: cannot read the PDF ({type(exc).__name__})") from exc


def _read_pdf(filename: str, data: bytes, limits: ExtractLimits) -> _Parsed:
    reader = pypdf.PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        raise EncryptedFile(_encrypted_pdf_message(filename, reader))
    n_pages = len(reader.pages)
    if n_pages > limits.max_pages:
        raise FileTooLarge(
            _over_limit(filename, f"{n_pages:,} pages", limits.max_pages, "max_pdf_pages")
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


def _encrypted_pdf_message(filename: str, reader: pypdf.PdfReader) -> str:
    """Encrypted PDFs are refused either way: the original is what the model is sent."""
    try:
        opens_without_password = bool(reader.decrypt(""))
    except Exception:  # an unsupported cipher, or the cryptography package missing
        opens_without_password = False
    if opens_without_password:
        return (
            f"{filename}: the PDF is encrypted (it opens without a password but restricts "
            "copying or printing); save an unencrypted copy and upload that"
        )
    return f"{filename}: the PDF is encrypted with a password; remove it and upload again"


def _pdf_page_texts(filename: str, reader: pypdf.PdfReader, limits: ExtractLimits) -> Iterator[str]:
    """Each page's text, after checking the work it will take against the limits."""
    chars = content = 0
    for page in reader.pages:
        content += _page_content_bytes(page)
        if content > limits.max_pdf_content_bytes:
            measured = f"{content:,}+ bytes of page content"
            limit = limits.max_pdf_content_bytes
            raise FileTooLarge(_over_limit(filename, measured, limit, "max_pdf_content_bytes"))
        text = _normalise(page.extract_text()).strip()
        chars += len(text)
        if chars > limits.max_chars:
            raise FileTooLarge(_too_much_text(filename, chars, limits))
        yield text


def _page_content_bytes(page: pypdf.PageObject) -> int:
    """Decoded bytes of a page's content streams and of the forms its resources hold.

    pypdf caches decoded streams, so a stream shared by many pages is decoded once but counted
    on every page (as text extraction parses it on every page). Malformed entries count as
    nothing here; extraction then copes with them as it can.
    """
    streams = list(_streams(page.get("/Contents")))
    resources = _resolved(page.get("/Resources"))
    xobjects = (
        _resolved(resources.get("/XObject")) if isinstance(resources, DictionaryObject) else None
    )
    if isinstance(xobjects, DictionaryObject):
        for ref in xobjects.values():
            xobject = _resolved(ref)
            if isinstance(xobject, StreamObject) and xobject.get("/Subtype") == "/Form":
                streams.append(xobject)
    return sum(len(stream.get_data()) for stream in streams)


def _streams(contents: Any) -> Iterator[StreamObject]:
    """The stream objects behind a page's ``/Contents`` (one stream, or an array of them)."""
    contents = _resolved(contents)
    items = contents if isinstance(contents, ArrayObject) else [contents]
    for item in items:
        stream = _resolved(item)
        if isinstance(stream, StreamObject):
            yield stream


def _resolved(value: Any) -> Any:
    return value.get_object() if isinstance(value, PdfObject) else value


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


#: Most PDF pages one Messages request may carry: a longer PDF can be routed to, never sent.
PDF_PAGES_PER_REQUEST = 100


def _pdf_warnings(pages: list[str]) -> list[str]:
    found = _text_layer_warnings(pages)
    if len(pages) > PDF_PAGES_PER_REQUEST:
        found.append(
            f"the PDF has {len(pages)} pages, more than the {PDF_PAGES_PER_REQUEST} one question "
            "can send; questions it matches cannot be answered from it until it is split"
        )
    return found


def _text_layer_warnings(pages: list[str]) -> list[str]:
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
