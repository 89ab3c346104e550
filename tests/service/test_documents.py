"""The documents resource: uploads go through ingest and reach routing before the response."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from indexing.errors import UpstreamUnavailable
from indexing.files import FilesBackend, LocalFilesBackend, RemoteFile
from indexing.pool import Pool
from service.app import create_app
from service.routes.documents import sanitise_filename
from service.settings import Settings
from tests.factories import make_pdf

BEES = b"# Beekeeping policy\n\nHives may be kept on the office roof with the facilities team."
SAMPLE_DOCUMENTS = 21


def raw_form(after_disposition: bytes) -> dict[str, Any]:
    """Arguments for a hand-written multipart body with boundary ``b`` and one part."""
    return {
        "content": b"--b\r\nContent-Disposition: form-data; " + after_disposition,
        "headers": {"content-type": "multipart/form-data; boundary=b"},
    }


#: What a browser sends for a form whose file input was left empty.
EMPTY_FILE_INPUT = raw_form(b'name="file"; filename=""\r\n\r\n\r\n--b--\r\n')


def upload(client: TestClient, name: str, data: bytes, **fields: Any) -> httpx.Response:
    return client.post("/v1/documents", files={"file": (name, data)}, data=fields)


def routed(client: TestClient, question: str, **options: Any) -> list[str]:
    """The ids of the documents a question is routed to."""
    body = client.post("/v1/route", json={"question": question, "top_k": 10, **options}).json()
    return [d["document_id"] for d in body["documents"]]


def footprint(pool: Pool) -> tuple[int, int, int, int]:
    """What any write would change: documents, change log, remote files, upload intents."""
    return (
        pool.store.count_documents(),
        pool.store.latest_change(),
        len(list(pool.backend.list())),
        len(pool.store.intents()),
    )


def assert_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert {"type", "message"} <= set(body["error"])
    assert body["error"]["type"] == kind
    assert "Traceback" not in response.text
    message: str = body["error"]["message"]
    return message


@pytest.fixture
def small_limit_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path / "small", max_file_bytes=1024, refresh_seconds=0.05)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def app_pool(client: TestClient) -> Pool:
    app = client.app
    assert isinstance(app, FastAPI)
    pool: Pool = app.state.pool
    return pool


# --------------------------------------------------------------------------------- uploading


def test_uploaded_markdown_is_routable_at_once(client: TestClient) -> None:
    assert routed(client, "beekeeping hives") == []

    response = upload(client, "bees.md", BEES)

    assert response.status_code == 201, response.text
    doc = response.json()
    assert doc["outcome"] == "added"
    assert (doc["title"], doc["format"], doc["version"]) == ("Beekeeping policy", "markdown", 1)
    assert doc["source"] == "upload:bees.md"
    assert doc["file_id"].startswith("file_")
    assert response.headers["location"] == f"/v1/documents/{doc['id']}"
    assert routed(client, "beekeeping hives") == [doc["id"]]


def test_uploaded_pdf_keeps_its_pages_and_is_routable(client: TestClient) -> None:
    pdf = make_pdf(["Lighthouse keeping rota.", "Keepers climb the lighthouse stairs at dusk."])

    response = upload(client, "lighthouse.pdf", pdf)

    assert response.status_code == 201, response.text
    doc = response.json()
    assert (doc["format"], doc["mime_type"], doc["page_count"]) == ("pdf", "application/pdf", 2)
    assert routed(client, "lighthouse keepers") == [doc["id"]]


def test_upload_takes_title_tags_groups_attributes_and_source(client: TestClient) -> None:
    response = upload(
        client,
        "notes.txt",
        b"Falconry club meets on Fridays in the car park.",
        title="Falconry Club",
        tags=["social, clubs", "fridays"],
        groups="hr",
        attributes='{"owner": "people-team", "reviewed": 2024}',
        source="intranet:clubs/falconry",
    )

    assert response.status_code == 201, response.text
    doc = response.json()
    assert doc["title"] == "Falconry Club"
    assert doc["tags"] == ["clubs", "fridays", "social"]
    assert doc["groups"] == ["hr"]
    assert doc["attributes"] == {"owner": "people-team", "reviewed": 2024}
    assert doc["source"] == "intranet:clubs/falconry"
    # Restricted to a group: anonymous routing must not offer it.
    assert routed(client, "falconry club") == []


def test_the_same_bytes_again_change_nothing(client: TestClient, sample_pool: Pool) -> None:
    first = upload(client, "bees.md", BEES).json()
    before = footprint(sample_pool)

    again = upload(client, "bees.md", BEES)

    assert again.status_code == 200
    doc = again.json()
    assert doc["outcome"] == "unchanged"
    assert (doc["id"], doc["file_id"], doc["version"]) == (first["id"], first["file_id"], 1)
    assert footprint(sample_pool) == before


def test_changed_bytes_under_the_same_source_become_version_2(
    client: TestClient, sample_pool: Pool
) -> None:
    first = upload(client, "rota.txt", b"Walrus feeding rota for the aquarium team.").json()

    response = upload(client, "rota.txt", b"Narwhal feeding rota for the aquarium team.")

    assert response.status_code == 200
    doc = response.json()
    assert (doc["outcome"], doc["id"], doc["version"]) == ("updated", first["id"], 2)
    assert doc["file_id"] != first["file_id"]
    assert routed(client, "narwhal") == [doc["id"]]
    assert routed(client, "walrus") == []
    remote = {f.id for f in sample_pool.backend.list()}
    assert first["file_id"] not in remote and doc["file_id"] in remote


def test_new_metadata_with_the_same_bytes_updates_without_a_new_version(
    client: TestClient,
) -> None:
    first = upload(client, "bees.md", BEES).json()

    response = upload(client, "bees.md", BEES, tags="outdoors")

    doc = response.json()
    assert (response.status_code, doc["outcome"]) == (200, "updated")
    assert (doc["version"], doc["file_id"], doc["tags"]) == (1, first["file_id"], ["outdoors"])


def test_upload_sanitises_the_filename(client: TestClient) -> None:
    response = upload(client, "../../etc/Bee Notes.md", BEES)

    doc = response.json()
    assert (doc["filename"], doc["source"]) == ("Bee Notes.md", "upload:Bee Notes.md")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("policy.pdf", "policy.pdf"),
        ("/etc/passwd.txt", "passwd.txt"),
        ("..\\..\\Users\\me\\Leave Policy.docx", "Leave Policy.docx"),
        ("bad\x00na\x1bme\x7f.md", "badname.md"),
        ("evil\u202etxt.exe", "eviltxt.exe"),  # a right-to-left override would disguise it
        ("  spaced.md  ", "spaced.md"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
        ("dir/", ""),
        ("..", ""),
        ("\x00\x01", ""),
    ],
)
def test_sanitise_filename(raw: str, clean: str) -> None:
    assert sanitise_filename(raw) == clean


# ------------------------------------------------------------------------------ bad uploads


@pytest.mark.parametrize(
    ("name", "data", "status", "kind"),
    [
        ("tool.exe", b"MZ\x90\x00\x03\x00\x00\x00", 415, "unsupported_format"),
        ("renamed.txt", make_pdf(["a PDF named as text"]), 415, "content_mismatch"),
        ("broken.pdf", b"this is no PDF at all", 415, "content_mismatch"),
        ("truncated.pdf", make_pdf(["cut short"])[:400], 422, "corrupt_file"),
        ("empty.txt", b"", 422, "empty_document"),
        ("blank.md", b"  \n\n  \n", 422, "empty_document"),
    ],
)
def test_bad_files_are_refused_and_leave_nothing_behind(
    client: TestClient, sample_pool: Pool, name: str, data: bytes, status: int, kind: str
) -> None:
    before = footprint(sample_pool)

    message = assert_error(upload(client, name, data), status, kind)

    assert name in message
    assert footprint(sample_pool) == before


@pytest.mark.parametrize(
    ("request_args", "needle"),
    [
        ({"files": {"title": (None, "no file")}}, "no 'file' part"),
        ({"json": {"file": "bees.md"}}, "multipart/form-data"),
        ({"files": {"file": (None, "text, not a file")}}, "with a filename"),
        (EMPTY_FILE_INPUT, "no usable filename"),
        (raw_form(b'name="file"; filename="a.md"\r\n\r\nno closing boundary'), "ended before"),
        (raw_form(b"nameless\r\n\r\nbody\r\n--b--\r\n"), "has no name"),
        (raw_form(b'name="file"\r\nno colon here\r\n\r\nbody\r\n--b--\r\n'), "malformed"),
        ({"files": [("file", ("a.md", BEES)), ("file", ("b.md", BEES))]}, "more than one"),
        ({"files": {"file": ("bees.md", BEES)}, "data": {"tag": "x"}}, "unknown form field"),
        (
            {"files": {"file": ("bees.md", BEES)}, "data": {"attributes": "{not json"}},
            "not valid JSON",
        ),
        (
            {"files": {"file": ("bees.md", BEES)}, "data": {"attributes": "[1, 2]"}},
            "JSON object",
        ),
        (
            {"files": {"file": ("bees.md", BEES)}, "data": {"title": ["one", "two"]}},
            "more than once",
        ),
        ({"files": {"file": ("bees.md", BEES)}, "data": {"title": "t" * 501}}, "at most 500"),
        (
            {"files": {"file": ("bees.md", BEES)}, "data": {"title": "Be\x00es"}},
            "a control character (U+0000)",
        ),
        ({"files": {"file": ("bees.md", BEES)}, "data": {"tags": ["x", "y" * 101]}}, "at most 100"),
    ],
)
def test_malformed_upload_forms_are_400(
    client: TestClient, sample_pool: Pool, request_args: dict[str, Any], needle: str
) -> None:
    before = footprint(sample_pool)

    message = assert_error(client.post("/v1/documents", **request_args), 400, "invalid_request")

    assert needle in message
    assert footprint(sample_pool) == before


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


def nested_json(depth: int) -> str:
    """``depth`` objects inside each other, written out as text: too deep to build as a dict
    and serialise with ``json.dumps`` at the larger depths."""
    return '{"x":' * (depth - 1) + '{"leaf":1}' + "}" * (depth - 1)


UNSTORABLE_ATTRIBUTES = [
    pytest.param(nested_json(17), "nested more than 16 levels", id="deep"),
    pytest.param(nested_json(300), "nested more than 16 levels", id="deeper-than-serialisers"),
    # Too deep for Python's JSON parser (a PUT body holding it cannot be read at all).
    pytest.param(nested_json(5000), "nested too deeply", id="deeper-than-python"),
    pytest.param('{"score": NaN}', "finite", id="nan"),
    pytest.param('{"score": [1, -Infinity]}', "finite", id="infinity"),
    pytest.param('{"owner": "a\\u0000b"}', "NUL", id="nul-value"),
    pytest.param('{"a\\u0000": 1}', "NUL", id="nul-key"),
    pytest.param('{"owner": "\\ud800"}', "lone surrogate", id="surrogate"),
    pytest.param('{"notes": "%s"}' % ("n" * 70_000), "65,536", id="huge"),
]


@pytest.mark.parametrize(("attributes", "needle"), UNSTORABLE_ATTRIBUTES)
def test_an_upload_with_unstorable_attributes_is_400_and_stores_nothing(
    client: TestClient, sample_pool: Pool, attributes: str, needle: str
) -> None:
    before = footprint(sample_pool)

    response = upload(client, "bees.md", BEES, attributes=attributes)

    assert needle in assert_error(response, 400, "invalid_request")
    assert footprint(sample_pool) == before
    assert client.get("/v1/documents").status_code == 200


@pytest.mark.parametrize(("attributes", "needle"), UNSTORABLE_ATTRIBUTES)
def test_put_refuses_unstorable_attributes_and_keeps_the_old_ones(
    client: TestClient, attributes: str, needle: str
) -> None:
    doc = upload(client, "bees.md", BEES, attributes='{"owner": "facilities"}').json()
    body = f'{{"attributes": {attributes}}}'

    response = client.put(
        f"/v1/documents/{doc['id']}", content=body, headers={"content-type": "application/json"}
    )

    unreadable = attributes.count("{") > 1000
    status, needle = (400, "error parsing the body") if unreadable else (422, needle)
    assert needle in assert_error(
        response, status, "bad_request" if unreadable else "invalid_request"
    )
    assert client.get(f"/v1/documents/{doc['id']}").json()["attributes"] == {"owner": "facilities"}
    assert client.get("/v1/documents").status_code == 200


def test_attributes_at_the_depth_limit_are_kept(client: TestClient) -> None:
    doc = upload(client, "bees.md", BEES, attributes=json.dumps(nested(16))).json()

    assert doc["attributes"] == nested(16)
    listed = client.get("/v1/documents").json()["data"]
    assert [d["attributes"] for d in listed if d["id"] == doc["id"]] == [nested(16)]


def test_a_file_over_the_size_limit_is_413(small_limit_client: TestClient) -> None:
    pool = app_pool(small_limit_client)
    before = footprint(pool)

    response = upload(small_limit_client, "big.txt", b"words " * 400)

    assert "1,024 bytes (max_file_bytes)" in assert_error(response, 413, "file_too_large")
    assert footprint(pool) == before
    assert upload(small_limit_client, "small.txt", b"words " * 100).status_code == 201


async def _post_stream(app: FastAPI, headers: dict[str, str], body: Iterator[bytes]) -> Any:
    """POST straight to the ASGI app, handing it the body one chunk at a time (the test client
    would read it all first). Returns the status, the response body and the chunks consumed."""
    consumed = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal consumed
        chunk = next(body, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        consumed += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/documents",
        "raw_path": b"/v1/documents",
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, content, consumed


def test_an_oversized_upload_is_refused_before_it_is_all_read(
    small_limit_client: TestClient,
) -> None:
    def endless_file() -> Iterator[bytes]:
        yield (
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\n"
        )
        for _ in range(100_000):  # 400 MB, were it all read
            yield b"a" * 4096

    headers = {"content-type": "multipart/form-data; boundary=XyZ"}  # chunked: no length
    status, content, consumed = anyio.run(
        _post_stream, small_limit_client.app, headers, endless_file()
    )

    assert status == 413
    assert b'"file_too_large"' in content
    assert consumed <= 2


def test_a_body_declared_too_large_is_refused_unread(small_limit_client: TestClient) -> None:
    headers = {
        "content-type": "multipart/form-data; boundary=XyZ",
        "content-length": str(10**12),
    }
    status, content, consumed = anyio.run(
        _post_stream, small_limit_client.app, headers, iter([b"never read"])
    )

    assert (status, consumed) == (413, 0)
    assert b"1,000,000,000,000 bytes" in content


@dataclass
class OverloadedBackend:
    """A local store whose uploads fail the way an overloaded Files API does."""

    inner: FilesBackend

    def upload(self, *, filename: str, data: bytes, mime_type: str) -> RemoteFile:
        raise UpstreamUnavailable("the Files API is overloaded", retry_after=7)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_an_upstream_failure_is_503_with_retry_after(settings: Settings) -> None:
    backend = OverloadedBackend(LocalFilesBackend(settings.home / "files"))
    pool = Pool.open(settings.pool_config(), backend)  # type: ignore[arg-type]
    try:
        with TestClient(create_app(settings, pool=pool)) as client:
            response = upload(client, "bees.md", BEES)
        assert_error(response, 503, "upstream_unavailable")
        assert response.headers["retry-after"] == "7"
        assert pool.store.count_documents() == 0
    finally:
        pool.close()


# -------------------------------------------------------------------------- show and list


def test_get_shows_one_document(client: TestClient) -> None:
    doc = upload(client, "bees.md", BEES).json()

    response = client.get(f"/v1/documents/{doc['id']}")

    assert response.status_code == 200
    shown = response.json()
    assert "outcome" not in shown
    assert {k: shown[k] for k in ("id", "title", "file_id")} == {
        k: doc[k] for k in ("id", "title", "file_id")
    }


def test_listing_pages_through_every_document_with_cursors(client: TestClient) -> None:
    ids: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/documents", params=params).json()
        assert len(page["data"]) <= 5
        ids += [doc["id"] for doc in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == 5
    assert len(ids) == SAMPLE_DOCUMENTS
    assert ids == sorted(set(ids))


def test_listing_defaults_to_50_and_filters_by_tag(client: TestClient) -> None:
    everything = client.get("/v1/documents").json()
    leave = client.get("/v1/documents", params={"tag": "leave"}).json()

    assert len(everything["data"]) == SAMPLE_DOCUMENTS and everything["next_cursor"] is None
    assert {d["title"] for d in leave["data"]} == {
        "Annual Leave Policy",
        "Sickness Absence Policy",
        "Parental Leave Policy",
    }


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"limit": 0}, 422, "limit"),
        ({"limit": 1001}, 422, "limit"),
        ({"limit": "many"}, 422, "limit"),
        ({"cursor": "not-a-cursor"}, 400, "invalid cursor"),
    ],
)
def test_listing_rejects_bad_parameters(
    client: TestClient, params: dict[str, Any], status: int, needle: str
) -> None:
    response = client.get("/v1/documents", params=params)

    kind = "invalid_request"
    assert needle in assert_error(response, status, kind)


# ------------------------------------------------------------------------- edit and delete


def test_put_changes_tags_and_tag_filtered_routing_follows(client: TestClient) -> None:
    doc = upload(client, "bees.md", BEES, tags="outdoors").json()
    assert routed(client, "beekeeping hives", tags=["facilities"]) == []

    response = client.put(
        f"/v1/documents/{doc['id']}", json={"tags": ["facilities", "roof"], "title": "Bees"}
    )

    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["tags"], changed["title"], changed["version"]) == (
        ["facilities", "roof"],
        "Bees",
        1,
    )
    assert routed(client, "beekeeping hives", tags=["facilities"]) == [doc["id"]]
    assert routed(client, "beekeeping hives", tags=["outdoors"]) == []


def test_put_title_routes_by_the_new_titles_words(client: TestClient) -> None:
    doc = upload(client, "bees.md", BEES).json()
    assert routed(client, "apiary") == []

    client.put(f"/v1/documents/{doc['id']}", json={"title": "Rooftop apiary"})

    assert routed(client, "apiary") == [doc["id"]]


def test_put_groups_hides_a_document_from_anonymous_routing(client: TestClient) -> None:
    doc = upload(client, "bees.md", BEES).json()

    client.put(f"/v1/documents/{doc['id']}", json={"groups": ["facilities"]})

    assert routed(client, "beekeeping hives") == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "t" * 501},
        {"title": "Be\u0000es"},
        {"title": "evil\u202etxt"},
        {"tags": "not-a-list"},
        {"tags": [""]},
        {"attributes": ["not", "an", "object"]},
        {"colour": "blue"},
    ],
)
def test_put_rejects_bad_bodies(client: TestClient, body: dict[str, Any]) -> None:
    doc = upload(client, "bees.md", BEES).json()

    response = client.put(f"/v1/documents/{doc['id']}", json=body)

    assert_error(response, 422, "invalid_request")
    assert client.get(f"/v1/documents/{doc['id']}").json()["updated_at"] == doc["updated_at"]


def test_delete_document_stops_routing_to_it(client: TestClient, sample_pool: Pool) -> None:
    doc = upload(client, "bees.md", BEES).json()

    response = client.delete(f"/v1/documents/{doc['id']}")

    assert (response.status_code, response.content) == (204, b"")
    assert_error(client.get(f"/v1/documents/{doc['id']}"), 404, "not_found")
    assert routed(client, "beekeeping hives") == []
    assert doc["file_id"] not in {f.id for f in sample_pool.backend.list()}
    assert sample_pool.store.count_documents() == SAMPLE_DOCUMENTS


@pytest.mark.parametrize(
    ("method", "json"),
    [("GET", None), ("PUT", {"title": "New"}), ("DELETE", None)],
)
def test_unknown_document_is_404(client: TestClient, method: str, json: Any) -> None:
    response = client.request(method, "/v1/documents/doc_missing", json=json)

    assert "doc_missing" in assert_error(response, 404, "not_found")


def test_openapi_describes_the_upload_form(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/documents"]["post"]

    schema = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["file"]
    assert {"201", "200", "400", "413", "415", "422"} <= set(operation["responses"])
