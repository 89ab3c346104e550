"""One forced tool call to a small Claude model, for the optional helpers around routing
(reranking, ``service.rerank``; describing documents, ``service.expand``).

The model answers through a tool the request forces, so its reply is data, never prose. These
helpers are improvements, never dependencies: the client should not retry by itself
(``max_retries=0``), since the SDK would wait as long as a 429's ``retry-after`` says; a
connection error, a timeout, a 429 or a 5xx is tried ``attempts`` times in all, ``RETRY_DELAY``
apart, and any other failure is reported at once as ``ToolCallFailed``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from service.answer import Usage

if TYPE_CHECKING:  # the SDK takes a second to import: settings import the callers
    import anthropic
    from anthropic.types import Message

#: Seconds between two tries of a request that met a passing failure.
RETRY_DELAY = 0.5


class ToolCallFailed(Exception):
    """No usable tool call came back. ``usage``: what a reply cost all the same; ``passing``:
    whether the failure may pass if tried again later (an outage, not a bad reply);
    ``status``: the HTTP status of an error reply."""

    def __init__(
        self,
        message: str,
        usage: Usage | None = None,
        *,
        passing: bool = False,
        status: int | None = None,
    ):
        super().__init__(message)
        self.usage = usage or Usage()
        self.passing = passing
        self.status = status


def forced_request(
    *, model: str, max_tokens: int, system: str, tool: dict[str, Any], content: str
) -> dict[str, Any]:
    """A Messages request body of one user turn whose reply must be one call of ``tool``."""
    return {
        "model": model,
        "max_tokens": max_tokens,
        "system": system,
        "tools": [tool],
        "tool_choice": {"type": "tool", "name": tool["name"], "disable_parallel_tool_use": True},
        "messages": [{"role": "user", "content": content}],
    }


def forced_call(
    client: anthropic.Anthropic, body: dict[str, Any], *, attempts: int, what: str
) -> tuple[object, Usage]:
    """Send ``body``, which forces one tool, and return that tool's input and the usage.
    ``what`` names the request in errors ("the reranking request failed")."""
    message = _send(client, body, attempts=attempts, what=what)
    name = body["tool_choice"]["name"]
    try:
        usage = Usage(
            input_tokens=message.usage.input_tokens,
            output_tokens=message.usage.output_tokens,
            cache_creation_input_tokens=message.usage.cache_creation_input_tokens or 0,
            cache_read_input_tokens=message.usage.cache_read_input_tokens or 0,
        )
        blocks = [b for b in message.content if b.type == "tool_use" and b.name == name]
    except (AttributeError, TypeError, ValueError) as exc:  # not a Message (a proxy's page)
        raise ToolCallFailed(
            f"the reply is not a message ({type(exc).__name__})", passing=True
        ) from exc
    if not blocks:
        raise ToolCallFailed(f"the model did not call {name} (stop: {message.stop_reason})", usage)
    return blocks[0].input, usage


def _send(
    client: anthropic.Anthropic, body: dict[str, Any], *, attempts: int, what: str
) -> Message:
    import anthropic
    import httpx2

    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        try:
            return client.messages.create(**body)
        except (anthropic.APIError, httpx2.HTTPError) as exc:
            status = exc.status_code if isinstance(exc, anthropic.APIStatusError) else None
            if attempt == attempts or not _passing(exc):
                # A failure with no HTTP status (a connection, a malformed response from a
                # proxy) says nothing against the request itself: it may pass later.
                passing = status is None or _passing(exc)
                detail = type(exc).__name__ + ("" if status is None else f", HTTP {status}")
                raise ToolCallFailed(
                    f"the {what} request failed ({detail})", passing=passing, status=status
                ) from exc
            time.sleep(RETRY_DELAY)
    raise AssertionError("unreachable")


def _passing(exc: Exception) -> bool:
    """Whether a failure may pass if tried again shortly."""
    import anthropic
    import httpx2

    if isinstance(exc, anthropic.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError)


def quoted(text: str) -> str:
    """Text to quote inside a prompt's tags: it cannot close or open them."""
    return text.replace("<", "‹").replace(">", "›")
