"""The pool's exception hierarchy.

Everything the indexing and service layers raise on purpose derives from ``PoolError``. The HTTP
layer maps these to status codes in one handler and the CLI maps them to exit codes; nothing
below those edges knows about either. Messages are written for the person who will read them:
they name the file, the limit or the setting involved, and never include document text or keys.
"""

from __future__ import annotations


class PoolError(Exception):
    """Base class for every error the pool raises deliberately."""

    #: Short machine-readable kind, used as ``error.type`` in HTTP responses.
    kind: str = "pool_error"


class InvalidInput(PoolError):
    """The caller gave something malformed (bad manifest row, bad option value)."""

    kind = "invalid_request"


class UnsupportedFormat(PoolError):
    """The file's type is not one the pool can extract text from."""

    kind = "unsupported_format"


class ContentMismatch(UnsupportedFormat):
    """The bytes are not what the upload declares (its extension or its Content-Type)."""

    kind = "content_mismatch"


class CorruptFile(PoolError):
    """The file claims a supported format but cannot be parsed."""

    kind = "corrupt_file"


class EncryptedFile(CorruptFile):
    """The file is encrypted, so its text cannot be read (or sent on) as it is."""

    kind = "encrypted_file"


class FileTooLarge(PoolError):
    """A size, page or decompression limit was exceeded."""

    kind = "file_too_large"


class EmptyDocument(PoolError):
    """The file has no bytes, or no text at all where text is required."""

    kind = "empty_document"


class DocumentNotFound(PoolError):
    """No document with that id (or file id) is in the pool."""

    kind = "not_found"


class ConversationNotFound(PoolError):
    """No conversation with that id belongs to the caller (ids of others' are not revealed)."""

    kind = "not_found"


class KeyNotFound(PoolError):
    """No service API key with that id."""

    kind = "not_found"


class Unauthenticated(PoolError):
    """No API key, or one that is unknown or revoked, where one is required."""

    kind = "unauthenticated"


class Forbidden(PoolError):
    """A valid key whose role or origin does not allow this request."""

    kind = "forbidden"


class RateLimited(PoolError):
    """A key asked too often, or used too many upstream tokens, for now."""

    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IndexParamsMismatch(PoolError):
    """The pool was indexed with analyzer/BM25 parameters other than the configured ones."""

    kind = "index_params_mismatch"


class Conflict(PoolError):
    """Another change to the same document kept winning; try again."""

    kind = "conflict"


class ConfigurationError(PoolError):
    """Settings are missing, contradictory or unsafe."""

    kind = "configuration_error"


class SemanticUnavailable(ConfigurationError):
    """Semantic routing is on but its model cannot be loaded (not installed, or other bytes)."""


class UpstreamError(PoolError):
    """The Files or Messages backend failed."""

    kind = "upstream_error"


class StoreUnavailable(PoolError):
    """The server's own files store cannot be written or read (a full disk, permissions)."""

    kind = "store_unavailable"


class UpstreamUnavailable(UpstreamError):
    """The backend is overloaded, rate limiting or unreachable, even after retries."""

    kind = "upstream_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    """The backend did not answer in time."""

    kind = "upstream_timeout"


class UpstreamAuthError(UpstreamError):
    """The backend refused the server's credentials (misconfigured key)."""

    kind = "upstream_auth"


class RemoteFileMissing(UpstreamError):
    """The backend no longer has a file the pool refers to."""

    kind = "remote_file_missing"

    def __init__(self, message: str, *, file_id: str) -> None:
        super().__init__(message)
        self.file_id = file_id
