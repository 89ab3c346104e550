"""Anthropic's Files API as a Files backend, through the pinned SDK.

GA shapes (API version ``2026-10-21``). SDK errors are translated into the pool's
``UpstreamError`` family in one place (``_translate_sdk_error``); the SDK has already retried what
is retryable by then.
"""

from __future__ import annotations

import contextlib
import email.utils
import time
from collections.abc import Iterator, Mapping, Sequence

import anthropic
from anthropic.types import FileMetadata

from indexing.errors import (
    FileTooLarge,
    RemoteFileMissing,
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from indexing.files import IDS_PER_LIST_CALL, RemoteFile, as_utc


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds the API asked us to wait: ``retry-after`` (seconds or HTTP date), else ``-ms``."""
    value = headers.get("retry-after")
    if value:
        try:
            seconds = float(value)
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            seconds = email.utils.mktime_tz(parsed) - time.time() if parsed else -1.0
        return seconds if seconds >= 0 else None
    millis = headers.get("retry-after-ms")
    if millis:
        with contextlib.suppress(ValueError):
            return max(float(millis) / 1000, 0.0)
    return None


def _describe(exc: anthropic.APIStatusError) -> str:
    """``HTTP 400 invalid_request_error, request id req_...`` for messages (no headers, no key)."""
    parts = [f"HTTP {exc.status_code}"]
    if exc.type:
        parts[0] += f" {exc.type}"
    if exc.request_id:
        parts.append(f"request id {exc.request_id}")
    return ", ".join(parts)


def _translate_status_error(
    exc: anthropic.APIStatusError, *, file_id: str | None
) -> UpstreamError | FileTooLarge:
    status, detail = exc.status_code, _describe(exc)
    if status in (401, 403):
        return UpstreamAuthError(
            "Anthropic refused the server's credentials: the server's Anthropic API key is "
            f"missing or misconfigured (set ANTHROPIC_API_KEY to a valid key; {detail})."
        )
    if status == 404 and file_id is not None:
        return RemoteFileMissing(
            f"File {file_id!r} no longer exists in Anthropic's Files API ({detail}).",
            file_id=file_id,
        )
    if status == 413:
        return FileTooLarge(f"Anthropic's Files API refused the file as too large ({detail}).")
    if status in (408, 504):
        return UpstreamTimeout(f"Anthropic's Files API timed out ({detail}).")
    if status in (409, 429) or status >= 500:
        return UpstreamUnavailable(
            f"Anthropic's Files API is unavailable or rate limiting after retries ({detail}).",
            retry_after=retry_after_seconds(exc.response.headers),
        )
    message = exc.api_message or "no message"
    return UpstreamError(f"Anthropic's Files API rejected the request: {message} ({detail}).")


def _translate_sdk_error(
    exc: anthropic.AnthropicError, *, file_id: str | None = None
) -> UpstreamError | FileTooLarge:
    """Our exception for an SDK one. The caller raises it ``from exc``."""
    if isinstance(exc, anthropic.APITimeoutError):
        return UpstreamTimeout("Anthropic's Files API did not answer within the timeout.")
    if isinstance(exc, anthropic.APIConnectionError):
        return UpstreamUnavailable("Could not connect to Anthropic's Files API.")
    if isinstance(exc, anthropic.APIStatusError):
        return _translate_status_error(exc, file_id=file_id)
    return UpstreamError(f"Unexpected answer from Anthropic's Files API: {type(exc).__name__}.")


@contextlib.contextmanager
def _sdk_errors(*, file_id: str | None = None) -> Iterator[None]:
    """Turn SDK exceptions raised inside the block into the pool's."""
    try:
        yield
    except anthropic.AnthropicError as exc:
        raise _translate_sdk_error(exc, file_id=file_id) from exc


def _remote_file(meta: FileMetadata) -> RemoteFile:
    return RemoteFile(
        id=meta.id,
        filename=meta.filename,
        mime_type=meta.mime_type,
        size_bytes=meta.size_bytes,
        created_at=as_utc(meta.created_at),
        downloadable=bool(meta.downloadable),
    )


class AnthropicFilesBackend:
    """Anthropic's Files API (GA) through the SDK client from ``make_client``.

    ``list_page_size`` is the ``limit`` sent per list page (API default 20, maximum 1000).
    """

    name = "anthropic"

    def __init__(self, client: anthropic.Anthropic, *, list_page_size: int = 100) -> None:
        if not 1 <= list_page_size <= 1000:
            raise ValueError(f"list_page_size must be 1..1000, got {list_page_size}")
        self.client = client
        self.list_page_size = list_page_size

    def upload(self, *, filename: str, data: bytes, mime_type: str) -> RemoteFile:
        # Always the 3-tuple: without an explicit content type the part is stored as
        # application/octet-stream and later refused as a document.
        with _sdk_errors():
            meta = self.client.files.upload(file=(filename, data, mime_type))
        return _remote_file(meta)

    def retrieve(self, file_id: str) -> RemoteFile:
        with _sdk_errors(file_id=file_id):
            return _remote_file(self.client.files.retrieve_metadata(file_id))

    def delete(self, file_id: str) -> bool:
        try:
            with _sdk_errors(file_id=file_id):
                self.client.files.delete(file_id)
        except RemoteFileMissing:
            return False
        return True

    def list(self) -> Iterator[RemoteFile]:
        """Every file in the API's order (newest first), fetching pages as it goes."""
        with _sdk_errors():
            for meta in self.client.files.list(limit=self.list_page_size):
                yield _remote_file(meta)

    def existing(self, file_ids: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(i for i in file_ids if i))
        found: set[str] = set()
        for start in range(0, len(wanted), IDS_PER_LIST_CALL):
            chunk = wanted[start : start + IDS_PER_LIST_CALL]
            with _sdk_errors():
                page = self.client.files.list(ids=chunk)
            found.update(meta.id for meta in page.data)
        return found & set(wanted)

    def check(self) -> None:
        with _sdk_errors():
            self.client.files.list(limit=1)
