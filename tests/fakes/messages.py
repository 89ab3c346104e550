"""The Messages endpoints of the fake Anthropic API: ``POST /v1/messages`` (JSON, or SSE with
``"stream": true``) and ``POST /v1/messages/count_tokens``.

Both go through the shared pipeline of ``anthropic_server.api_route`` (recording, injected
failures, auth, ``anthropic-version``), after a 413 for bodies over 32 MB.

**Validation.** The body is checked against the pinned SDK's own request types
(``MessageCreateParamsNonStreaming``/``Streaming``, ``MessageCountTokensParams``), made strict:
unknown keys are refused at every level, content blocks and sources are told apart by their
``type`` (so a wrong tag reads "Input tag 'x' found using 'type' does not match any of the expected
tags", the API's own wording), and the SDK's lazy ``Iterable`` fields are checked eagerly. As in
the SDK's types, a content block may also have the shape of a response block (``Message.to_param``
replays citations with ``file_id``). Errors name the path as the API does
(``messages.0.content.1.document.source: ...``). Then the documented traps, each a 400
``invalid_request_error`` unless noted:

* ``temperature``/``top_p``/``top_k`` under ``anthropic-version: 2026-10-21`` (accepted and range
  checked under ``2023-06-01``);
* no messages, or a conversation whose first non-``system`` turn is not ``user``;
* a text block (or string content) that is empty or only whitespace, in any turn;
* under 2026-10-21: a ``document`` block in an ``assistant`` turn, or a text block with non-empty
  ``citations`` in a ``user`` turn;
* citations enabled on some documents and not on others; citations with
  ``output_config.format``;
* more than 4 ``cache_control`` breakpoints (a top-level ``cache_control`` takes one);
* a ``file`` source naming an unknown or deleted file: **404 ``not_found_error``**, message
  ``"messages.0.content.1.document.source.file_id: File not found: <file_id>"`` (expired: 404 with
  ``error_code: file_expired``). Chosen over the beta guide's ``invalid_request_error`` sample
  because the guide's text, the Files endpoints and the SDK's ``FileExpiredError`` all say 404,
  and the id in the message lets a caller know which file to re-upload;
* a file document whose ``mime_type`` is neither ``application/pdf`` nor ``text/plain``:
  ``"Unsupported document file format: <mime>. Only PDF and plaintext documents are supported."``

Checks run in that order (the sampling parameters before the schema, so their message says why;
files last), and the first failure is reported.
``workspace_id``/``user_profile_id`` are header-only (the SDK sends them as headers), so in a
body they are unknown keys. Any model name is accepted. ``url`` and ``content`` document sources
are not implemented: they raise, so the fixture fails the test instead of answering wrongly.

**The "model".** Deterministic: the question is the last text block of the last user turn; each
document (``document_index`` counts every top-level document block of every message, in order)
is split into sentences (text files: the decoded text, split at ``.!?`` and line ends; PDFs:
pypdf's text per page), and the sentences sharing the most non-stopword words with the question
(at most 2 per document, 3 documents) are quoted, each in its own ``text`` block with one
``char_location`` (text) or ``page_location`` (PDF) citation. No shared word: a plain answer
that the documents do not cover it; with citations off, one uncited block. Output beyond
``max_tokens`` (4 characters a token) is cut, with ``stop_reason: max_tokens``. Usage:
``ceil(chars / 4)`` of the request as the model sees it (documents expanded to their text,
``count_tokens`` returns the same figure); the prompt cache remembers each breakpoint's prefix
(tools, system, messages up to and including the marked block) for its ``ttl`` (5 min default):
first time ``cache_creation_input_tokens``, then ``cache_read_input_tokens`` (and a hit refreshes
the entry). Streams follow §4.1: ``message_start``, ``ping``, per block ``content_block_start``,
``text_delta``s then one ``citations_delta`` per citation, ``content_block_stop``, then
``message_delta`` with cumulative usage and ``message_stop``. A tool's ``input_schema`` must be
an object schema (400 otherwise). A request that forces a tool
(``tool_choice`` ``tool``, or ``any``: its first tool; naming a tool it lacks is a 400) gets one
``tool_use`` block whose ``input`` is the plainest value the tool's schema accepts
(``schema_example``), with ``stop_reason: tool_use``; tests script any other judgement.

Controls live on ``fake.messages`` (``FakeMessages``); see its methods.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections.abc as cabc
import hashlib
import io
import itertools
import json
import math
import os
import re
import threading
import time
import types
import typing
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pydantic
import pypdf
import typing_extensions as te
from anthropic.types import ContentBlock, MessageCountTokensParams
from anthropic.types.message_create_params import (
    MessageCreateParamsNonStreaming,
    MessageCreateParamsStreaming,
)
from pydantic import ConfigDict, Field, TypeAdapter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute

from tests.fakes.anthropic_server import (
    ApiError,
    Call,
    FakeAnthropic,
    StoredFile,
    _random_id,
    api_route,
)

MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_CACHE_BREAKPOINTS = 4
NEW_VERSION = "2026-10-21"
SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
HEADER_ONLY_PARAMS = frozenset({"workspace_id", "user_profile_id"})
DOCUMENT_MIME_TYPES = frozenset({"application/pdf", "text/plain"})
IMAGE_MIME_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
CACHE_TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
CHARS_PER_TOKEN = 4


# --------------------------------------------------------------------------------------------
# Request schema: the SDK's TypedDicts, made strict
# --------------------------------------------------------------------------------------------

_FORBID = ConfigDict(extra="forbid")
_LIST_LIKE = (cabc.Iterable, cabc.Sequence, list)
_MAPPINGS = (dict, cabc.Mapping)
_DISCRIMINATORS = ("type", "role")

Fields = dict[str, tuple[Any, bool]]  # wire key -> (strict type, required)

# Built at run time from computed arguments, which type checkers cannot follow.
_LIST: Any = list
_DICT: Any = dict
_TYPED_DICT: Any = te.TypedDict

#: Every strict TypedDict built here, with its fields (for tags and merging).
_SHAPES: dict[Any, Fields] = {}
#: Original class -> strict TypedDict; ``None`` while it is being built.
_BUILT: dict[Any, Any] = {}


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) in (te.Required, te.NotRequired, Annotated):
        tp = get_args(tp)[0]
    return tp


def _union(options: Sequence[Any]) -> Any:
    return options[0] if len(options) == 1 else Union[tuple(options)]  # noqa: UP007


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def strict_type(tp: Any) -> Any:
    """``tp`` for validating a JSON body: ``Iterable``/``Sequence`` become ``list`` (pydantic
    checks iterables lazily), TypedDicts and response models become TypedDicts that forbid
    unknown keys, and unions of them are discriminated by ``type`` (or ``role``)."""
    tp = _unwrap(tp)
    origin = get_origin(tp)
    if te.is_typeddict(tp) or _is_model(tp):
        return _strict_class(tp)
    if origin in (Union, types.UnionType):
        return _strict_union(tp)
    if origin in _LIST_LIKE:
        (item,) = get_args(tp) or (Any,)
        return _LIST[strict_type(item)]
    if origin in _MAPPINGS:
        key, value = get_args(tp)
        return _DICT[key, strict_type(value)]
    return tp


def _strict_class(cls: Any) -> Any:
    if cls in _BUILT:
        if _BUILT[cls] is None:
            raise TypeError(f"{cls!r} is recursive; strict_type does not handle that")
        return _BUILT[cls]
    _BUILT[cls] = None
    try:
        built = _typeddict(cls.__name__, _fields_of(cls))
    except BaseException:
        del _BUILT[cls]
        raise
    _BUILT[cls] = built
    return built


def _fields_of(cls: Any) -> Fields:
    fields: Fields = {}
    if _is_model(cls):  # a response model: pydantic has resolved its annotations already
        for name, info in cls.model_fields.items():
            fields[info.alias or name] = (strict_type(info.annotation), info.is_required())
        return fields
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        # The SDK's modules use string annotations, so ``__required_keys__`` only reflects each
        # class's ``total``; an explicit ``Required``/``NotRequired`` overrides it.
        marker = get_origin(hint)
        required = marker is te.Required or (
            marker is not te.NotRequired and name in cls.__required_keys__
        )
        fields[name] = (strict_type(hint), required)
    return fields


def _typeddict(name: str, fields: Fields) -> Any:
    spec = {
        key: (te.Required[tp] if required else te.NotRequired[tp])
        for key, (tp, required) in fields.items()
    }
    built = _TYPED_DICT(name, spec)
    built.__pydantic_config__ = _FORBID
    _SHAPES[built] = fields
    return built


def _flatten(tp: Any) -> Iterator[Any]:
    tp = _unwrap(tp)
    if get_origin(tp) in (Union, types.UnionType):
        for arg in get_args(tp):
            yield from _flatten(arg)
    else:
        yield tp


def _wire_only(tp: Any) -> bool:
    """Python-side conveniences of the SDK (file objects, paths) that JSON cannot carry."""
    return get_origin(tp) is typing.IO or tp is os.PathLike or tp is bytes


def _tags(shape: Any, key: str) -> tuple[Any, ...] | None:
    tp, required = _SHAPES[shape].get(key, (None, False))
    if not required or get_origin(tp) is not Literal:
        return None
    return get_args(tp)


def _merge(shapes: list[Any]) -> Any:
    """One TypedDict accepting each shape: the SDK takes a request block or a response block
    (``MessageContentParam`` includes ``ContentBlock``), and both have the same tag."""
    if len(shapes) == 1:
        return shapes[0]
    merged: Fields = {}
    keys = dict.fromkeys(k for s in shapes for k in _SHAPES[s])
    for key in keys:
        options = list(dict.fromkeys(_SHAPES[s][key][0] for s in shapes if key in _SHAPES[s]))
        required = all(key in _SHAPES[s] and _SHAPES[s][key][1] for s in shapes)
        merged[key] = (_union(options), required)
    return _typeddict(shapes[0].__name__, merged)


def _strict_union(tp: Any) -> Any:
    members = [strict_type(m) for m in dict.fromkeys(_flatten(tp)) if not _wire_only(m)]
    members = list(dict.fromkeys(members))
    shapes = [m for m in members if m in _SHAPES]
    rest = [m for m in members if m not in _SHAPES]
    choices: list[Any] = list(shapes)
    for key in _DISCRIMINATORS:
        tags = [_tags(s, key) for s in shapes]
        if len(shapes) < 2 or any(t is None for t in tags):
            continue
        groups: dict[tuple[Any, ...], list[Any]] = {}
        for shape, tag in zip(shapes, tags, strict=True):
            groups.setdefault(tag or (), []).append(shape)
        values = [v for tag in groups for v in tag]
        if len(values) != len(set(values)):
            continue  # overlapping tags: leave it to pydantic's smart union
        merged = [_merge(group) for group in groups.values()]
        choices = [merged[0]]
        if len(merged) > 1:
            choices = [Annotated[_union(merged), Field(discriminator=key)]]
        break
    return _union(choices + rest)


def _request_adapter(cls: Any) -> TypeAdapter[Any]:
    fields = {k: v for k, v in _SHAPES[strict_type(cls)].items() if k not in HEADER_ONLY_PARAMS}
    return TypeAdapter(_typeddict(cls.__name__, fields))


_ADAPTERS: dict[str, TypeAdapter[Any]] = {}
_ADAPTERS_LOCK = threading.Lock()


def _adapter(kind: Literal["create", "stream", "count"]) -> TypeAdapter[Any]:
    """Built on first use (about 0.1 s each), once per process."""
    with _ADAPTERS_LOCK:
        if kind not in _ADAPTERS:
            cls = {
                "create": MessageCreateParamsNonStreaming,
                "stream": MessageCreateParamsStreaming,
                "count": MessageCountTokensParams,
            }[kind]
            _ADAPTERS[kind] = _request_adapter(cls)
        return _ADAPTERS[kind]


def _wire_path(loc: tuple[int | str, ...], body: Any) -> list[int | str]:
    """The error's location as keys of the body: pydantic's union member names are dropped,
    the ``type`` tag of a block is kept (``messages.0.content.1.document.source``)."""
    path: list[int | str] = []
    here = body
    for position, item in enumerate(loc):
        last = position == len(loc) - 1
        if isinstance(here, dict):
            if item == here.get("type") and not last:  # the tag of a discriminated union
                path.append(item)
            elif isinstance(item, str) and item in here:
                path.append(item)
                here = here[item]
            elif last and isinstance(item, str):  # a missing key
                path.append(item)
        elif isinstance(here, list) and isinstance(item, int) and 0 <= item < len(here):
            path.append(item)
            here = here[item]
    return path


def _schema_error(exc: pydantic.ValidationError, body: Any) -> ApiError:
    """The most specific of pydantic's errors (the deepest path), in the API's words."""
    best: tuple[int, str] | None = None
    for error in exc.errors(include_url=False):
        path = _wire_path(error["loc"], body)
        if error["type"] == "union_tag_not_found":  # no ``type`` (or ``role``) at all
            path.append(str((error.get("ctx") or {}).get("discriminator", "type")).strip("'"))
            error["msg"] = "Field required"
        text = ".".join(str(p) for p in path)
        message = f"{text}: {error['msg']}" if text else error["msg"]
        if best is None or len(path) > best[0]:
            best = (len(path), message)
    return ApiError(400, best[1] if best else str(exc))


def validate_schema(kind: Literal["create", "stream", "count"], body: dict[str, Any]) -> None:
    if not isinstance(body.get("stream", False), bool):
        raise ApiError(400, "stream: Input should be a valid boolean")
    try:
        _adapter(kind).validate_python(body)
    except pydantic.ValidationError as exc:
        raise _schema_error(exc, body) from exc


# --------------------------------------------------------------------------------------------
# Traps beyond the schema
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockRef:
    """A top-level content block of a message."""

    message: int
    index: int
    role: str
    block: dict[str, Any]

    @property
    def path(self) -> str:
        return f"messages.{self.message}.content.{self.index}"

    def inside(self, key: str) -> str:
        """A key of the block, spelled as schema errors spell it (with the block's type)."""
        return f"{self.path}.{self.block.get('type')}.{key}"


def content_blocks(body: Mapping[str, Any]) -> list[BlockRef]:
    """Every top-level content block, in request order (string content is one text block)."""
    refs: list[BlockRef] = []
    for m, message in enumerate(body.get("messages") or []):
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        refs.extend(BlockRef(m, i, message.get("role", ""), b) for i, b in enumerate(blocks))
    return refs


def document_refs(body: Mapping[str, Any]) -> list[BlockRef]:
    """The document blocks; their position here is the citations' ``document_index``."""
    return [ref for ref in content_blocks(body) if ref.block.get("type") == "document"]


def _without_sampling(body: dict[str, Any], version: str) -> dict[str, Any]:
    present = [name for name in SAMPLING_PARAMS if name in body]
    if not present:
        return body
    if version == NEW_VERSION:
        raise ApiError(
            400,
            f"{present[0]}: Extra inputs are not permitted. temperature, top_p and top_k were "
            f"removed in anthropic-version {NEW_VERSION}; send anthropic-version: 2023-06-01 "
            "to use them.",
        )
    for name in present:
        value = body[name]
        if name == "top_k":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        else:
            number = isinstance(value, int | float) and not isinstance(value, bool)
            ok = number and 0.0 <= value <= 1.0
        if not ok:
            bounds = "an integer >= 0" if name == "top_k" else "a number between 0 and 1"
            raise ApiError(400, f"{name}: Input should be {bounds}")
    return {k: v for k, v in body.items() if k not in SAMPLING_PARAMS}


def _check_turns(body: Mapping[str, Any]) -> None:
    messages = body.get("messages") or []
    if not messages:
        raise ApiError(400, "messages: at least one message is required")
    roles = [m.get("role") for m in messages if m.get("role") != "system"]
    if not roles or roles[0] != "user":
        raise ApiError(400, 'messages: first message must use the "user" role')
    for ref in content_blocks(body):
        if ref.block.get("type") != "text" or not isinstance(ref.block.get("text"), str):
            continue
        if not ref.block["text"]:
            raise ApiError(400, f"{ref.path}: text content blocks must be non-empty")
        if not ref.block["text"].strip():
            raise ApiError(400, f"{ref.path}: text content blocks must contain non-whitespace text")


def _check_version_traps(body: Mapping[str, Any], version: str) -> None:
    if version != NEW_VERSION:
        return
    for ref in content_blocks(body):
        kind = ref.block.get("type")
        if ref.role == "assistant" and kind == "document":
            raise ApiError(
                400,
                f"{ref.path}: document blocks are not allowed in assistant turns "
                f"(anthropic-version {NEW_VERSION})",
            )
        if ref.role == "user" and kind == "text" and ref.block.get("citations"):
            raise ApiError(
                400,
                f"{ref.inside('citations')}: text blocks in user turns cannot carry citations "
                f"(anthropic-version {NEW_VERSION}); keep cited text in assistant turns or "
                "drop the citations",
            )


def citations_enabled(body: Mapping[str, Any]) -> bool:
    """Whether the request asks for citations (valid requests are all-or-none)."""
    return any(_cites(ref.block) for ref in document_refs(body))


def _cites(block: Mapping[str, Any]) -> bool:
    return bool((block.get("citations") or {}).get("enabled"))


def _check_citations(body: Mapping[str, Any]) -> None:
    flags = [_cites(ref.block) for ref in document_refs(body)]
    if len(set(flags)) > 1:
        on = [i for i, f in enumerate(flags) if f]
        off = [i for i, f in enumerate(flags) if not f]
        raise ApiError(
            400,
            "citations: must be enabled on all or none of the documents in a request "
            f"(enabled on documents {on}, not on {off})",
        )
    if any(flags) and (body.get("output_config") or {}).get("format"):
        raise ApiError(400, "Citations cannot be combined with structured outputs")


def _count_cache_controls(value: Any) -> int:
    if isinstance(value, dict):
        own = 1 if value.get("cache_control") else 0
        return own + sum(_count_cache_controls(v) for k, v in value.items() if k != "cache_control")
    if isinstance(value, list):
        return sum(_count_cache_controls(v) for v in value)
    return 0


def _client_tools(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The request's own tools (those with an ``input_schema``), not server tools."""
    return [t for t in body.get("tools") or [] if isinstance(t, Mapping) and "input_schema" in t]


def _check_tools(body: Mapping[str, Any]) -> None:
    for index, tool in enumerate(_client_tools(body)):
        if tool["input_schema"].get("type") != "object":
            raise ApiError(400, f"tools.{index}.custom.input_schema.type: Input should be 'object'")
    choice = body.get("tool_choice") or {}
    names = {t.get("name") for t in body.get("tools") or [] if isinstance(t, Mapping)}
    if choice.get("type") == "tool" and choice.get("name") not in names:
        raise ApiError(400, f"tool_choice.name: Tool '{choice.get('name')}' not found in tools")
    if choice.get("type") in ("any", "tool") and not names:
        raise ApiError(400, "tool_choice: tools must be provided when tool_choice is set")


def forced_tool(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The tool the request forces (``tool_choice`` ``tool``, or ``any``: the first), if any."""
    choice = body.get("tool_choice") or {}
    tools = _client_tools(body)
    if choice.get("type") == "tool":
        return next((t for t in tools if t.get("name") == choice.get("name")), None)
    if choice.get("type") == "any" and tools:
        return tools[0]
    return None


def schema_example(schema: Mapping[str, Any]) -> Any:
    """The plainest value a JSON schema accepts: the first of an ``enum`` or ``anyOf``, its
    ``const``; for an object its required properties; the fewest items an array allows, each
    the plainest; the smallest number; an empty (or short enough) string; ``true``. A test
    that needs a particular judgement scripts the reply."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return schema_example(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        required = set(schema.get("required") or ())
        properties = schema.get("properties") or {}
        return {name: schema_example(sub) for name, sub in properties.items() if name in required}
    if kind == "array":
        return [schema_example(schema.get("items") or {})] * int(schema.get("minItems", 0))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        low = max(low, 0) if "maximum" not in schema else min(max(low, 0), schema["maximum"])
        return (
            low + 1 if "exclusiveMinimum" in schema and low == schema["exclusiveMinimum"] else low
        )
    if kind == "string":
        return "x" * int(schema.get("minLength", 0))
    return True if kind == "boolean" else None


def _check_cache_controls(body: Mapping[str, Any]) -> None:
    found = _count_cache_controls([body.get("tools"), body.get("system"), body.get("messages")])
    found += 1 if body.get("cache_control") else 0
    if found > MAX_CACHE_BREAKPOINTS:
        raise ApiError(
            400,
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found}.",
        )


# --------------------------------------------------------------------------------------------
# Documents: files resolved to text
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """A document block as the model reads it."""

    index: int
    title: str | None
    file_id: str | None
    kind: Literal["text", "pdf"]
    text: str = ""
    pages: tuple[str, ...] = ()

    @property
    def chars(self) -> int:
        return len(self.text) + sum(len(p) for p in self.pages)


def _mime(raw: str) -> tuple[str, str | None]:
    base, _, params = raw.partition(";")
    charset = re.search(r"charset=\"?([\w.-]+)", params)
    return base.strip().lower(), charset.group(1) if charset else None


def _decode(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def pdf_pages(data: bytes) -> tuple[str, ...]:
    """Text of each page, as pypdf extracts it (a page without a text layer is ``""``)."""
    reader = pypdf.PdfReader(io.BytesIO(data))
    return tuple(page.extract_text() or "" for page in reader.pages)


def _stored_file(fake: FakeAnthropic, file_id: str, where: str) -> StoredFile:
    with fake._lock:
        stored = fake.files.get(file_id)
    if stored is None:
        raise ApiError(404, f"{where}.file_id: File not found: {file_id}")
    if stored.expired():
        raise ApiError(
            404, f"{where}.file_id: File has expired: {file_id}", error_code="file_expired"
        )
    return stored


def _check_other_files(fake: FakeAnthropic, body: Mapping[str, Any]) -> None:
    """Images and container uploads by file id: the file must exist (and be an image)."""
    for ref in content_blocks(body):
        kind, block = ref.block.get("type"), ref.block
        if kind == "image" and (block.get("source") or {}).get("type") == "file":
            stored = _stored_file(fake, block["source"]["file_id"], ref.inside("source"))
            if _mime(stored.mime_type)[0] not in IMAGE_MIME_TYPES:
                raise ApiError(
                    400,
                    f"{ref.inside('source')}: Unsupported image file format: {stored.mime_type}. "
                    f"Supported: {', '.join(sorted(IMAGE_MIME_TYPES))}.",
                )
        elif kind == "container_upload":
            _stored_file(fake, block["file_id"], ref.path + ".container_upload")


class DocumentTexts:
    """Resolves document blocks to text; PDF extraction is cached per file id."""

    def __init__(self) -> None:
        self._pdf_cache: dict[str, tuple[str, ...]] = {}

    def clear(self) -> None:
        self._pdf_cache.clear()

    def resolve(self, fake: FakeAnthropic, body: Mapping[str, Any]) -> list[Document]:
        _check_other_files(fake, body)
        return [self._one(fake, i, ref) for i, ref in enumerate(document_refs(body))]

    def _one(self, fake: FakeAnthropic, index: int, ref: BlockRef) -> Document:
        block, where = ref.block, ref.inside("source")
        source, title = block["source"], block.get("title")
        kind = source["type"]
        if kind == "text":
            return Document(index, title, None, "text", text=source["data"])
        if kind == "base64":
            data = _b64(source["data"], where)
            return Document(index, title, None, "pdf", pages=self._pdf(None, data, where))
        if kind != "file":
            raise NotImplementedError(f"the fake does not read {kind!r} document sources")
        stored = _stored_file(fake, source["file_id"], where)
        mime, charset = _mime(stored.mime_type)
        if mime not in DOCUMENT_MIME_TYPES:
            raise ApiError(
                400,
                f"{where}: Unsupported document file format: {stored.mime_type}. "
                "Only PDF and plaintext documents are supported.",
            )
        if mime == "text/plain":
            return Document(index, title, stored.id, "text", text=_decode(stored.data, charset))
        pages = self._pdf(stored.id, stored.data, where)
        return Document(index, title, stored.id, "pdf", pages=pages)

    def _pdf(self, file_id: str | None, data: bytes, where: str) -> tuple[str, ...]:
        if file_id is not None and file_id in self._pdf_cache:
            return self._pdf_cache[file_id]
        try:
            pages = pdf_pages(data)
        except pypdf.errors.PyPdfError as exc:
            raise ApiError(400, f"{where}: The PDF specified was not valid.") from exc
        if file_id is not None:
            self._pdf_cache[file_id] = pages
        return pages


def _b64(data: str, where: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"{where}.data: invalid base64 data") from exc


# --------------------------------------------------------------------------------------------
# The deterministic "model"
# --------------------------------------------------------------------------------------------

STOPWORDS = frozenset(
    """a an and are as at be been but by can do does for from has have how i if in into is it
    its may me my no not of on or our per shall should so than that the their them then there these
    they this to was we were what when where which who why will with would you your""".split()
)
MAX_SENTENCES_PER_DOCUMENT = 2
MAX_DOCUMENTS_QUOTED = 3
NOT_COVERED = "The provided documents do not cover this question."
_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)")


def words(text: str) -> frozenset[str]:
    """Lower-cased words minus stopwords, with a plural ``s`` folded (``days`` -> ``day``)."""
    found = set()
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        found.add(word)
    return frozenset(found)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence, end exclusive, surrounding whitespace excluded.

    Sentences end at ``.``, ``!`` or ``?`` before whitespace, and at every line end.
    """
    spans: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", text):
        cuts = [line.start(), *(m.end() + line.start() for m in _SENTENCE_END.finditer(line[0]))]
        cuts.append(line.end())
        for start, end in itertools.pairwise(cuts):
            piece = text[start:end]
            lead = len(piece) - len(piece.lstrip())
            trail = len(piece) - len(piece.rstrip())
            if end - trail > start + lead:
                spans.append((start + lead, end - trail))
    return spans


@dataclass(frozen=True)
class Passage:
    document: Document
    score: int
    text: str
    citation: dict[str, Any]


def _passages(doc: Document, question: frozenset[str]) -> list[Passage]:
    found: list[Passage] = []
    common = {"document_index": doc.index, "document_title": doc.title, "file_id": doc.file_id}
    if doc.kind == "text":
        for start, end in sentence_spans(doc.text):
            cited = doc.text[start:end]
            citation = {
                "type": "char_location",
                "cited_text": cited,
                **common,
                "start_char_index": start,
                "end_char_index": end,
            }
            found.append(Passage(doc, len(question & words(cited)), cited, citation))
        return found
    for page, page_text in enumerate(doc.pages):
        flat = " ".join(page_text.split())
        for start, end in sentence_spans(flat):
            cited = flat[start:end]
            citation = {
                "type": "page_location",
                "cited_text": cited,
                **common,
                "start_page_number": page + 1,
                "end_page_number": page + 2,
            }
            found.append(Passage(doc, len(question & words(cited)), cited, citation))
    return found


def best_passages(documents: Sequence[Document], question: str) -> list[list[Passage]]:
    """Per quoted document (in document order), its best sentences in reading order."""
    asked = words(question)
    picks: list[list[Passage]] = []
    for doc in documents:
        scored = [p for p in _passages(doc, asked) if p.score > 0]
        if not scored:
            continue
        top = max(p.score for p in scored)
        best = [p for p in scored if p.score == top][:MAX_SENTENCES_PER_DOCUMENT]
        picks.append(best)
    picks.sort(key=lambda group: -group[0].score)  # stable: ties keep document order
    kept = picks[:MAX_DOCUMENTS_QUOTED]
    return sorted(kept, key=lambda group: group[0].document.index)


def question_of(body: Mapping[str, Any]) -> str:
    """The last text block of the last user turn."""
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    if not users:
        return ""
    content = users[-1].get("content")
    if isinstance(content, str):
        return content
    texts = [b.get("text", "") for b in content if b.get("type") == "text"]
    return texts[-1] if texts else ""


def compose_answer(
    documents: Sequence[Document], question: str, *, citations: bool
) -> list[dict[str, Any]]:
    """Content blocks: an intro per document, then each quoted sentence with its citation."""
    groups = best_passages(documents, question)
    if not groups:
        return [{"type": "text", "text": NOT_COVERED}]
    blocks: list[dict[str, Any]] = []
    for n, group in enumerate(groups):
        doc = group[0].document
        name = doc.title or f"document {doc.index + 1}"
        blocks.append({"type": "text", "text": ("\n\n" if n else "") + f"According to {name}: "})
        for i, passage in enumerate(group):
            if i:
                blocks.append({"type": "text", "text": " "})
            blocks.append({"type": "text", "text": passage.text, "citations": [passage.citation]})
    if citations:
        return blocks
    return [{"type": "text", "text": "".join(b["text"] for b in blocks)}]


# --------------------------------------------------------------------------------------------
# Tokens and the prompt cache
# --------------------------------------------------------------------------------------------


def tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Segment:
    """One cacheable unit of the prompt (a tool, a system block, a message's content block)."""

    key: str
    chars: int
    cache_control: Mapping[str, Any] | None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def prompt_segments(body: Mapping[str, Any], documents: Sequence[Document]) -> list[Segment]:
    """Tools, then system, then messages (the cache's prefix order), documents expanded."""
    segments: list[Segment] = []

    def add(tag: str, block: Any, extra_chars: int = 0) -> None:
        control = block.get("cache_control") if isinstance(block, dict) else None
        bare = {k: v for k, v in block.items() if k != "cache_control"} if control else block
        text = _canonical(bare)
        segments.append(Segment(f"{tag}:{text}", len(text) + extra_chars, control))

    for tool in body.get("tools") or []:
        add("tool", tool)
    system = body.get("system")
    for block in [{"type": "text", "text": system}] if isinstance(system, str) else system or []:
        add("system", block)
    docs = iter(documents)
    for ref in content_blocks(body):
        extra = next(docs).chars if ref.block.get("type") == "document" else 0
        add(f"{ref.message}:{ref.role}", ref.block, extra)
    if (control := body.get("cache_control")) and segments:
        last = segments[-1]
        segments[-1] = Segment(last.key, last.chars, last.cache_control or control)
    return segments


def input_tokens_of(body: Mapping[str, Any], documents: Sequence[Document]) -> int:
    return max(1, tokens(sum(s.chars for s in prompt_segments(body, documents))))


@dataclass(frozen=True)
class CacheUsage:
    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    ttl: str = "5m"

    def to_json(self) -> dict[str, Any]:
        creation = self.cache_creation_input_tokens
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": creation if self.ttl == "5m" else 0,
                "ephemeral_1h_input_tokens": creation if self.ttl == "1h" else 0,
            },
        }


class PromptCache:
    """Prefix hash -> expiry time. Not thread-safe: the owner holds the fake's lock."""

    def __init__(self) -> None:
        self.entries: dict[str, float] = {}

    def account(
        self, model: str, segments: Sequence[Segment], *, now: float, min_tokens: int, store: bool
    ) -> CacheUsage:
        total = max(1, tokens(sum(s.chars for s in segments)))
        breakpoints = []
        running = 0
        digest = hashlib.sha256(model.encode())
        for segment in segments:
            running += segment.chars
            digest.update(b"\x1e" + segment.key.encode())
            if segment.cache_control and tokens(running) >= min_tokens:
                ttl = segment.cache_control.get("ttl") or "5m"
                breakpoints.append((digest.hexdigest(), tokens(running), ttl))
        if not breakpoints:
            return CacheUsage(total)
        read = 0
        for key, prefix, _ in reversed(breakpoints):
            if self.entries.get(key, -math.inf) > now:
                read = prefix
                break
        _, cached, ttl = breakpoints[-1]
        if store:
            for key, _, entry_ttl in breakpoints:  # a hit refreshes the entry's lifetime
                self.entries[key] = now + CACHE_TTL_SECONDS[entry_ttl]
        return CacheUsage(total - cached, cached - read, read, ttl)


# --------------------------------------------------------------------------------------------
# Replies: JSON and SSE
# --------------------------------------------------------------------------------------------


def output_tokens_of(content: Sequence[Mapping[str, Any]]) -> int:
    """``cited_text`` is free; everything else the model wrote counts."""
    chars = 0
    for block in content:
        if block.get("type") == "text":
            chars += len(block.get("text", ""))
        else:
            chars += len(_canonical(block))
    return max(1, tokens(chars))


def truncate(content: list[dict[str, Any]], max_tokens: int) -> tuple[list[dict[str, Any]], bool]:
    """Cut the reply at ``max_tokens`` (4 characters a token); ``True`` if it was cut."""
    budget = max_tokens * CHARS_PER_TOKEN
    kept: list[dict[str, Any]] = []
    for block in content:
        size = len(block.get("text", "")) if block.get("type") == "text" else 0
        if size <= budget:
            kept.append(block)
            budget -= size
            continue
        if block.get("type") == "text" and budget > 0:
            kept.append({**block, "text": block["text"][:budget]})
        return kept, True
    return kept, False


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _chunks(text: str, size: int = 24) -> list[str]:
    """Text deltas of a few words each, cut at spaces."""
    pieces = re.findall(r"\S+\s*|\s+", text)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + len(piece) <= size:
            chunks[-1] += piece
        else:
            chunks.append(piece)
    return chunks or [""]


def block_events(index: int, block: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    kind = block.get("type")
    start: dict[str, Any]
    deltas: list[dict[str, Any]] = []
    if kind == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": c} for c in _chunks(block.get("text", ""))]
        deltas += [{"type": "citations_delta", "citation": c} for c in block.get("citations") or []]
    elif kind in ("tool_use", "server_tool_use"):
        start = {**block, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block.get("input", {}))}]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": block.get("thinking", "")}]
        deltas.append({"type": "signature_delta", "signature": block.get("signature", "")})
    else:
        start = dict(block)
    events = [
        (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        )
    ]
    events += [
        ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
        for d in deltas
    ]
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def stream_events(message: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A complete reply as the SSE events of §4.1 (usage on ``message_delta`` is cumulative)."""
    usage = message["usage"]
    opening = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    events = [("message_start", {"type": "message_start", "message": opening})]
    events.append(("ping", {"type": "ping"}))
    for index, block in enumerate(message["content"]):
        events += block_events(index, block)
    final_usage = {
        key: usage[key]
        for key in (
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "output_tokens",
        )
    }
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    events.append(
        ("message_delta", {"type": "message_delta", "delta": delta, "usage": final_usage})
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


# --------------------------------------------------------------------------------------------
# State and test controls
# --------------------------------------------------------------------------------------------

_CONTENT = TypeAdapter(list[ContentBlock])


@dataclass
class _Script:
    content: list[dict[str, Any]]
    stop_reason: str
    remaining: int | None


@dataclass
class _StreamError:
    after: int
    error_type: str
    message: str


@dataclass
class FakeMessages:
    """The Messages endpoints' state and test controls (``fake.messages``). Thread-safe: it
    shares the fake's lock."""

    fake: FakeAnthropic = field(repr=False, compare=False)
    #: Breakpoints whose prefix is shorter than this many tokens are not cached (the real API
    #: needs 1024 or 2048 depending on the model; 0 keeps small test prompts cacheable).
    cache_min_tokens: int = 0
    latency: float = 0.0
    latency_between_events: float = 0.0
    cache: PromptCache = field(default_factory=PromptCache)
    texts: DocumentTexts = field(default_factory=DocumentTexts)
    _scripts: list[_Script] = field(default_factory=list)
    _stream_errors: list[_StreamError] = field(default_factory=list)
    _clock_offset: float = 0.0

    @classmethod
    def of(cls, fake: FakeAnthropic) -> FakeMessages:
        with fake._lock:
            existing = fake.extensions.get("messages")
            if isinstance(existing, FakeMessages):
                return existing
            created = cls(fake)
            fake.extensions["messages"] = created
            return created

    # ---- test controls ------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the deterministic model: no scripts, delays, stream errors or cache."""
        with self.fake._lock:
            self.cache_min_tokens = 0
            self.latency = 0.0
            self.latency_between_events = 0.0
            self.cache.entries.clear()
            self.texts.clear()
            self._scripts.clear()
            self._stream_errors.clear()
            self._clock_offset = 0.0

    def script_reply(
        self,
        content: Sequence[Mapping[str, Any]],
        *,
        stop_reason: str = "end_turn",
        times: int | None = 1,
    ) -> None:
        """Answer the next ``times`` Messages requests (``None``: all of them) with exactly
        these content blocks, in response JSON shape, e.g. ``{"type": "text", "text": ...,
        "citations": [{"type": "char_location", ...}]}``. Requests are still validated and
        usage is still computed. Scripts queue in the order they were added."""
        blocks = [dict(block) for block in content]
        _CONTENT.validate_python(blocks)  # a malformed script fails in the test, not the SDK
        json.dumps(blocks)
        with self.fake._lock:
            self._scripts.append(_Script(blocks, stop_reason, times))

    def set_latency(self, seconds: float, *, between_events: float = 0.0) -> None:
        """Wait ``seconds`` before answering (before the headers of a stream) and
        ``between_events`` between SSE events."""
        with self.fake._lock:
            self.latency = seconds
            self.latency_between_events = between_events

    def stream_error_after(
        self, n_events: int, error_type: str = "overloaded_error", *, message: str | None = None
    ) -> None:
        """Make the next stream send ``event: error`` after ``n_events`` events (``ping``
        included; 0: before ``message_start``; more than the stream has: after its last event)
        and end there, with status 200 already sent. The SDK raises ``APIStatusError`` with
        ``status_code == 200`` and does not retry."""
        text = message or ("Overloaded" if error_type == "overloaded_error" else error_type)
        with self.fake._lock:
            self._stream_errors.append(_StreamError(n_events, error_type, text))

    def advance_clock(self, seconds: float) -> None:
        """Move the prompt cache's clock forward (5 minutes expires the default entries)."""
        with self.fake._lock:
            self._clock_offset += seconds

    def bodies(self, path: str = "/v1/messages") -> list[Any]:
        """The JSON bodies of the POSTs to ``path``, oldest first."""
        return [r.json for r in self.fake.requests_to("POST", path)]

    # ---- used by the endpoints ------------------------------------------------------------

    def _now(self) -> float:
        return time.monotonic() + self._clock_offset

    def _take_script(self, generation: int) -> _Script | None:
        with self.fake._lock:
            if generation != self.fake.generation or not self._scripts:
                return None
            script = self._scripts[0]
            if script.remaining is not None:
                script.remaining -= 1
                if script.remaining <= 0:
                    self._scripts.pop(0)
            return script

    def _take_stream_error(self, generation: int) -> _StreamError | None:
        with self.fake._lock:
            if generation != self.fake.generation or not self._stream_errors:
                return None
            return self._stream_errors.pop(0)

    def _account(self, model: str, segments: Sequence[Segment], generation: int) -> CacheUsage:
        with self.fake._lock:
            return self.cache.account(
                model,
                segments,
                now=self._now(),
                min_tokens=self.cache_min_tokens,
                store=generation == self.fake.generation,
            )


# --------------------------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    body: dict[str, Any]
    documents: list[Document]


def _json_object(call: Call) -> dict[str, Any]:
    body = call.recorded.json
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object")
    return body


def check_request(
    fake: FakeAnthropic,
    texts: DocumentTexts,
    request: Request,
    call: Call,
    kind: Literal["create", "stream", "count"],
) -> Checked:
    """Every check of the module docstring, in its order; the documents resolved to text."""
    version = request.headers.get("anthropic-version", NEW_VERSION)
    body = _without_sampling(_json_object(call), version)
    validate_schema(kind, body)
    _check_turns(body)
    _check_version_traps(body, version)
    _check_citations(body)
    _check_tools(body)
    _check_cache_controls(body)
    return Checked(body, texts.resolve(fake, body))


def _message(state: FakeMessages, checked: Checked, generation: int) -> dict[str, Any]:
    body, documents = checked.body, checked.documents
    script = state._take_script(generation)
    tool = forced_tool(body)
    if script is not None:
        content, stop_reason = [dict(b) for b in script.content], script.stop_reason
    elif tool is not None:
        call = {"type": "tool_use", "id": _random_id("toolu_"), "name": tool["name"]}
        content, stop_reason = [{**call, "input": schema_example(tool["input_schema"])}], "tool_use"
    else:
        answer = compose_answer(documents, question_of(body), citations=citations_enabled(body))
        content, cut = truncate(answer, body["max_tokens"])
        stop_reason = "max_tokens" if cut else "end_turn"
    usage = state._account(body["model"], prompt_segments(body, documents), generation)
    return {
        "id": _random_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            **usage.to_json(),
            "output_tokens": output_tokens_of(content) if content else 0,
            "service_tier": "standard",
        },
    }


