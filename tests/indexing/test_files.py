"""Files backends: the local store and Anthropic's Files API (real SDK against the fake server)."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anthropic
import httpx
import pytest

from indexing.anthropic_client import make_client
from indexing.anthropic_files import AnthropicFilesBackend
from indexing.errors import (
    ConfigurationError,
    FileTooLarge,
    RemoteFileMissing,
    StoreUnavailable,
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from indexing.files import FilesBackend, LocalFilesBackend, RemoteFile
from tests.fakes.anthropic_server import FakeAnthropic

PDF = ("leave-policy.pdf", b"%PDF-1.4\n1 0 obj <<>> endobj\n%%EOF\n", "application/pdf")
TEXT = ("travel.txt", "Per diem is 40 €.\n".encode(), "text/plain")


@pytest.fixture
def local_backend(tmp_path: Path) -> LocalFilesBackend:
    return LocalFilesBackend(tmp_path / "files")


@pytest.fixture
def anthropic_backend(anthropic_client: anthropic.Anthropic) -> AnthropicFilesBackend:
    return AnthropicFilesBackend(anthropic_client, list_page_size=20)


@pytest.fixture(params=["local", "anthropic"])
def backend(request: pytest.FixtureRequest) -> FilesBackend:
    backend: FilesBackend = request.getfixturevalue(f"{request.param}_backend")
    return backend


def upload(backend: FilesBackend, file: tuple[str, bytes, str] = TEXT) -> RemoteFile:
    filename, data, mime_type = file
    return backend.upload(filename=filename, data=data, mime_type=mime_type)


# --------------------------------------------------------------------------------------------
# Behaviour shared by both backends
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("file", [PDF, TEXT], ids=["pdf", "text"])
def test_upload_returns_the_file_object_shape(
    backend: FilesBackend, file: tuple[str, bytes, str]
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    stored = upload(backend, file)

    assert stored.id.startswith("file_") and len(stored.id) == len("file_") + 24
    assert (stored.filename, stored.size_bytes, stored.mime_type) == (
        file[0],
        len(file[1]),
        file[2],
    )
    assert stored.created_at.utcoffset() == timedelta(0)
    assert before <= stored.created_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert stored.downloadable is False


def test_retrieve_returns_what_upload_returned(backend: FilesBackend) -> None:
    stored = upload(backend, PDF)
    assert backend.retrieve(stored.id) == stored


def test_list_returns_every_file(backend: FilesBackend) -> None:
    uploaded = {
        upload(backend, (f"doc-{i}.txt", f"text {i}".encode(), "text/plain")).id for i in range(45)
    }
    assert {f.id for f in backend.list()} == uploaded


def test_existing_reports_exactly_the_live_ids(backend: FilesBackend) -> None:
    kept, deleted = upload(backend), upload(backend)
    backend.delete(deleted.id)
    unknown = "file_" + "x" * 24

    assert backend.existing([kept.id, deleted.id, unknown, kept.id]) == {kept.id}
    assert backend.existing([]) == set()


def test_delete_is_idempotent(backend: FilesBackend) -> None:
    stored = upload(backend)
    assert backend.delete(stored.id) is True
    assert backend.delete(stored.id) is False
    assert [f.id for f in backend.list()] == []


def test_retrieve_of_a_deleted_file_raises_remote_file_missing(backend: FilesBackend) -> None:
    stored = upload(backend)
    backend.delete(stored.id)
    with pytest.raises(RemoteFileMissing) as caught:
        backend.retrieve(stored.id)
    assert caught.value.file_id == stored.id


def test_uploads_from_several_threads_all_land(backend: FilesBackend) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda i: upload(backend, (f"d{i}.txt", b"x" * i, "text/plain")), range(32))
        )
    assert len({r.id for r in results}) == 32
    assert {f.id for f in backend.list()} == {r.id for r in results}


def test_check_passes_when_the_backend_is_usable(backend: FilesBackend) -> None:
    backend.check()


# --------------------------------------------------------------------------------------------
# Local backend
# --------------------------------------------------------------------------------------------


def test_local_list_is_in_creation_order(local_backend: LocalFilesBackend) -> None:
    ids = [upload(local_backend).id for _ in range(10)]
    assert [f.id for f in local_backend.list()] == ids


def test_local_store_survives_a_restart(tmp_path: Path) -> None:
    stored = upload(LocalFilesBackend(tmp_path), PDF)
    reopened = LocalFilesBackend(tmp_path)
    assert reopened.retrieve(stored.id) == stored
    assert (tmp_path / f"{stored.id}.bin").read_bytes() == PDF[1]


def test_local_half_written_file_is_not_listed(local_backend: LocalFilesBackend) -> None:
    stored = upload(local_backend)
    # What a crash between the two atomic writes leaves: bytes without metadata, and a temp file.
    (local_backend.root / "file_AAAAAAAAAAAAAAAAAAAAAAAA.bin").write_bytes(b"orphan")
    (local_backend.root / ".file_BBBBBBBBBBBBBBBBBBBBBBBB.json.x.tmp").write_bytes(b"{")
    assert [f.id for f in local_backend.list()] == [stored.id]


@pytest.mark.parametrize("file_id", ["../../etc/passwd", "file_../x", "", "file_short"])
def test_local_rejects_ids_it_never_issued(local_backend: LocalFilesBackend, file_id: str) -> None:
    with pytest.raises(RemoteFileMissing):
        local_backend.retrieve(file_id)
    assert local_backend.delete(file_id) is False
    assert local_backend.existing([file_id]) == set()


def test_a_local_store_that_cannot_be_made_is_a_clear_configuration_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "home").write_text("a file where the folder should be")

    with pytest.raises(ConfigurationError, match=r"cannot keep local files in .*home/files"):
        LocalFilesBackend(tmp_path / "home" / "files")


def test_an_unwritable_local_store_refuses_the_upload_and_keeps_nothing(
    local_backend: LocalFilesBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("indexing.files._write_atomic", full)
    with pytest.raises(StoreUnavailable, match=r"cannot be written \(No space left on device\)"):
        local_backend.upload(filename="a.txt", data=b"x", mime_type="text/plain")
    assert list(local_backend.list()) == [] and list(local_backend.root.iterdir()) == []


def test_damaged_local_metadata_is_skipped_not_fatal(local_backend: LocalFilesBackend) -> None:
    kept = local_backend.upload(filename="a.txt", data=b"a", mime_type="text/plain")
    damaged = local_backend.upload(filename="b.txt", data=b"b", mime_type="text/plain")
    (local_backend.root / f"{damaged.id}.json").write_text('{"id": "trunc')

    assert [f.id for f in local_backend.list()] == [kept.id]


def test_local_check_fails_when_the_store_is_gone(tmp_path: Path) -> None:
    backend = LocalFilesBackend(tmp_path / "files")
    (tmp_path / "files").rmdir()
    with pytest.raises(UpstreamUnavailable):
        backend.check()


# --------------------------------------------------------------------------------------------
# Anthropic backend: what goes on the wire
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("file", [PDF, TEXT], ids=["pdf", "text"])
def test_upload_sends_filename_and_content_type_in_the_file_part(
    anthropic_backend: AnthropicFilesBackend,
    fake_anthropic: FakeAnthropic,
    file: tuple[str, bytes, str],
) -> None:
    upload(anthropic_backend, file)

    (sent,) = fake_anthropic.requests_to("POST", "/v1/files")
    part = sent.part("file")
    assert part is not None
    assert (part.filename, part.content_type, part.size) == (file[0], file[2], len(file[1]))
    assert sent.header("anthropic-version") == "2026-10-21"
    assert sent.header("anthropic-beta") is None


def test_list_follows_next_page_across_pages(
    anthropic_backend: AnthropicFilesBackend, fake_anthropic: FakeAnthropic
) -> None:
    stored = {
        fake_anthropic.put_file(filename=f"d{i}.txt", data=b"x", mime_type="text/plain").id
        for i in range(45)
    }

    assert {f.id for f in anthropic_backend.list()} == stored
    pages = fake_anthropic.requests_to("GET", "/v1/files")
    assert len(pages) == 3
    assert [r.query.get("limit") for r in pages] == [["20"]] * 3
    assert "page" not in pages[0].query
    assert all(r.query["page"][0].startswith("page_") for r in pages[1:])


def test_existing_asks_in_chunks_of_100_ids(
    anthropic_backend: AnthropicFilesBackend, fake_anthropic: FakeAnthropic
) -> None:
    live = [
        fake_anthropic.put_file(filename="d.txt", data=b"x", mime_type="text/plain").id
        for _ in range(130)
    ]
    gone = [f"file_gone{i:019d}" for i in range(20)]

    assert anthropic_backend.existing(live + gone) == set(live)
    calls = fake_anthropic.requests_to("GET", "/v1/files")
    assert [len(r.query["ids[]"]) for r in calls] == [100, 50]
    assert all("limit" not in r.query and "page" not in r.query for r in calls)


def test_delete_of_a_file_deleted_out_of_band_returns_false(
    anthropic_backend: AnthropicFilesBackend, fake_anthropic: FakeAnthropic
) -> None:
    stored = upload(anthropic_backend)
    fake_anthropic.delete_out_of_band(stored.id)

    with pytest.raises(RemoteFileMissing) as caught:
        anthropic_backend.retrieve(stored.id)
    assert caught.value.file_id == stored.id
    assert anthropic_backend.existing([stored.id]) == set()
    assert anthropic_backend.delete(stored.id) is False


# --------------------------------------------------------------------------------------------
# Anthropic backend: failures and retries
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 529, 500])
def test_transient_errors_are_retried_by_the_sdk(
    anthropic_backend: AnthropicFilesBackend, fake_anthropic: FakeAnthropic, status: int
) -> None:
    fake_anthropic.fail_next(2, status, method="POST")

    stored = upload(anthropic_backend)

    attempts = fake_anthropic.requests_to("POST", "/v1/files")
    assert [r.retry_count for r in attempts] == [0, 1, 2]
    assert list(fake_anthropic.files) == [stored.id]


def test_persistent_overload_raises_upstream_unavailable_with_retry_after(
    anthropic_backend: AnthropicFilesBackend, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.fail_next(10, 529, retry_after=7)

    with pytest.raises(UpstreamUnavailable) as caught:
        upload(anthropic_backend)

    assert caught.value.retry_after == 7
    assert isinstance(caught.value.__cause__, anthropic.OverloadedError)
    assert len(fake_anthropic.requests_to("POST", "/v1/files")) == 4  # 1 + max_retries
    assert fake_anthropic.files == {}


def test_a_rejected_key_raises_auth_error_without_the_key(fake_anthropic: FakeAnthropic) -> None:
    secret = "test-only-wrong-key-c2VjcmV0"
    with make_client(api_key=secret, base_url=fake_anthropic.base_url) as client:
        backend = AnthropicFilesBackend(client)
        with pytest.raises(UpstreamAuthError) as caught:
            backend.check()

    message = str(caught.value)
    assert "API key is missing or misconfigured" in message
    assert secret not in message and "Bearer" not in message
    assert len(fake_anthropic.requests) == 1  # 401 is not retried


def test_permission_denied_raises_auth_error(
    anthropic_backend: AnthropicFilesBackend, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.fail_next(1, 403)
    with pytest.raises(UpstreamAuthError):
        upload(anthropic_backend)


def test_other_client_errors_carry_the_api_message_and_request_id(
    anthropic_backend: AnthropicFilesBackend, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.fail_next(1, 400, message="file: filename contains a forbidden character")

    with pytest.raises(UpstreamError) as caught:
        upload(anthropic_backend)

    assert type(caught.value) is UpstreamError
    (sent,) = fake_anthropic.requests
    assert "forbidden character" in str(caught.value)
    assert sent.request_id in str(caught.value)


def test_a_file_over_the_size_limit_raises_file_too_large(
    anthropic_backend: AnthropicFilesBackend, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.max_file_bytes = 4
    with pytest.raises(FileTooLarge):
        upload(anthropic_backend)


def test_a_slow_api_raises_upstream_timeout(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.upload_delay = 1.0
    with (
        make_client(
            api_key=fake_anthropic.api_key,
            base_url=fake_anthropic.base_url,
            timeout=0.2,
            max_retries=0,
        ) as client,
        pytest.raises(UpstreamTimeout),
    ):
        upload(AnthropicFilesBackend(client))


def test_an_unreachable_api_raises_upstream_unavailable() -> None:
    with socket.socket() as sock:  # a port nothing listens on once this block ends
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        make_client(
            api_key="sk-test", base_url=f"http://127.0.0.1:{port}", max_retries=0
        ) as client,
        pytest.raises(UpstreamUnavailable),
    ):
        AnthropicFilesBackend(client).check()


def test_concurrent_uploads_overlap_on_a_slow_api(
    anthropic_backend: AnthropicFilesBackend, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.upload_delay = 0.1
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: upload(anthropic_backend), range(16)))
    assert time.monotonic() - started < 1.0  # 16 x 100 ms one after another would be 1.6 s
    assert len(fake_anthropic.files) == 16


def test_make_client_refuses_an_empty_key() -> None:
    with pytest.raises(ConfigurationError):
        make_client(api_key="")


# --------------------------------------------------------------------------------------------
# The fake itself
# --------------------------------------------------------------------------------------------


@pytest.fixture
def raw(fake_anthropic: FakeAnthropic) -> Iterator[httpx.Client]:
    """Plain HTTP to the fake, with valid credentials and version."""
    headers = {"x-api-key": fake_anthropic.api_key, "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=fake_anthropic.base_url, headers=headers) as client:
        yield client


def assert_api_error(response: httpx.Response, status: int, error_type: str) -> dict[str, object]:
    body = response.json()
    assert response.status_code == status
    assert body["type"] == "error" and body["error"]["type"] == error_type
    assert body["request_id"] == response.headers["request-id"]
    assert response.headers["request-id"].startswith("req_")
    return dict(body["error"])


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "wrong"}, {"authorization": "Bearer wrong"}, {"authorization": "Basic x"}],
    ids=["none", "wrong-x-api-key", "wrong-bearer", "not-bearer"],
)
def test_fake_refuses_missing_or_wrong_keys(
    fake_anthropic: FakeAnthropic, headers: dict[str, str]
) -> None:
    response = httpx.get(
        f"{fake_anthropic.base_url}/v1/files",
        headers={"anthropic-version": "2026-10-21", **headers},
    )
    assert_api_error(response, 401, "authentication_error")


def test_fake_accepts_x_api_key_and_bearer(fake_anthropic: FakeAnthropic) -> None:
    for auth in (
        {"x-api-key": fake_anthropic.api_key},
        {"authorization": f"Bearer {fake_anthropic.api_key}"},
    ):
        response = httpx.get(
            f"{fake_anthropic.base_url}/v1/files",
            headers={"anthropic-version": "2026-10-21", **auth},
        )
        assert response.status_code == 200
        assert response.json() == {"data": [], "next_page": None}


@pytest.mark.parametrize("version", ["2024-01-01", ""])
def test_fake_refuses_an_unknown_anthropic_version(raw: httpx.Client, version: str) -> None:
    assert_api_error(
        raw.get("/v1/files", headers={"anthropic-version": version}), 400, "invalid_request_error"
    )


def test_fake_answers_the_beta_header_with_the_beta_list_shape(
    raw: httpx.Client, fake_anthropic: FakeAnthropic
) -> None:
    ids = [
        fake_anthropic.put_file(filename="a.txt", data=b"a", mime_type="text/plain").id
        for _ in range(5)
    ]
    beta = {"anthropic-beta": "other-beta-2025-01-01, files-api-2025-04-14"}

    first = raw.get("/v1/files", params={"limit": 3}, headers=beta).json()
    assert set(first) == {"data", "has_more", "first_id", "last_id"}
    assert first["has_more"] is True and first["first_id"] == ids[-1]
    second = raw.get(
        "/v1/files", params={"limit": 3, "after_id": first["last_id"]}, headers=beta
    ).json()
    assert second["has_more"] is False
    assert [f["id"] for f in first["data"] + second["data"]] == ids[::-1]  # newest first
    back = raw.get(
        "/v1/files", params={"limit": 3, "before_id": second["first_id"]}, headers=beta
    ).json()
    assert [f["id"] for f in back["data"]] == [f["id"] for f in first["data"]]

    assert_api_error(
        raw.get("/v1/files", params={"after_id": ids[0]}), 400, "invalid_request_error"
    )


@pytest.mark.parametrize(
    "params",
    [
        [("ids[]", "file_a"), ("page", "page_x")],
        [("ids[]", "file_a"), ("limit", "5")],
        [("ids[]", f"file_{i}") for i in range(101)],
        [("limit", "0")],
        [("limit", "1001")],
        [("page", "not-a-cursor")],
    ],
    ids=["ids+page", "ids+limit", "101-ids", "limit-0", "limit-1001", "bad-page"],
)
def test_fake_refuses_bad_list_parameters(raw: httpx.Client, params: list[tuple[str, str]]) -> None:
    assert_api_error(raw.get("/v1/files", params=tuple(params)), 400, "invalid_request_error")


def test_fake_ids_filter_omits_unknown_ids(
    raw: httpx.Client, fake_anthropic: FakeAnthropic
) -> None:
    known = fake_anthropic.put_file(filename="a.txt", data=b"a", mime_type="text/plain").id
    body = raw.get("/v1/files", params=[("ids[]", known), ("ids[]", "file_unknown")]).json()
    assert [f["id"] for f in body["data"]] == [known] and body["next_page"] is None


def test_fake_refuses_to_download_uploaded_files(
    raw: httpx.Client, fake_anthropic: FakeAnthropic
) -> None:
    uploaded = fake_anthropic.put_file(filename="a.pdf", data=b"%PDF", mime_type="application/pdf")
    made = fake_anthropic.put_file(
        filename="out.csv", data=b"a,b", mime_type="text/csv", downloadable=True
    )

    error = assert_api_error(
        raw.get(f"/v1/files/{uploaded.id}/content"), 400, "invalid_request_error"
    )
    assert error["details"] == {"error_code": "file_not_downloadable"}
    assert raw.get(f"/v1/files/{made.id}/content").content == b"a,b"
    assert_api_error(raw.get("/v1/files/file_nope/content"), 404, "not_found_error")
    expired = fake_anthropic.put_file(
        filename="old.csv",
        data=b"a",
        mime_type="text/csv",
        downloadable=True,
        expires_in=timedelta(seconds=-1),
    )
    error = assert_api_error(raw.get(f"/v1/files/{expired.id}/content"), 404, "not_found_error")
    assert error["details"] == {"error_code": "file_expired"}


def test_fake_keeps_the_last_path_component_and_ignores_beta_query(raw: httpx.Client) -> None:
    response = raw.post(
        "/v1/files?beta=true", files={"file": ("dir/notes.txt", b"hi", "text/plain")}
    )
    assert response.json()["filename"] == "notes.txt"


def test_fake_stores_a_part_without_content_type_as_octet_stream(raw: httpx.Client) -> None:
    # httpx would guess a type from the filename, so the body is written by hand.
    body = (
        b"--b\r\n"
        b'Content-Disposition: form-data; name="file"; filename="notes"\r\n\r\n'
        b"hi\r\n--b--\r\n"
    )
    response = raw.post(
        "/v1/files", content=body, headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert response.json()["mime_type"] == "application/octet-stream"


def test_fake_upload_requires_the_file_part(raw: httpx.Client) -> None:
    response = raw.post("/v1/files", data={"expires_in_seconds": "3600"})
    assert_api_error(response, 400, "invalid_request_error")


@pytest.mark.parametrize("seconds", ["3599", "7776001", "soon"])
def test_fake_refuses_expiry_out_of_range(raw: httpx.Client, seconds: str) -> None:
    response = raw.post(
        "/v1/files",
        files={"file": ("a.txt", b"a", "text/plain")},
        data={"expires_in_seconds": seconds},
    )
    assert_api_error(response, 400, "invalid_request_error")


def test_fake_sets_expires_at_from_expires_in_seconds(raw: httpx.Client) -> None:
    body = raw.post(
        "/v1/files",
        files={"file": ("a.txt", b"a", "text/plain")},
        data={"expires_in_seconds": "3600"},
    ).json()
    created, expires = (datetime.fromisoformat(body[k]) for k in ("created_at", "expires_at"))
    assert expires - created == timedelta(hours=1)


def test_fake_delete_then_metadata_is_404(raw: httpx.Client, fake_anthropic: FakeAnthropic) -> None:
    stored = fake_anthropic.put_file(filename="a.txt", data=b"a", mime_type="text/plain")
    assert raw.delete(f"/v1/files/{stored.id}").json() == {"id": stored.id, "type": "file_deleted"}
    assert_api_error(raw.get(f"/v1/files/{stored.id}"), 404, "not_found_error")
    assert_api_error(raw.delete(f"/v1/files/{stored.id}"), 404, "not_found_error")
    assert_api_error(raw.get("/v1/nowhere"), 404, "not_found_error")


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (429, "rate_limit_error"),
        (529, "overloaded_error"),
        (500, "api_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
    ],
)
def test_fake_injected_failures_use_the_api_error_types(
    raw: httpx.Client, fake_anthropic: FakeAnthropic, status: int, error_type: str
) -> None:
    fake_anthropic.fail_next(1, status, retry_after=3)
    failed = raw.get("/v1/files")
    assert_api_error(failed, status, error_type)
    assert failed.headers["retry-after"] == "3"
    assert ("retry-after-ms" in failed.headers) == (status >= 429)
    assert raw.get("/v1/files").status_code == 200  # only the next one fails
