"""Which format a file is: its extension, checked against its bytes and its declared type.

The extension names the format (``.pdf``, ``.docx``, ``.html``/``.htm``, ``.md``/``.markdown``,
``.txt``/``.text``, in any case). The first bytes must then agree: a ``.pdf`` holds ``%PDF-``
within its first 1,024 bytes (readers skip junk before the header), a ``.docx`` is a ZIP archive
with ``word/document.xml``, and a text format holds no signature of a binary type and no NUL
bytes (unless it is UTF-16/32 with a byte order mark, or UTF-16 without one). Last, a
Content-Type sent with the file (an HTTP upload's part header) must fit the format; a missing or
generic one (``application/octet-stream``) says nothing, so the extension and the bytes decide.

Every disagreement is a ``ContentMismatch`` whose message names the rule:
``"a.pdf: declared .pdf but the content is a Word document (DOCX)"``.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import PurePath

from indexing.errors import ContentMismatch, CorruptFile, FileTooLarge, UnsupportedFormat

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
TEXT_FORMATS = frozenset({"html", "markdown", "text"})

#: How far into a PDF its ``%PDF-`` header may be (as far as common readers look).
PDF_HEADER_WINDOW = 1024
DOCX_MAIN_PART = "word/document.xml"
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

#: Content-Types that say nothing about the content; the extension and the bytes decide.
GENERIC_TYPES = frozenset(
    {
        "",
        "application/octet-stream",
        "binary/octet-stream",
        "application/binary",
        "application/unknown",
        "application/x-unknown",
        "application/download",
        "application/x-download",
        "application/force-download",
    }
)
#: Content-Types that fit PDF and DOCX; any ``text/*`` (and XHTML) fits the text formats.
DECLARED_TYPES: dict[str, frozenset[str]] = {
    "pdf": frozenset({"application/pdf", "application/x-pdf", "application/acrobat"}),
    # A DOCX is a ZIP archive, and some systems label it so.
    "docx": frozenset({DOCX_MIME, "application/zip", "application/x-zip-compressed"}),
}
_TEXT_APPLICATION_TYPES = frozenset(
    {"application/xhtml+xml", "application/xml", "application/markdown", "application/x-markdown"}
)

#: How the content of each supported format is named in messages.
CONTENT_NAMES = {
    "pdf": "a PDF",
    "docx": "a Word document (DOCX)",
    "html": "text",
    "markdown": "text",
    "text": "text",
}


def detect_format(
    filename: str,
    data: bytes,
    declared_type: str | None = None,
    *,
    max_zip_members: int = 10_000,
) -> str:
    """The format of ``filename`` (by its extension), once its bytes and ``declared_type``
    agree with it; see the module docstring for the rules.

    Raises ``UnsupportedFormat`` for an extension the pool does not take, ``ContentMismatch``
    when the bytes or the declared type disagree, ``CorruptFile`` for a ZIP too damaged to
    list, and ``FileTooLarge`` for a ZIP declaring more than ``max_zip_members`` members.
    """
    suffix = PurePath(filename).suffix.lower()
    fmt = SUPPORTED_FORMATS.get(suffix)
    if fmt is None:
        found = f"unsupported format '{suffix}'" if suffix else "no file extension"
        raise UnsupportedFormat(f"{filename}: {found}; supported: {supported_list()}")
    problem = _content_problem(filename, fmt, data, max_zip_members)
    if problem is not None:
        raise ContentMismatch(f"{filename}: declared {suffix} but the content is {problem}")
    check_declared_type(filename, fmt, declared_type)
    return fmt


def check_declared_type(filename: str, fmt: str, declared_type: str | None) -> None:
    """Refuse a Content-Type that contradicts ``fmt`` (generic or missing ones pass)."""
    media_type = media_type_of(declared_type)
    if media_type in GENERIC_TYPES:
        return
    if fmt in TEXT_FORMATS:
        fits = media_type.startswith("text/") or media_type in _TEXT_APPLICATION_TYPES
    else:
        fits = media_type in DECLARED_TYPES[fmt]
    if not fits:
        raise ContentMismatch(
            f"{filename}: declared Content-Type {media_type} but the content is "
            f"{CONTENT_NAMES[fmt]}"
        )


def media_type_of(content_type: str | None) -> str:
    """``type/subtype`` of a Content-Type header, lower-cased, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def supported_list() -> str:
    return ", ".join(sorted(SUPPORTED_FORMATS))


