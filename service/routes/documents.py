"""``/v1/documents``: upload, list, show, edit and delete the pool's documents.

Uploads go through ``indexing.ingest.ingest``, the code behind ``kpool ingest``, so a change
reaches routing before the response is sent. Changing documents needs an admin key;
reading the list or one document a user key too, which sees only the documents its groups may
read (anything else is "not found", exactly as an id that does not exist).

An upload is read as a stream and refused (413) as soon as its file part passes
``max_file_bytes``, so an oversized body is never held in memory or on disk. The file part's
filename is sanitised (``indexing.filenames``) and its Content-Type checked against the bytes
by ingest (``indexing.formats``); nothing is ever written to disk under the given name.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool

from indexing.attributes import check_attributes
from indexing.errors import DocumentNotFound, FileTooLarge, InvalidInput, PoolError
from indexing.filenames import MAX_SOURCE_CHARS, check_source, sanitise_filename, unsafe_character
from indexing.filters import Condition
from indexing.ingest import IngestRequest, Outcome, delete_document, ingest, update_metadata
from indexing.models import Document, DocumentPublic, DocumentsPage
from indexing.pool import Pool
from indexing.store import readable
from service.auth import Caller
from service.deps import AdminDep, PoolDep, ReaderDep, SettingsDep
from service.errors import API_ERRORS, error_responses
from service.filters import attribute_query

router = APIRouter(tags=["documents"], responses={**API_ERRORS, **error_responses(404)})

#: Form fields an upload may carry besides ``file``; tags and groups may repeat.
FORM_FIELDS = ("title", "tags", "groups", "attributes", "source")
REPEATABLE = frozenset({"tags", "groups"})
#: Bounds on everything in an upload that is not the file itself.
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 64
FORM_OVERHEAD_BYTES = MAX_PARTS * (MAX_FIELD_BYTES + 1024)
MAX_LABELS = 100
MAX_LABEL_CHARS = 100
MAX_TITLE_CHARS = 500


def _shown_safely(value: str) -> str:
    problem = unsafe_character(value)
    if problem is not None:
        raise ValueError(f"contains {problem}")
    return value


def _storable(attributes: dict[str, Any]) -> dict[str, Any]:
    try:
        check_attributes(attributes)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None
    return attributes


Attributes = Annotated[dict[str, Any], AfterValidator(_storable)]

Label = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_LABEL_CHARS),
    AfterValidator(_shown_safely),
]

Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE_CHARS),
    AfterValidator(_shown_safely),
]


class DocumentIngested(DocumentPublic):
    """The document an upload left in the pool, and what the upload did to it."""

    outcome: Literal["added", "updated", "unchanged"]
    reason: str = Field(default="", description="Why, when not obvious (e.g. a twin's source).")


class DocumentUpdate(BaseModel):
    """Metadata to change; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    tags: list[Label] | None = Field(default=None, max_length=MAX_LABELS)
    groups: list[Label] | None = Field(default=None, max_length=MAX_LABELS)
    attributes: Attributes | None = Field(default=None, description="Replaces them whole.")

    @model_validator(mode="after")
    def _changes_something(self) -> DocumentUpdate:
        if not any(getattr(self, name) is not None for name in type(self).model_fields):
            raise ValueError("give at least one of title, tags, groups, attributes")
        return self


_UPLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "The document."},
        "title": {"type": "string", "maxLength": MAX_TITLE_CHARS},
        "tags": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Comma-separated, or the field repeated.",
        },
        "groups": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Who may see it (none: everyone); comma-separated or repeated.",
        },
        "attributes": {"type": "string", "description": "A JSON object."},
        "source": {
            "type": "string",
            "description": "The document's identity; default `upload:<filename>`.",
        },
    },
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": _UPLOAD_SCHEMA}},
    }
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No document with that id."}}
_UPDATED = {**_NOT_FOUND, **error_responses(409)}


# ----------------------------------------------------------------------------------- routes


@router.post(
    "/v1/documents",
    response_model=DocumentIngested,
    status_code=201,
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"model": DocumentIngested, "description": "A new version, or nothing changed."},
        400: {
            "description": "Malformed form: no file part, unknown field, bad attributes, "
            "no usable filename, a source with control characters."
        },
        413: {
            "description": "The file is larger than max_file_bytes, or passes another limit "
            "(pages, archive, parser); the message names it."
        },
        415: {
            "description": "Not a supported format, or the content is not what the extension "
            "or the part's Content-Type declares (content_mismatch)."
        },
        422: {"description": "Corrupt, encrypted or empty file."},
    },
)
async def upload_document(
    request: Request,
    response: Response,
    pool: PoolDep,
    settings: SettingsDep,
    _admin: AdminDep,
) -> DocumentIngested:
    """Upload a document, or a new version of one; the same bytes again change nothing."""
    upload = await read_upload(request, max_file_bytes=settings.max_file_bytes)
    outcome, doc = await run_in_threadpool(_ingest, pool, upload.ingest_request())
    if outcome.status == "added":
        response.headers["Location"] = f"/v1/documents/{doc.id}"
    else:
        response.status_code = 200
    return DocumentIngested.model_validate(
        doc, update={"outcome": outcome.status, "reason": outcome.reason}
    )


