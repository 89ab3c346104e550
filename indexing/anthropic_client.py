"""The one place an Anthropic SDK client is built.

Everything that talks to Anthropic (Files backend, answerers) receives the client built here, so
the API version, retries and timeouts are decided once. The SDK's default API version
(``2026-10-21``, GA Files) is kept and no ``anthropic-beta`` header is sent: with the files beta
header the API answers list calls in the beta shape, which the GA paginator silently stops on
(``anthropic-api.md`` §7.10).
"""

from __future__ import annotations

import anthropic

from indexing.errors import ConfigurationError

#: Used when no base URL is given, so the SDK never falls back to ``ANTHROPIC_BASE_URL`` behind
#: the settings object's back.
DEFAULT_BASE_URL = "https://api.anthropic.com"


def make_client(
    *,
    api_key: str,
    base_url: str | None = None,
    timeout: float = 60.0,
    max_retries: int = 3,
) -> anthropic.Anthropic:
    """Build the SDK client used for the Files and Messages APIs.

    ``timeout`` is in seconds per attempt; ``max_retries`` is how many times the SDK itself
    retries connection errors, 408, 409, 429 and 5xx (honouring ``retry-after``) before the
    error reaches us.
    """
    if not api_key or not api_key.strip():
        raise ConfigurationError(
            "No Anthropic API key is configured: set ANTHROPIC_API_KEY, or run without one to use "
            "the local files store."
        )
    if timeout <= 0:
        raise ConfigurationError(f"The Anthropic timeout must be positive, got {timeout!r} s.")
    if max_retries < 0:
        raise ConfigurationError(f"max_retries must be 0 or more, got {max_retries!r}.")
    # An explicit api_key also stops the SDK from reading credentials from the environment or
    # from profile files on disk.
    return anthropic.Anthropic(
        api_key=api_key,
        base_url=base_url or DEFAULT_BASE_URL,
        timeout=timeout,
        max_retries=max_retries,
    )
