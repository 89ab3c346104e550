"""Files backends: where the pool's documents live so Messages requests can name them by id.

The protocol lives here with the embedded default, ``LocalFilesBackend``, used when no API key
is configured: it mimics the Files API's file object (``file_`` ids, ``downloadable=False``) and
keeps the bytes on disk. ``indexing.anthropic_files.AnthropicFilesBackend`` is the real Files
API; it lives apart so the local default never pays for importing the SDK.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import string
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from indexing.errors import (
    ConfigurationError,
    FileTooLarge,
    RemoteFileMissing,
    StoreUnavailable,
    UpstreamUnavailable,
)

log = logging.getLogger(__name__)

#: The Files API's per-file limit (500 MB); the local store enforces the same one.
MAX_FILE_BYTES = 500 * 1024 * 1024
#: The GA ``ids[]`` filter takes at most this many ids per call.
IDS_PER_LIST_CALL = 100


@dataclass(frozen=True)
class RemoteFile:
    """A stored file as the Files API describes it."""

    id: str
    filename: str
    mime_type: str
    size_bytes: int
    created_at: datetime  # timezone-aware UTC
    downloadable: bool = False


class FilesBackend(Protocol):
    """Upload, look up and delete the files that Messages requests refer to by id."""

    name: str  # "local" | "anthropic"

    def upload(self, *, filename: str, data: bytes, mime_type: str) -> RemoteFile: ...

    def retrieve(self, file_id: str) -> RemoteFile:
        """The file's metadata; ``RemoteFileMissing`` if the backend no longer has it."""
        ...

    def delete(self, file_id: str) -> bool:
        """True if the file was deleted, False if it was already gone."""
        ...

    def list(self) -> Iterator[RemoteFile]:
        """Every file, across all pages."""
        ...

    def existing(self, file_ids: Sequence[str]) -> set[str]:
        """Which of ``file_ids`` the backend still has."""
        ...

    def check(self) -> None:
        """Cheap reachability probe; raises an ``UpstreamError`` subclass when unusable."""
        ...


def as_utc(moment: datetime) -> datetime:
    """The same instant as an aware UTC datetime (naive values are taken to be UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _base_filename(filename: str) -> str:
    """Keep the last path component, as the Files API does; empty names become ``unnamed``."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return base or "unnamed"


# --------------------------------------------------------------------------------------------
# Local backend
# --------------------------------------------------------------------------------------------

_ID_ALPHABET = string.ascii_letters + string.digits
_LOCAL_ID = re.compile(r"^file_[A-Za-z0-9]{24}$")


def new_local_file_id() -> str:
    """``file_`` followed by 24 random alphanumerics, like the Files API's ids."""
    return "file_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either nothing or the whole file."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _local_metadata(file: RemoteFile) -> dict[str, Any]:
    """The JSON stored beside the bytes: the Files API's file object."""
    return {
        "id": file.id,
        "type": "file",
        "filename": file.filename,
        "mime_type": file.mime_type,
        "size_bytes": file.size_bytes,
        "created_at": file.created_at.isoformat(),
        "downloadable": file.downloadable,
        "expires_at": None,
    }


def _remote_file_from_json(raw: dict[str, Any]) -> RemoteFile:
    return RemoteFile(
        id=str(raw["id"]),
        filename=str(raw["filename"]),
        mime_type=str(raw["mime_type"]),
        size_bytes=int(raw["size_bytes"]),
        created_at=as_utc(datetime.fromisoformat(str(raw["created_at"]))),
        downloadable=bool(raw.get("downloadable", False)),
    )


class LocalFilesBackend:
    """Files kept under ``root`` as ``<id>.bin`` plus ``<id>.json`` (the file object).

    The bytes are written first and the metadata last, each atomically, so a crash can leave at
    most an unlisted ``.bin``; a file is visible exactly when its ``.json`` exists. Listing is in
    creation order. Safe to use from several threads.
    """

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot keep local files in {self.root}: {exc.strerror} (check KPOOL_HOME)"
            ) from None
        self._lock = threading.Lock()
        self._last_created = datetime.min.replace(tzinfo=UTC)

    def _paths(self, file_id: str) -> tuple[Path, Path] | None:
        """``(bytes, metadata)`` paths, or None for an id this store could never have made."""
        if not _LOCAL_ID.match(file_id):
            return None
        return self.root / f"{file_id}.bin", self.root / f"{file_id}.json"

    def _next_created_at(self) -> datetime:
        """Now, nudged forward if needed so creation order is strict within this process."""
        with self._lock:
            now = datetime.now(UTC)
            if now <= self._last_created:
                now = self._last_created + timedelta(microseconds=1)
            self._last_created = now
            return now

    def upload(self, *, filename: str, data: bytes, mime_type: str) -> RemoteFile:
        if len(data) > MAX_FILE_BYTES:
            raise FileTooLarge(
                f"{filename!r} is {len(data)} bytes; the files store takes at most "
                f"{MAX_FILE_BYTES} bytes per file."
            )
        file = RemoteFile(
            id=new_local_file_id(),
            filename=_base_filename(filename),
            mime_type=mime_type or "application/octet-stream",
            size_bytes=len(data),
            created_at=self._next_created_at(),
        )
        bin_path, json_path = self.root / f"{file.id}.bin", self.root / f"{file.id}.json"
        try:
            _write_atomic(bin_path, data)
            _write_atomic(json_path, json.dumps(_local_metadata(file)).encode("utf-8"))
        except OSError as exc:  # full, read-only, not ours: the store, not the file, is at fault
            with contextlib.suppress(OSError):
                bin_path.unlink(missing_ok=True)
            log.error("the local files store at %s cannot be written: %s", self.root, exc)
            raise StoreUnavailable(
                f"the server's files store cannot be written ({exc.strerror}); try again later"
            ) from None
        return file

    def _read(self, json_path: Path) -> RemoteFile | None:
        try:
            raw = json.loads(json_path.read_bytes())
            return _remote_file_from_json(raw)
        except FileNotFoundError:  # deleted between listing and reading
            return None
        except OSError as exc:
            log.error("cannot read local file metadata %s: %s", json_path, exc)
            raise StoreUnavailable(
                f"the server's files store cannot be read ({exc.strerror})"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            # Damaged on disk: not a file this store can vouch for, but no reason to stop
            # listing the others.
            log.warning("skipping damaged local file metadata %s: %s", json_path, exc)
            return None

    def retrieve(self, file_id: str) -> RemoteFile:
        paths = self._paths(file_id)
        file = self._read(paths[1]) if paths else None
        if file is None:
            raise RemoteFileMissing(
                f"File {file_id!r} is not in the local files store at {self.root}.",
                file_id=file_id,
            )
        return file

    def delete(self, file_id: str) -> bool:
        paths = self._paths(file_id)
        if paths is None:
            return False
        bin_path, json_path = paths
        # Metadata first: once it is gone the file is no longer listed or retrievable.
        try:
            json_path.unlink()
        except FileNotFoundError:
            return False
        bin_path.unlink(missing_ok=True)
        return True

    def list(self) -> Iterator[RemoteFile]:
        files = [f for p in self.root.glob("file_*.json") if (f := self._read(p)) is not None]
        files.sort(key=lambda f: (f.created_at, f.id))
        return iter(files)

    def existing(self, file_ids: Sequence[str]) -> set[str]:
        return {
            file_id
            for file_id in set(file_ids)
            if (paths := self._paths(file_id)) is not None and paths[1].exists()
        }

    def check(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK | os.X_OK):
            raise UpstreamUnavailable(
                f"The local files store at {self.root} is missing or not writable."
            )