@router.get("/v1/documents", response_model=DocumentsPage, status_code=200)
def list_documents(
    pool: PoolDep,
    caller: ReaderDep,
    attributes: Annotated[dict[str, Condition], Depends(attribute_query)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    tag: Annotated[str | None, Query(max_length=MAX_LABEL_CHARS)] = None,
) -> DocumentsPage:
    """List documents by id, a page at a time, optionally only those with a tag or attributes."""
    rows, next_cursor = pool.store.list_documents(
        limit=limit,
        cursor=cursor,
        tag=tag,
        readable_by=listable_by(caller),
        attributes=attributes,
    )
    return DocumentsPage(data=[_public(doc) for doc in rows], next_cursor=next_cursor)


@router.get(
    "/v1/documents/{document_id}",
    response_model=DocumentPublic,
    status_code=200,
    responses=_NOT_FOUND,
)
def get_document(document_id: str, pool: PoolDep, caller: ReaderDep) -> DocumentPublic:
    """Show one document's metadata."""
    doc = pool.store.get_document(document_id)
    if not readable(doc, listable_by(caller)):
        raise DocumentNotFound(f"no document with id {document_id!r}")
    return _public(doc)


@router.put(
    "/v1/documents/{document_id}",
    response_model=DocumentPublic,
    status_code=200,
    responses=_UPDATED,
)
def update_document(
    document_id: str, body: DocumentUpdate, pool: PoolDep, _admin: AdminDep
) -> DocumentPublic:
    """Change a document's title, tags, groups or attributes; routing follows at once."""
    doc = update_metadata(
        pool,
        document_id=document_id,
        title=body.title,
        tags=body.tags,
        groups=body.groups,
        attributes=body.attributes,
    )
    pool.refresh()
    return _public(doc)


@router.delete(
    "/v1/documents/{document_id}",
    response_model=None,
    status_code=204,
    responses=_NOT_FOUND,
)
def remove_document(document_id: str, pool: PoolDep, _admin: AdminDep) -> Response:
    """Remove a document: from routing first, then its remote file."""
    delete_document(pool, document_id)
    return Response(status_code=204)


def listable_by(caller: Caller) -> Sequence[str] | None:
    """Anyone sees every document while the service has no keys; a key, only those its
    groups may read: all of them for an admin key, and for a trusted front end speaking for
    someone (even with an admin key), what that person's groups may read."""
    return None if caller.role is None else caller.groups


def _public(doc: Document) -> DocumentPublic:
    return DocumentPublic.model_validate(doc)


def _ingest(pool: Pool, request: IngestRequest) -> tuple[Outcome, Document]:
    outcome = ingest(pool, request)
    if outcome.status == "failed" or outcome.document_id is None:
        raise outcome.error or PoolError(outcome.reason)
    return outcome, pool.store.get_document(outcome.document_id)


# ------------------------------------------------------------------------------- the upload


@dataclass
class Upload:
    """A parsed upload: the file and the raw values of the other fields."""

    filename: str = ""
    data: bytes = b""
    fields: dict[str, list[str]] = field(default_factory=dict)
    #: The file part's own Content-Type header ("" when it has none).
    content_type: str = ""

    def ingest_request(self) -> IngestRequest:
        """The upload as ``ingest`` takes it; a malformed field raises ``InvalidInput``."""
        title = self._single("title")
        return IngestRequest(
            source=self._source(),
            data=self.data,
            filename=self.filename,
            title=_safe("title", _bounded("title", title, MAX_TITLE_CHARS)) if title else None,
            tags=self._labels("tags"),
            groups=self._labels("groups"),
            attributes=self._attributes(),
            content_type=self.content_type or None,
        )

    def _single(self, name: str) -> str:
        values = self.fields.get(name, [])
        return values[0].strip() if values else ""

    def _source(self) -> str:
        # NFC: the same name typed on macOS (decomposed) and elsewhere is one identity.
        given = unicodedata.normalize("NFC", self._single("source"))
        source = _bounded("source", given or f"upload:{self.filename}", MAX_SOURCE_CHARS)
        check_source(source)
        return source

    def _labels(self, name: str) -> list[str]:
        labels = [
            label.strip() for value in self.fields.get(name, []) for label in value.split(",")
        ]
        labels = sorted({label for label in labels if label})
        if len(labels) > MAX_LABELS:
            raise InvalidInput(
                f"form field {name!r} has {len(labels)} values; at most {MAX_LABELS}"
            )
        for label in labels:
            _safe(name, _bounded(name, label, MAX_LABEL_CHARS))
        return labels

    def _attributes(self) -> dict[str, Any]:
        raw = self._single("attributes")
        if not raw:
            return {}
        try:
            attributes = json.loads(raw)
        except ValueError as exc:
            raise InvalidInput(f"form field 'attributes' is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidInput("form field 'attributes' is nested too deeply") from None
        if not isinstance(attributes, dict):
            raise InvalidInput("form field 'attributes' must be a JSON object")
        check_attributes(attributes, where="form field 'attributes'")
        return attributes


def _safe(name: str, value: str) -> str:
    problem = unsafe_character(value)
    if problem is not None:
        raise InvalidInput(f"form field {name!r} contains {problem}")
    return value


def _bounded(name: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidInput(f"form field {name!r} is {len(value)} characters; at most {limit}")
    return value


async def read_upload(request: Request, *, max_file_bytes: int) -> Upload:
    """Parse a ``multipart/form-data`` upload from the request stream, refusing it as soon as
    the file (or the request) is larger than the limits allow."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidInput(
            "send the document as multipart/form-data with a 'file' part "
            "(and optional fields: " + ", ".join(FORM_FIELDS) + ")"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_file_bytes + FORM_OVERHEAD_BYTES:
        raise FileTooLarge(_too_large(f"the request is {int(declared):,} bytes", max_file_bytes))
    form = _FormReader(max_file_bytes)
    return await form.read(params[b"boundary"], request.stream())


def _too_large(measured: str, limit: int) -> str:
    return f"{measured}; files may be at most {limit:,} bytes (max_file_bytes)"


class _FormReader:
    """Callbacks for python-multipart's streaming parser, with every size bounded."""

    def __init__(self, max_file_bytes: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.upload = Upload()
        self.parts = 0
        self.ended = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._content_type = b""
        self._part_name = ""
        self._is_file = False
        self._seen_file = False
        self._file = bytearray()
        self._value = bytearray()

    async def read(self, boundary: bytes, stream: AsyncIterator[bytes]) -> Upload:
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )
        try:
            async for chunk in stream:
                parser.write(chunk)
        except MultipartParseError as exc:
            raise InvalidInput(f"the multipart body is malformed: {exc}") from None
        if not self.ended:
            raise InvalidInput("the multipart body ended before its closing boundary")
        if not self._seen_file:
            raise InvalidInput("the upload has no 'file' part")
        return self.upload

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise InvalidInput(f"the upload has more than {MAX_PARTS} parts")
        self._disposition = self._content_type = b""
        self._value.clear()

    # python-multipart bounds each header line (4 KiB) and the headers of a part (8).
    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = self._header_name.lower()
        if name == b"content-disposition":
            self._disposition = bytes(self._header_value)
        elif name == b"content-type":
            self._content_type = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise InvalidInput("a part of the upload has no name (Content-Disposition)")
        self._part_name = _decode(options[b"name"])
        self._is_file = self._part_name == "file"
        if self._is_file:
            self._begin_file(options.get(b"filename"))
        elif self._part_name not in FORM_FIELDS:
            raise InvalidInput(
                f"unknown form field {self._part_name!r}; expected file, " + ", ".join(FORM_FIELDS)
            )
        elif b"filename" in options:
            raise InvalidInput(f"form field {self._part_name!r} must be text, not a file")

    def _begin_file(self, raw_filename: bytes | None) -> None:
        if self._seen_file:
            raise InvalidInput("the upload has more than one 'file' part; send one per request")
        self._seen_file = True
        if raw_filename is None:
            raise InvalidInput("the 'file' part must be a file, with a filename")
        filename = sanitise_filename(_decode(raw_filename))
        if not filename:
            raise InvalidInput("the 'file' part has no usable filename (e.g. policy.pdf)")
        self.upload.filename = filename
        # Checked against the content by ``ingest`` (indexing.formats: missing or generic
        # types such as application/octet-stream leave it to the extension and the bytes).
        self.upload.content_type = _decode(self._content_type).strip()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            if len(self._file) + end - start > self.max_file_bytes:
                name = self.upload.filename
                raise FileTooLarge(_too_large(f"{name} is over the limit", self.max_file_bytes))
            self._file += data[start:end]
        else:
            if len(self._value) + end - start > MAX_FIELD_BYTES:
                raise InvalidInput(
                    f"form field {self._part_name!r} is over {MAX_FIELD_BYTES:,} bytes"
                )
            self._value += data[start:end]

    def _part_end(self) -> None:
        if self._is_file:
            self.upload.data = bytes(self._file)
            self._file = bytearray()
            return
        values = self.upload.fields.setdefault(self._part_name, [])
        if values and self._part_name not in REPEATABLE:
            raise InvalidInput(f"form field {self._part_name!r} was given more than once")
        try:
            values.append(self._value.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(f"form field {self._part_name!r} is not UTF-8 text") from None

    def _end(self) -> None:
        self.ended = True


def _decode(raw: bytes) -> str:
    """A header parameter as sent: UTF-8 from browsers and most clients, else Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
