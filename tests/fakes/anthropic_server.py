"""A fake Anthropic API: a real HTTP server the real SDK talks to through ``base_url``.

It speaks the wire contract in ``../shared/anthropic-api.md`` for the Files API (GA shapes, and
the beta list shape when ``anthropic-beta: files-api-2025-04-14`` is sent), checks what the real
API checks at the edge (credentials, ``anthropic-version``), records every request, and can be
told to fail so the SDK's real retry and error paths run.

Layout, so Messages can be added in a sibling module without touching this one:

* wire helpers: ``ApiError``, ``error_response``, request ids, the per-request pipeline
  (``api_route``: record, injected failures, auth, version, then the handler);
* ``FakeAnthropic``: the thread-safe state and the test controls;
* ``files_routes(fake)``: the Files endpoints, one route group (the Messages endpoints are the
  other default group, in ``messages.py``; their controls are ``fake.messages``);
* ``create_app(fake, route_groups=...)``: the module-level app factory;
* ``FakeAnthropicServer``: uvicorn on 127.0.0.1 and a free port, in a background thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import mimetypes
import secrets
import socket
import string
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from tests.fakes.messages import FakeMessages

SUPPORTED_VERSIONS = frozenset({"2023-06-01", "2026-10-21"})
FILES_BETA = "files-api-2025-04-14"
DEFAULT_API_KEY = "sk-ant-fake-test-key-0000"

#: ``error.type`` per HTTP status, from the errors page.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_ALNUM = string.ascii_letters + string.digits


def _random_id(prefix: str) -> str:
    """Ids shaped like the API's: ``file_011C`` + 20 alphanumerics (24 after the prefix)."""
    return prefix + "011C" + "".join(secrets.choice(_ALNUM) for _ in range(20))