# --------------------------------------------------------------------------------------------
# What the bytes are


def _content_problem(filename: str, fmt: str, data: bytes, max_zip_members: int) -> str | None:
    """How the content contradicts ``fmt``, or None when it agrees."""
    kind = sniff(data)
    if kind == "zip":
        kind = _zip_kind(filename, data, max_zip_members, strict=fmt == "docx")
    if fmt == "pdf":
        if kind == "pdf" or (kind is None and b"%PDF-" in data[:PDF_HEADER_WINDOW]):
            return None  # a header behind junk is fine: PDF readers skip it
        window = f"{PDF_HEADER_WINDOW:,}"
        return describe(kind) or f"not a PDF (no %PDF- header in its first {window} bytes)"
    if fmt == "docx":
        if kind == "docx":
            return None
        if kind == "zip":
            return f"a ZIP archive without {DOCX_MAIN_PART}, not a Word document"
        return describe(kind) or "not a DOCX (not a ZIP archive)"
    if kind is None and data[:PDF_HEADER_WINDOW].lstrip()[:5] == b"%PDF-":
        kind = "pdf"
    if kind is not None:
        return describe(kind)
    reason = binary_text_reason(data)
    return None if reason is None else f"binary, not text ({reason})"


#: ``(offset, magic bytes, kind)``: signatures of what uploads that are not text often are.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF-", "pdf"),
    (0, b"PK\x03\x04", "zip"),
    (0, b"PK\x05\x06", "zip"),
    (0, b"PK\x07\x08", "zip"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole2"),
    (0, b"{\\rtf", "rtf"),
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
    (0, b"II*\x00", "tiff"),
    (0, b"MM\x00*", "tiff"),
    (0, b"\x1f\x8b", "gzip"),
    (0, b"\xfd7zXZ\x00", "xz"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z"),
    (0, b"Rar!\x1a\x07", "rar"),
    (0, b"\x28\xb5\x2f\xfd", "zstd"),
    (0, b"\x7fELF", "executable"),
    (0, b"\xfe\xed\xfa\xce", "executable"),
    (0, b"\xfe\xed\xfa\xcf", "executable"),
    (0, b"\xce\xfa\xed\xfe", "executable"),
    (0, b"\xcf\xfa\xed\xfe", "executable"),
    (0, b"\xca\xfe\xba\xbe", "executable"),  # Mach-O universal binary, or a Java class
    (0, b"\x00asm", "executable"),
    (0, b"SQLite format 3\x00", "sqlite"),
    (0, b"OggS\x00", "media"),
    (0, b"fLaC", "media"),
)
_KIND_NAMES = {
    "pdf": "a PDF",
    "zip": "a ZIP archive",
    "docx": "a Word document (DOCX)",
    "xlsx": "an Excel workbook (XLSX)",
    "pptx": "a PowerPoint presentation (PPTX)",
    "opendocument": "an OpenDocument or EPUB file; save it as .docx or PDF",
    "ole2": "a legacy Office file (.doc, .xls or .ppt); save it as .docx or PDF",
    "rtf": "an RTF document; save it as .docx or PDF",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gif": "a GIF image",
    "tiff": "a TIFF image",
    "bmp": "a BMP image",
    "webp": "a WebP image",
    "gzip": "a gzip archive",
    "bzip2": "a bzip2 archive",
    "xz": "an xz archive",
    "7z": "a 7-Zip archive",
    "rar": "a RAR archive",
    "zstd": "a Zstandard archive",
    "tar": "a tar archive",
    "executable": "an executable program",
    "sqlite": "an SQLite database",
    "media": "an audio or video file",
}


def sniff(data: bytes) -> str | None:
    """The kind of non-text file ``data`` starts like (a key of ``_KIND_NAMES``), or None.

    Short or ASCII signatures are only believed with the binary bytes that follow them in real
    files, so a text file that happens to start with "MZ" or "BM" is still text.
    """
    for offset, magic, kind in _SIGNATURES:
        if data.startswith(magic, offset):
            return kind
    if data[:2] == b"MZ" and b"\x00" in data[2:64]:
        return "executable"  # DOS and Windows programs
    if data[:2] == b"BM" and data[6:10] == b"\x00\x00\x00\x00":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return "webp" if data[8:12] == b"WEBP" else "media"
    if data[:3] == b"BZh" and data[4:10] == b"1AY&SY":
        return "bzip2"
    if data[:3] == b"ID3" and data[3:4] in (b"\x02", b"\x03", b"\x04"):
        return "media"  # MP3 with tags
    if data[:1] == b"\x00" and data[4:8] == b"ftyp":
        return "media"  # MP4, MOV, HEIC
    if data[257:262] == b"ustar" and data[262:263] in (b"\x00", b" "):
        return "tar"
    return None


def describe(kind: str | None) -> str | None:
    """How a sniffed kind is named in messages."""
    return None if kind is None else _KIND_NAMES[kind]


# --------------------------------------------------------------------------------------------
# ZIP containers


#: Which Office or other format a ZIP archive is, by a member only that format has.
_ZIP_MARKERS: tuple[tuple[str, str], ...] = (
    (DOCX_MAIN_PART, "docx"),
    ("xl/workbook.xml", "xlsx"),
    ("ppt/presentation.xml", "pptx"),
    ("mimetype", "opendocument"),
)


def _zip_kind(filename: str, data: bytes, max_zip_members: int, *, strict: bool) -> str:
    """``docx``, ``xlsx``, ``pptx``, ``opendocument`` or plain ``zip``, from member names.

    ``strict`` (the upload claims to be a DOCX): an archive too damaged to list is a
    ``CorruptFile`` and one declaring too many members a ``FileTooLarge``; otherwise both are
    just a ZIP archive.
    """
    declared = zip_declared_members(data)
    if declared is not None and declared > max_zip_members:
        if not strict:
            return "zip"
        raise FileTooLarge(
            f"{filename}: {declared:,} archive members exceeds the limit of "
            f"{max_zip_members:,} (max_zip_members)"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except Exception as exc:  # BadZipFile, but also ValueError/EOFError on mangled headers
        if not strict:
            return "zip"
        raise CorruptFile(f"{filename}: not a readable DOCX (damaged ZIP container)") from exc
    return next((kind for marker, kind in _ZIP_MARKERS if marker in names), "zip")


_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"


def zip_declared_members(data: bytes) -> int | None:
    """The member count a ZIP's end record declares (ZIP64 too), None if there is no record.

    Read before ``zipfile`` lists the archive, which costs time and memory per member.
    """
    start = data.rfind(_EOCD, max(0, len(data) - 22 - 0xFFFF))
    if start < 0 or len(data) < start + 22:
        return None
    (count,) = struct.unpack_from("<H", data, start + 10)
    locator = start - 20
    if count == 0xFFFF and locator >= 0 and data[locator : locator + 4] == _EOCD64_LOCATOR:
        (offset,) = struct.unpack_from("<Q", data, locator + 8)
        if data[offset : offset + 4] == _EOCD64 and len(data) >= offset + 40:
            (count,) = struct.unpack_from("<Q", data, offset + 32)
    return int(count)


# --------------------------------------------------------------------------------------------
# Text or binary


#: Byte order marks, longest first (UTF-32 LE's starts with UTF-16 LE's).
BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_UTF16_SAMPLE_BYTES = 4096
#: Share of one byte column that must be NUL (and none of the other) to read UTF-16 sans BOM.
_UTF16_NUL_SHARE = 0.5


def bom_encoding(data: bytes) -> str | None:
    """The encoding announced by a byte order mark at the start of ``data``."""
    return next((encoding for bom, encoding in BOMS if data.startswith(bom)), None)


def bomless_utf16(data: bytes) -> str | None:
    """``utf-16-le``/``-be`` when ``data`` looks like UTF-16 without a byte order mark: text
    mostly in Latin script has a NUL in every other byte, always the same column."""
    sample = data[:_UTF16_SAMPLE_BYTES]
    sample = sample[: len(sample) - len(sample) % 2]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    if even == 0 and odd >= half * _UTF16_NUL_SHARE:
        return "utf-16-le"
    if odd == 0 and even >= half * _UTF16_NUL_SHARE:
        return "utf-16-be"
    return None


def binary_text_reason(data: bytes) -> str | None:
    """Why ``data`` cannot be text in any encoding the pool reads, or None."""
    if bom_encoding(data) is not None or b"\x00" not in data or bomless_utf16(data):
        return None
    return "it contains NUL bytes"
