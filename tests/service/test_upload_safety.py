"""Safe inputs: what an upload may be, what is refused (status, error type, a message naming the
rule), how filenames are sanitised, and that a refused upload leaves nothing anywhere.

``kpool ingest`` goes through the same ``indexing.ingest`` and reports the same messages.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import SQLModel, func, select

from indexing.files import LocalFilesBackend
from indexing.models import Change, Content, Document, RetiredFile, Summary, UploadIntent
from indexing.pool import Pool
from service.app import create_app
from service.cli import main
from service.settings import Settings
from tests.factories import make_docx, make_docx_edited, make_pdf, make_zip, make_zip_bomb_docx

BOUNDARY = "kpoolBoundary7MA4YWxk"
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

PDF = make_pdf(["Lighthouse keepers climb the stairs at dusk."])
DOCX = make_docx(["Lighthouse keepers climb the stairs at dusk."])
TEXT = "Lighthouse keepers climb the stairs at dusk, café in hand.\n"


def multipart(
    filename: str | bytes,
    data: bytes,
    content_type: str | None = None,
    **fields: str,
) -> dict[str, Any]:
    """Arguments for ``client.post`` with a hand-written multipart body: the filename goes as
    given (a client library would escape or refuse some), with an optional part Content-Type."""
    raw_name = filename.encode() if isinstance(filename, str) else filename
    part = b'Content-Disposition: form-data; name="file"; filename="' + raw_name + b'"\r\n'
    if content_type is not None:
        part += f"Content-Type: {content_type}\r\n".encode()
    body = b"--" + BOUNDARY.encode() + b"\r\n" + part + b"\r\n" + data + b"\r\n"
    for name, value in fields.items():
        body += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
    body += f"--{BOUNDARY}--\r\n".encode()
    return {
        "content": body,
        "headers": {"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    }


def post(client: TestClient, filename: str | bytes, data: bytes, **options: Any) -> httpx.Response:
    return client.post("/v1/documents", **multipart(filename, data, **options))


def app_pool(client: TestClient) -> Pool:
    app = client.app
    assert isinstance(app, FastAPI)
    pool: Pool = app.state.pool
    return pool


def files_root(pool: Pool) -> Path:
    assert isinstance(pool.backend, LocalFilesBackend)
    return pool.backend.root


def everything(pool: Pool) -> dict[str, Any]:
    """Every place an upload could leave a trace: each table's rows, the backend's listing and
    the files on disk under the local backend."""
    tables: list[type[SQLModel]] = [
        Document,
        Summary,
        Content,
        Change,
        UploadIntent,
        RetiredFile,
    ]
    with pool.store.session() as session:
        rows = {
            table.__name__: session.exec(select(func.count()).select_from(table)).one()
            for table in tables
        }
    return {
        **rows,
        "remote": sorted(f.id for f in pool.backend.list()),
        "disk": sorted(p.name for p in files_root(pool).rglob("*")),
    }


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert "Traceback" not in response.text
    return response.status_code, body["error"]["type"], body["error"]["message"]


# --------------------------------------------------------------------------------------------
# Refused


def _xlsx() -> bytes:
    return make_zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"})


def _dtd(xml: str) -> str:
    root = xml.index("<w:document")
    return (
        xml[:root] + '<!DOCTYPE w:document [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + xml[root:]
    )


#: ``(filename, content, part Content-Type, status, error type, message fragment)``
REFUSED: list[tuple[str, Callable[[], bytes], str | None, int, str, str]] = [
    # The content is not what the extension declares.
    ("policy.pdf", lambda: b"this is no PDF at all", None, 415, "content_mismatch",
     "policy.pdf: declared .pdf but the content is not a PDF (no %PDF- header in its first "
     "1,024 bytes)"),
    ("policy.pdf", lambda: DOCX, None, 415, "content_mismatch",
     "policy.pdf: declared .pdf but the content is a Word document (DOCX)"),
    ("policy.docx", lambda: b"plain words, no archive", None, 415, "content_mismatch",
     "policy.docx: declared .docx but the content is not a DOCX (not a ZIP archive)"),
    ("policy.docx", _xlsx, None, 415, "content_mismatch",
     "policy.docx: declared .docx but the content is an Excel workbook (XLSX)"),
    ("policy.docx", lambda: make_zip({"notes.txt": b"x"}), None, 415, "content_mismatch",
     "policy.docx: declared .docx but the content is a ZIP archive without word/document.xml"),
    ("policy.docx", lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), None, 415,
     "content_mismatch", "policy.docx: declared .docx but the content is a legacy Office file"),
    ("notes.txt", lambda: PDF, None, 415, "content_mismatch",
     "notes.txt: declared .txt but the content is a PDF"),
    ("page.html", lambda: b"\x89PNG\r\n\x1a\n" + bytes(64), None, 415, "content_mismatch",
     "page.html: declared .html but the content is a PNG image"),
    ("notes.md", lambda: b"\x7fELF\x02\x01\x01" + bytes(64), None, 415, "content_mismatch",
     "notes.md: declared .md but the content is an executable program"),
    ("notes.txt", lambda: make_zip({"a.txt": b"x"}), None, 415, "content_mismatch",
     "notes.txt: declared .txt but the content is a ZIP archive"),
    ("notes.txt", lambda: b"Leave\x00policy", None, 415, "content_mismatch",
     "notes.txt: declared .txt but the content is binary, not text (it contains NUL bytes)"),
    ("notes.txt", lambda: b"a\x01\x02\x03\x04\x05\x06\x07\x08" * 40, None, 415,
     "content_mismatch", "control characters; at most 5% in text)"),
    # The content is not what the part's Content-Type declares.
    ("policy.docx", lambda: DOCX, "application/pdf", 415, "content_mismatch",
     "policy.docx: declared Content-Type application/pdf but the content is a Word document "
     "(DOCX)"),
    ("policy.pdf", lambda: PDF, "text/plain", 415, "content_mismatch",
     "policy.pdf: declared Content-Type text/plain but the content is a PDF"),
    ("notes.md", lambda: b"# Leave\n", "image/png", 415, "content_mismatch",
     "notes.md: declared Content-Type image/png but the content is text"),
    # Formats the pool does not take.
    ("budget.xlsx", _xlsx, None, 415, "unsupported_format",
     "budget.xlsx: unsupported format '.xlsx'; supported: .docx, .htm, .html"),
    ("README", lambda: b"Read me.", None, 415, "unsupported_format",
     "README: no file extension; supported:"),
    # The right format, but unreadable.
    ("locked.pdf", lambda: make_pdf(["Secret."], encrypt_with="pw"), None, 422,
     "encrypted_file", "locked.pdf: the PDF is encrypted with a password; remove it"),
    ("locked.pdf", lambda: make_pdf(["Secret."], encrypt_with=""), None, 422, "encrypted_file",
     "locked.pdf: the PDF is encrypted (it opens without a password but restricts copying"),
    ("truncated.pdf", lambda: PDF[:400], None, 422, "corrupt_file",
     "truncated.pdf: cannot read the PDF"),
    ("damaged.docx", lambda: b"PK\x03\x04" + bytes(200), None, 422, "corrupt_file",
     "damaged.docx: not a readable DOCX (damaged ZIP container)"),
    ("entities.docx", lambda: make_docx_edited(_dtd), None, 422, "corrupt_file",
     "entities.docx: XML part 'word/document.xml' declares a DTD (<!DOCTYPE>)"),
    ("broken.md", lambda: b"---\ntitle: [unclosed\n---\nText.\n", None, 422, "corrupt_file",
     "broken.md: malformed YAML front matter"),
    ("empty.txt", lambda: b"", None, 422, "empty_document", "empty.txt: the file is empty"),
    ("blank.html", lambda: b"<p>  </p><script>x()</script>", None, 422, "empty_document",
     "blank.html: no text found in the html file"),
    # Archive and parser limits.
    ("bomb.docx", make_zip_bomb_docx, None, 413, "file_too_large",
     "bomb.docx: member 'word/media/image1.bin' compression ratio 1,029:1 exceeds the limit "
     "of 100.0 (max_zip_ratio)"),
    ("deep.html", lambda: b"<div>" * 10_001 + b"Deep.", None, 413, "file_too_large",
     "deep.html: HTML elements nested 10,001 deep exceeds the limit of 10,000 (max_html_depth)"),
    ("front.md", lambda: b"---\n" + b"key: value\n" * 6_000 + b"---\nBody.\n", None, 413,
     "file_too_large", "front.md: front matter of 66,000 characters exceeds the limit of "
     "65,536 (max_front_matter_chars)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("filename", "build", "content_type", "status", "kind", "fragment"),
    REFUSED,
    ids=[f"{row[0]}-{row[4]}-{i}" for i, row in enumerate(REFUSED)],
)
def test_refused_uploads_say_which_rule_and_leave_nothing_behind(
    client: TestClient,
    filename: str,
    build: Callable[[], bytes],
    content_type: str | None,
    status: int,
    kind: str,
    fragment: str,
) -> None:
    pool = app_pool(client)
    before = everything(pool)

    response = post(client, filename, build(), content_type=content_type)

    got_status, got_kind, message = error_of(response)
    assert (got_status, got_kind) == (status, kind), message
    assert fragment in message
    assert everything(pool) == before


def test_bytes_already_in_the_pool_are_refused_under_a_name_they_do_not_match(
    client: TestClient,
) -> None:
    assert post(client, "rota.md", b"# Rota\n\nNarwhal feeding rota.").status_code == 201

    response = post(client, "rota.pdf", b"# Rota\n\nNarwhal feeding rota.")

    assert error_of(response)[:2] == (415, "content_mismatch")


@pytest.mark.parametrize(
    ("request_args", "fragment"),
    [
        pytest.param(
            multipart("\x00\x01\u202e", TEXT.encode()),
            "the 'file' part has no usable filename (e.g. policy.pdf)",
            id="nothing-left-of-the-filename",
        ),
        pytest.param(
            multipart("../..", TEXT.encode()), "no usable filename", id="dots-only-filename"
        ),
        pytest.param(
            multipart("notes.txt", TEXT.encode(), source="intranet:evil\u202etxt.md"),
            "source 'intranet:evil\\u202etxt.md' contains an invisible formatting character "
            "(U+202E)",
            id="source-with-right-to-left-override",
        ),
        pytest.param(
            multipart("notes.txt", TEXT.encode(), source="intranet:a\u2028b"),
            "contains a line separator (U+2028)",
            id="source-with-line-separator",
        ),
        pytest.param(
            multipart("notes.txt", TEXT.encode(), content_type="text/plain; x=" + "y" * 9_000),
            "the multipart body is malformed: Maximum header size exceeded",
            id="part-header-too-large",
        ),
    ],
)
def test_unusable_names_and_headers_are_400(
    client: TestClient, request_args: dict[str, Any], fragment: str
) -> None:
    pool = app_pool(client)
    before = everything(pool)

    status, kind, message = error_of(client.post("/v1/documents", **request_args))

    assert (status, kind) == (400, "invalid_request")
    assert fragment in message
    assert everything(pool) == before


@pytest.fixture
def few_pages_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path / "few", max_pdf_pages=2, refresh_seconds=0.05)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_pdf_over_max_pdf_pages_is_413_naming_the_setting(few_pages_client: TestClient) -> None:
    pool = app_pool(few_pages_client)
    before = everything(pool)

    response = post(few_pages_client, "long.pdf", make_pdf(["One.", "Two.", "Three."]))

    assert error_of(response) == (
        413,
        "file_too_large",
        "long.pdf: 3 pages exceeds the limit of 2 (max_pdf_pages)",
    )
    assert everything(pool) == before


# --------------------------------------------------------------------------------------------
# Accepted


#: ``(filename, content, part Content-Type, format)``: variants real clients and files produce.
ACCEPTED: list[tuple[str, bytes, str | None, str]] = [
    ("Policy.PDF", PDF, None, "pdf"),
    ("leading-junk.pdf", b"\r\n%% produced by a mail gateway\n" + PDF, None, "pdf"),
    ("bom-first.pdf", b"\xef\xbb\xbf" + PDF, "application/pdf", "pdf"),
    ("generic.pdf", PDF, "application/octet-stream", "pdf"),
    ("params.pdf", PDF, "Application/PDF; name=x.pdf", "pdf"),
    ("policy.docx", DOCX, DOCX_MIME, "docx"),
    ("zip-labelled.docx", DOCX, "application/zip", "docx"),
    ("bom.txt", TEXT.encode("utf-8-sig"), "text/plain", "text"),
    ("utf16.txt", TEXT.encode("utf-16"), None, "text"),
    ("notepad.txt", TEXT.encode("utf-16-le"), "", "text"),
    ("latin1.TXT", TEXT.encode("latin-1"), "text/plain; charset=iso-8859-1", "text"),
    ("page.htm", b"<h1>Lighthouse</h1><p>Keepers climb.</p>", "text/html", "html"),
    ("guide.markdown", b"# Lighthouse\n\nKeepers climb.\n", "text/markdown", "markdown"),
    ("plain-labelled.md", b"# Lighthouse\n\nKeepers climb at dawn.\n", "text/plain", "markdown"),
    ("starts-mz.txt", b"MZ Richtlinie: Leuchtturmwaerter steigen.\n", None, "text"),
]


@pytest.mark.parametrize(
    ("filename", "data", "content_type", "fmt"), ACCEPTED, ids=[row[0] for row in ACCEPTED]
)
def test_legitimate_variants_are_accepted(
    client: TestClient, filename: str, data: bytes, content_type: str | None, fmt: str
) -> None:
    response = post(client, filename, data, content_type=content_type)

    assert response.status_code == 201, response.text
    doc = response.json()
    assert (doc["format"], doc["filename"]) == (fmt, filename)


# --------------------------------------------------------------------------------------------
# Filenames


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        pytest.param("../../etc/passwd.txt", "passwd.txt", id="dot-dot"),
        pytest.param("C:\\x\\y.txt", "y.txt", id="windows-path"),
        pytest.param("/var/tmp/Leave Policy.md", "Leave Policy.md", id="absolute"),
        pytest.param("notes\x00.txt", "notes.txt", id="nul"),
        pytest.param("ctl\x1b[31m.txt", "ctl[31m.txt", id="escape-sequence"),
        pytest.param("evil\u202etxt.md", "eviltxt.md", id="right-to-left-override"),
        pytest.param("Cafe\u0301.txt", "Café.txt", id="nfc"),
        pytest.param("x" * 300 + ".txt", "x" * 196 + ".txt", id="long"),
    ],
)
def test_filenames_are_sanitised_for_storage_display_and_upload(
    client: TestClient, raw: str, clean: str
) -> None:
    pool = app_pool(client)

    response = post(client, raw, TEXT.encode())

    assert response.status_code == 201, response.text
    doc = response.json()
    assert (doc["filename"], doc["source"]) == (clean, f"upload:{clean}")
    assert pool.backend.retrieve(doc["file_id"]).filename == clean
    listed = {
        d["filename"] for d in client.get("/v1/documents", params={"limit": 1000}).json()["data"]
    }
    assert clean in listed


def test_nothing_is_written_to_disk_under_a_given_name(client: TestClient) -> None:
    pool = app_pool(client)
    before = set(files_root(pool).rglob("*"))

    doc = post(client, "../../../../tmp/kpool-escape.txt", TEXT.encode()).json()

    new = set(files_root(pool).rglob("*")) - before
    assert {path.name for path in new} == {f"{doc['file_id']}.bin", f"{doc['file_id']}.json"}
    assert all(path.parent == files_root(pool) for path in new)
    assert not Path("/tmp/kpool-escape.txt").exists()


# --------------------------------------------------------------------------------------------
# The same rules from the command line


def test_kpool_ingest_reports_the_same_messages_per_file_and_exits_1(
    tmp_path: Path, sample_home: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(sample_home, home)
    folder = tmp_path / "drop"
    folder.mkdir()
    cases = [row for row in REFUSED if row[2] is None and row[0] != "README"]
    for index, (filename, build, *_rest) in enumerate(cases):
        (folder / f"{index:02d}-{filename}").write_bytes(build())
    (folder / "good.txt").write_text("Canteen policy\n\nLunch is served from noon.")

    result = CliRunner().invoke(
        main, ["ingest", str(folder), "--json"], env={"KPOOL_HOME": str(home)}
    )

    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["summary"]["added"] == 1
    assert report["summary"]["failed"] == len(cases)
    reasons = {Path(d["source"]).name: d["reason"] for d in report["documents"]}
    for index, (filename, _build, _type, _status, _kind, fragment) in enumerate(cases):
        name = f"{index:02d}-{filename}"
        assert fragment.replace(filename, name, 1) in reasons[name]