async def _events(
    state: FakeMessages, message: dict[str, Any], failure: _StreamError | None, request_id: str
) -> AsyncIterator[bytes]:
    events = stream_events(message)
    finished = False
    try:
        for sent, (event, data) in enumerate(events):
            if failure is not None and sent == failure.after:
                break
            if sent and state.latency_between_events > 0:
                await asyncio.sleep(state.latency_between_events)
            yield sse(event, data)
        if failure is not None:  # after ``n_events``, or after the last event if fewer
            error = {"type": failure.error_type, "message": failure.message}
            yield sse("error", {"type": "error", "error": error, "request_id": request_id})
        finished = True
    finally:
        if not finished:  # the client hung up mid-stream (the server cancelled the stream)
            state.fake._count_disconnect()


def messages_routes(fake: FakeAnthropic) -> list[BaseRoute]:
    """``POST /v1/messages`` and ``POST /v1/messages/count_tokens``."""
    state = FakeMessages.of(fake)

    async def create(request: Request, call: Call) -> Response:
        streaming = (
            isinstance(call.recorded.json, dict) and call.recorded.json.get("stream") is True
        )
        checked = check_request(
            fake, state.texts, request, call, "stream" if streaming else "create"
        )
        if state.latency > 0:
            await asyncio.sleep(state.latency)
        message = _message(state, checked, call.generation)
        if not streaming:
            return JSONResponse(message)
        failure = state._take_stream_error(call.generation)
        return StreamingResponse(
            _events(state, message, failure, call.request_id),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )

    async def count_tokens(request: Request, call: Call) -> Response:
        checked = check_request(fake, state.texts, request, call, "count")
        return JSONResponse({"input_tokens": input_tokens_of(checked.body, checked.documents)})

    return [
        api_route(fake, "/v1/messages", create, ["POST"], max_body_bytes=MAX_REQUEST_BYTES),
        api_route(
            fake,
            "/v1/messages/count_tokens",
            count_tokens,
            ["POST"],
            max_body_bytes=MAX_REQUEST_BYTES,
        ),
    ]