def error_type_for(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def is_retryable_status(status: int) -> bool:
    """What the SDK retries on its own (``_base_client._should_retry``)."""
    return status in (408, 409, 429) or status >= 500


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------------------------
# Wire helpers
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """Raised by handlers; rendered as the API's error body by the request pipeline."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        error_code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or error_type_for(status)
        self.error_code = error_code
        self.headers = dict(headers or {})


def error_response(err: ApiError, request_id: str) -> JSONResponse:
    """``{"type": "error", "error": {...}, "request_id": ...}`` with a ``request-id`` header."""
    error: dict[str, Any] = {"type": err.error_type, "message": err.message}
    if err.error_code:
        error["details"] = {"error_code": err.error_code}
    body = {"type": "error", "error": error, "request_id": request_id}
    return JSONResponse(
        body, status_code=err.status, headers={**err.headers, "request-id": request_id}
    )


@dataclass(frozen=True)
class RecordedPart:
    """One multipart part as received (the bytes are kept only as a size)."""

    name: str
    filename: str | None
    content_type: str | None
    size: int


@dataclass(frozen=True)
class RecordedRequest:
    """What the fake saw: headers are lower-cased, repeated headers joined with ``", "``."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: Any = None
    parts: tuple[RecordedPart, ...] | None = None
    request_id: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def retry_count(self) -> int | None:
        """``x-stainless-retry-count`` as an int (the SDK's attempt number, from 0)."""
        value = self.header("x-stainless-retry-count")
        return int(value) if value is not None else None

    def part(self, name: str) -> RecordedPart | None:
        return next((p for p in self.parts or () if p.name == name), None)


@dataclass(frozen=True)
class FormPart:
    """A multipart part with its bytes, handed to handlers."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class Call:
    """Per-request context handed to a handler."""

    request_id: str
    betas: frozenset[str]
    recorded: RecordedRequest
    generation: int
    form: tuple[FormPart, ...] = ()


Handler = Callable[[Request, Call], Awaitable[Response]]


def _joined_headers(request: Request) -> dict[str, str]:
    joined: dict[str, str] = {}
    for key, value in request.headers.items():
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


def _betas(request: Request) -> frozenset[str]:
    values = request.headers.getlist("anthropic-beta")
    return frozenset(b.strip() for v in values for b in v.split(",") if b.strip())


async def _read_form(request: Request) -> tuple[FormPart, ...]:
    parts: list[FormPart] = []
    async with request.form(max_part_size=16 * 1024 * 1024) as form:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                parts.append(FormPart(name, value.filename, value.content_type, data))
            else:  # a part without a filename arrives as a text field (bytes re-encoded)
                parts.append(FormPart(name, None, None, value.encode("utf-8")))
    return tuple(parts)


async def _parse_body(request: Request) -> tuple[Any, tuple[FormPart, ...] | None]:
    """``(json, form parts)`` of the body; a malformed body is a 400 like the real API's."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        try:
            return None, await _read_form(request)
        except HTTPException as exc:  # Starlette's multipart parser refused the body
            raise ApiError(400, f"Malformed multipart body: {exc.detail}") from exc
    body = await request.body()
    if body and "json" in content_type:
        try:
            return json.loads(body), None
        except ValueError as exc:
            raise ApiError(400, "The request body is not valid JSON.") from exc
    return None, None


def _presented_key(request: Request) -> str | None:
    if key := request.headers.get("x-api-key"):
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _check_auth(fake: FakeAnthropic, request: Request) -> None:
    key = _presented_key(request)
    if key is None:
        raise ApiError(401, "x-api-key header is required")
    if not secrets.compare_digest(key.encode(), fake.api_key.encode()):
        raise ApiError(401, "invalid x-api-key")


def _check_version(request: Request) -> None:
    version = request.headers.get("anthropic-version")
    if version is None:
        raise ApiError(400, "anthropic-version: header is required")
    if version not in SUPPORTED_VERSIONS:
        raise ApiError(400, f"anthropic-version: {version!r} is not a valid version")


def api_route(
    fake: FakeAnthropic,
    path: str,
    handler: Handler,
    methods: list[str],
    *,
    max_body_bytes: int | None = None,
) -> Route:
    """A route whose requests go through the pipeline every real endpoint shares.

    ``max_body_bytes``: larger bodies get 413 ``request_too_large`` before anything else is
    checked, as the real 413 comes from the CDN in front of the API.
    """

    async def endpoint(request: Request) -> Response:
        request_id = _random_id("req_")
        try:
            response = await _pipeline(fake, request, request_id, handler, max_body_bytes)
        except ApiError as err:
            response = error_response(err, request_id)
        except ClientDisconnect:
            # The client died mid-request (a test killed it): its event, not a bug of ours.
            fake._count_disconnect()
            return Response(status_code=499)
        except Exception as exc:  # a bug in the fake: make it loud, and not retried
            fake._record_internal_error(exc)
            bug = ApiError(500, f"fake server bug: {exc!r}", headers={"x-should-retry": "false"})
            response = error_response(bug, request_id)
        response.headers["request-id"] = request_id
        return response

    return Route(path, endpoint, methods=methods)


def _recorded(
    request: Request, request_id: str, body_json: Any, form: tuple[FormPart, ...] | None
) -> RecordedRequest:
    parts = None
    if form is not None:
        parts = tuple(RecordedPart(p.name, p.filename, p.content_type, len(p.data)) for p in form)
    return RecordedRequest(
        method=request.method,
        path=request.url.path,
        query={key: request.query_params.getlist(key) for key in request.query_params},
        headers=_joined_headers(request),
        json=body_json,
        parts=parts,
        request_id=request_id,
    )


async def _pipeline(
    fake: FakeAnthropic,
    request: Request,
    request_id: str,
    handler: Handler,
    max_body_bytes: int | None = None,
) -> Response:
    generation = fake.generation
    # The whole body is read first (Starlette caches it): answering 413 while the client is
    # still sending would make it see a broken connection instead of the answer.
    if max_body_bytes is not None and len(await request.body()) > max_body_bytes:
        fake._record(_recorded(request, request_id, None, None))
        raise ApiError(
            413,
            f"Request exceeds the maximum size of {max_body_bytes} bytes",
            error_type="request_too_large",
        )
    body_json: Any = None
    form: tuple[FormPart, ...] | None = None
    refused: ApiError | None = None
    try:
        body_json, form = await _parse_body(request)
    except ApiError as err:
        refused = err
    recorded = _recorded(request, request_id, body_json, form)
    fake._record(recorded)  # even a request that is refused below
    fake._raise_injected_failure(request.method, request.url.path)
    _check_auth(fake, request)
    _check_version(request)
    if refused is not None:
        raise refused
    call = Call(request_id, _betas(request), recorded, generation, form or ())
    return await handler(request, call)


# --------------------------------------------------------------------------------------------
# State and test controls
# --------------------------------------------------------------------------------------------


@dataclass
class StoredFile:
    id: str
    filename: str
    mime_type: str
    data: bytes
    created_at: datetime
    seq: int
    expires_at: datetime | None = None
    downloadable: bool = False

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= datetime.now(UTC)

    def to_json(self, *, beta: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "type": "file",
            "filename": self.filename,
            "mime_type": self.mime_type,
            "size_bytes": self.size_bytes,
            "created_at": rfc3339(self.created_at),
            "downloadable": self.downloadable,
        }
        if not beta:  # expires_at arrived with GA
            body["expires_at"] = rfc3339(self.expires_at) if self.expires_at else None
        return body


@dataclass
class _Failure:
    remaining: int
    status: int
    error_type: str
    message: str
    headers: dict[str, str]
    path_prefix: str
    method: str | None
    error_code: str | None


class Extension(Protocol):
    """State a sibling route group keeps on the fake (e.g. Messages); reset with it."""

    def reset(self) -> None: ...


@dataclass
class FakeAnthropic:
    """State and controls of the fake API. Every method is safe to call from any thread."""

    api_key: str = DEFAULT_API_KEY
    #: Seconds to wait (asynchronously, so concurrent uploads overlap) before answering an upload.
    upload_delay: float = 0.0
    #: Per-file upload limit; larger uploads get 413 ``request_too_large``.
    max_file_bytes: int = 500 * 1024 * 1024
    base_url: str = ""
    files: dict[str, StoredFile] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    internal_errors: list[BaseException] = field(default_factory=list)
    generation: int = 0
    _failures: list[_Failure] = field(default_factory=list)
    #: Clients that hung up mid-request, or mid-way through a streamed reply.
    disconnects: int = 0
    #: Per-route-group state, keyed by group name (``"messages"``: ``FakeMessages``).
    extensions: dict[str, Extension] = field(default_factory=dict)
    _seq: int = 0
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def uploads_stored(self) -> int:
        """How many uploads were ever stored (deleted ones included)."""
        with self._lock:
            return self._seq

    # ---- test controls ------------------------------------------------------------------

    def reset(self) -> None:
        """Forget files, requests, injected failures and delays (the api key stays)."""
        with self._lock:
            self.generation += 1
            self.files.clear()
            self.requests.clear()
            self.internal_errors.clear()
            self._failures.clear()
            self.disconnects = 0
            self.upload_delay = 0.0
            self.max_file_bytes = 500 * 1024 * 1024
            for extension in self.extensions.values():
                extension.reset()

    @property
    def messages(self) -> FakeMessages:
        """The Messages endpoints' test controls (scripted replies, latency, stream errors)."""
        extension = self.extensions.get("messages")
        if extension is None:
            raise RuntimeError("this fake was created without the Messages route group")
        return extension  # type: ignore[return-value]

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        retry_after: float | None = None,
        retry_after_ms: float | None = 10.0,
        error_type: str | None = None,
        message: str | None = None,
        error_code: str | None = None,
        path_prefix: str = "/v1/",
        method: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` and an API error body.

        Retryable answers (408, 409, 429, 5xx) carry ``retry-after-ms`` (10 ms by default, so
        the SDK's retries are quick; ``None`` leaves the SDK to its 0.5 s·2^n backoff) and, when
        given, ``retry-after`` in seconds. Rules are consumed in the order they were added.
        """
        extra = dict(headers or {})
        if retry_after is not None:
            extra["retry-after"] = f"{retry_after:g}"
        if retry_after_ms is not None and is_retryable_status(status):
            extra["retry-after-ms"] = f"{retry_after_ms:g}"
        failure = _Failure(
            remaining=count,
            status=status,
            error_type=error_type or error_type_for(status),
            message=message or f"injected {status} for a test",
            headers=extra,
            path_prefix=path_prefix,
            method=method.upper() if method else None,
            error_code=error_code,
        )
        with self._lock:
            self._failures.append(failure)

    def delete_out_of_band(self, file_id: str) -> StoredFile:
        """Delete a file as if someone else had (another service, the console)."""
        with self._lock:
            return self.files.pop(file_id)

    def put_file(
        self,
        *,
        filename: str,
        data: bytes,
        mime_type: str,
        downloadable: bool = False,
        expires_in: timedelta | None = None,
    ) -> StoredFile:
        """Store a file directly, e.g. a downloadable one as the code-execution tool makes."""
        return self._store(filename, data, mime_type, expires_in, downloadable=downloadable)

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method.upper() and r.path == path]

    # ---- used by the endpoints ------------------------------------------------------------

    def _record(self, recorded: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(recorded)

    def _count_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1

    def _record_internal_error(self, exc: BaseException) -> None:
        with self._lock:
            self.internal_errors.append(exc)

    def _raise_injected_failure(self, method: str, path: str) -> None:
        with self._lock:
            for failure in self._failures:
                if path.startswith(failure.path_prefix) and failure.method in (None, method):
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self._failures.remove(failure)
                    break
            else:
                return
        raise ApiError(
            failure.status,
            failure.message,
            error_type=failure.error_type,
            error_code=failure.error_code,
            headers=failure.headers,
        )

    def _store(
        self,
        filename: str,
        data: bytes,
        mime_type: str,
        expires_in: timedelta | None,
        *,
        downloadable: bool = False,
        generation: int | None = None,
    ) -> StoredFile:
        now = datetime.now(UTC)
        with self._lock:
            self._seq += 1
            stored = StoredFile(
                id=_random_id("file_"),
                filename=filename,
                mime_type=mime_type,
                data=data,
                created_at=now,
                seq=self._seq,
                expires_at=now + expires_in if expires_in is not None else None,
                downloadable=downloadable,
            )
            # An upload that outlived a reset (a client that timed out) must not leak into the
            # next test.
            if generation is None or generation == self.generation:
                self.files[stored.id] = stored
            return stored

    def _get(self, file_id: str) -> StoredFile:
        with self._lock:
            stored = self.files.get(file_id)
        if stored is None:
            raise ApiError(404, f"File not found: {file_id}")
        return stored

    def _newest_first(self) -> list[StoredFile]:
        with self._lock:
            return sorted(self.files.values(), key=lambda f: f.seq, reverse=True)


# --------------------------------------------------------------------------------------------
# Files endpoints
# --------------------------------------------------------------------------------------------

MIN_EXPIRES_IN = 3600
MAX_EXPIRES_IN = 7_776_000
MAX_IDS = 100


def _clean_filename(raw: str | None, mime_type: str) -> str:
    """Only the last path component is kept; an empty name becomes ``unnamed`` + extension."""
    base = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    if not base:
        base = "unnamed" + (mimetypes.guess_extension(mime_type.split(";")[0].strip()) or "")
    if len(base) > 500 or any(ord(c) < 32 for c in base):
        raise ApiError(400, "file: filename must be 1-500 characters without control characters")
    return base


def _expires_in(form: Sequence[FormPart]) -> timedelta | None:
    raw = next((p.data for p in form if p.name == "expires_in_seconds"), None)
    if raw is None:
        return None
    try:
        seconds = int(raw.decode("utf-8"))
    except ValueError as exc:
        raise ApiError(400, "expires_in_seconds: Input should be a valid integer") from exc
    if not MIN_EXPIRES_IN <= seconds <= MAX_EXPIRES_IN:
        raise ApiError(
            400,
            f"expires_in_seconds: must be between {MIN_EXPIRES_IN} and {MAX_EXPIRES_IN}",
        )
    return timedelta(seconds=seconds)


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return 20
    try:
        limit = int(raw)
    except ValueError as exc:
        raise ApiError(400, "limit: Input should be a valid integer") from exc
    if not 1 <= limit <= 1000:
        raise ApiError(400, "limit: Input should be between 1 and 1000")
    return limit


def _encode_page(seq: int) -> str:
    return "page_" + base64.urlsafe_b64encode(json.dumps({"before_seq": seq}).encode()).decode()


def _decode_page(cursor: str) -> int:
    try:
        if not cursor.startswith("page_"):
            raise ValueError(cursor)
        return int(json.loads(base64.urlsafe_b64decode(cursor[5:]))["before_seq"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(400, "page: invalid page cursor") from exc


def _ga_list(fake: FakeAnthropic, request: Request) -> dict[str, Any]:
    params = request.query_params
    if "after_id" in params or "before_id" in params:
        raise ApiError(400, f"after_id/before_id need the {FILES_BETA} beta; use page")
    ids = params.getlist("ids[]") + params.getlist("ids")
    if ids:
        if "page" in params or "limit" in params:
            raise ApiError(400, "ids: cannot be combined with page or limit")
        wanted = set(ids)
        if len(wanted) > MAX_IDS:
            raise ApiError(400, f"ids: at most {MAX_IDS} ids per request")
        files = [f for f in fake._newest_first() if f.id in wanted]
        return {"data": [f.to_json() for f in files], "next_page": None}
    limit = _limit(request)
    files = fake._newest_first()
    if (cursor := params.get("page")) is not None:
        before_seq = _decode_page(cursor)
        files = [f for f in files if f.seq < before_seq]
    page, rest = files[:limit], files[limit:]
    next_page = _encode_page(page[-1].seq) if page and rest else None
    return {"data": [f.to_json() for f in page], "next_page": next_page}


def _index_of(files: list[StoredFile], file_id: str, param: str) -> int:
    for index, stored in enumerate(files):
        if stored.id == file_id:
            return index
    raise ApiError(400, f"{param}: no file with id {file_id}")


def _beta_list(fake: FakeAnthropic, request: Request) -> dict[str, Any]:
    params = request.query_params
    if "page" in params or "ids[]" in params or "ids" in params:
        raise ApiError(400, "page and ids are not available with the files beta header")
    if "after_id" in params and "before_id" in params:
        raise ApiError(400, "after_id and before_id cannot be combined")
    limit, files = _limit(request), fake._newest_first()
    if (before_id := params.get("before_id")) is not None:
        earlier = files[: _index_of(files, before_id, "before_id")]
        page, has_more = earlier[-limit:], len(earlier) > limit
    else:
        after_id = params.get("after_id")
        start = _index_of(files, after_id, "after_id") + 1 if after_id else 0
        page, has_more = files[start : start + limit], len(files) > start + limit
    return {
        "data": [f.to_json(beta=True) for f in page],
        "has_more": has_more,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
    }


def files_routes(fake: FakeAnthropic) -> list[BaseRoute]:
    """``/v1/files`` endpoints: upload, list, metadata, download, delete."""

    async def upload(request: Request, call: Call) -> Response:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(400, "Content-Type must be multipart/form-data")
        parts = [p for p in call.form if p.name == "file"]
        if not parts:
            raise ApiError(400, "file: Field required")
        part = parts[0]
        mime_type = part.content_type or "application/octet-stream"
        filename = _clean_filename(part.filename, mime_type)
        expires_in = _expires_in(call.form)
        if len(part.data) > fake.max_file_bytes:
            raise ApiError(413, f"File exceeds the maximum size of {fake.max_file_bytes} bytes")
        if fake.upload_delay > 0:
            await asyncio.sleep(fake.upload_delay)
        stored = fake._store(filename, part.data, mime_type, expires_in, generation=call.generation)
        return JSONResponse(stored.to_json(beta=FILES_BETA in call.betas))

    async def list_files(request: Request, call: Call) -> Response:
        if FILES_BETA in call.betas:
            return JSONResponse(_beta_list(fake, request))
        return JSONResponse(_ga_list(fake, request))

    async def metadata(request: Request, call: Call) -> Response:
        stored = fake._get(request.path_params["file_id"])
        return JSONResponse(stored.to_json(beta=FILES_BETA in call.betas))

    async def download(request: Request, call: Call) -> Response:
        stored = fake._get(request.path_params["file_id"])
        if stored.expired():
            raise ApiError(404, f"File has expired: {stored.id}", error_code="file_expired")
        if not stored.downloadable:
            raise ApiError(
                400,
                f"File {stored.id} cannot be downloaded: only files created by skills or the "
                "code execution tool can be",
                error_code="file_not_downloadable",
            )
        return Response(stored.data, media_type=stored.mime_type)

    async def delete(request: Request, call: Call) -> Response:
        file_id = request.path_params["file_id"]
        with fake._lock:
            if fake.files.pop(file_id, None) is None:
                raise ApiError(404, f"File not found: {file_id}")
        return JSONResponse({"id": file_id, "type": "file_deleted"})

    return [
        api_route(fake, "/v1/files", upload, ["POST"]),
        api_route(fake, "/v1/files", list_files, ["GET"]),
        api_route(fake, "/v1/files/{file_id}", metadata, ["GET"]),
        api_route(fake, "/v1/files/{file_id}", delete, ["DELETE"]),
        api_route(fake, "/v1/files/{file_id}/content", download, ["GET"]),
    ]


# --------------------------------------------------------------------------------------------
# App factory and server
# --------------------------------------------------------------------------------------------

RouteGroup = Callable[[FakeAnthropic], list[BaseRoute]]


def _messages_routes(fake: FakeAnthropic) -> list[BaseRoute]:
    """``tests.fakes.messages.messages_routes``, imported late: that module builds on this one."""
    from tests.fakes.messages import messages_routes

    return messages_routes(fake)


DEFAULT_ROUTE_GROUPS: tuple[RouteGroup, ...] = (files_routes, _messages_routes)


async def _unrouted(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in the API's error shape too."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    request_id = _random_id("req_")
    message = "Not found" if status == 404 else f"{request.method} is not allowed here"
    return error_response(ApiError(status, message), request_id)


def create_app(
    fake: FakeAnthropic, *, route_groups: Sequence[RouteGroup] = DEFAULT_ROUTE_GROUPS
) -> Starlette:
    """The fake API as an ASGI app; each route group adds one family of endpoints."""
    routes = [route for group in route_groups for route in group(fake)]
    app = Starlette(routes=routes, exception_handlers={404: _unrouted, 405: _unrouted})
    app.state.fake = fake
    return app


class FakeAnthropicServer:
    """Serve ``create_app(fake)`` with uvicorn on 127.0.0.1 and a free port, in a thread."""

    def __init__(
        self, fake: FakeAnthropic, *, route_groups: Sequence[RouteGroup] = DEFAULT_ROUTE_GROUPS
    ) -> None:
        self.fake = fake
        config = uvicorn.Config(
            create_app(fake, route_groups=route_groups),
            lifespan="off",
            http="h11",
            ws="none",
            loop="asyncio",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self, *, timeout: float = 10.0) -> None:
        # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets, and without
        # it every response waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-anthropic", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the fake Anthropic server did not start")
            time.sleep(0.01)
        self.fake.base_url = f"http://127.0.0.1:{port}"

    def stop(self, *, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("the fake Anthropic server did not stop")
        self._thread = None

    def __enter__(self) -> FakeAnthropic:
        self.start()
        return self.fake

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
