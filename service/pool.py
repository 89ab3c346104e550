"""Opening the pool the settings describe: the one place a Files backend is chosen."""

from __future__ import annotations

from indexing.files import FilesBackend, LocalFilesBackend
from indexing.pool import Pool
from service.settings import Settings


def make_backend(settings: Settings) -> FilesBackend:
    """The local store by default; the Files API when an API key is configured."""
    if settings.backend_name == "local":
        return LocalFilesBackend(settings.home / "files")
    # Imported here: the SDK takes seconds to import, and the local default never needs it.
    from indexing.anthropic_client import make_client
    from indexing.anthropic_files import AnthropicFilesBackend

    assert settings.anthropic_api_key is not None  # guaranteed by Settings validation
    client = make_client(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        timeout=settings.anthropic_timeout,
        max_retries=settings.anthropic_max_retries,
    )
    return AnthropicFilesBackend(client)


def open_pool(settings: Settings, *, load_index: bool = True) -> Pool:
    return Pool.open(settings.pool_config(), make_backend(settings), load_index=load_index)
