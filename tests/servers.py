"""Real servers for tests that need a real socket: the app under uvicorn in a thread, and a
plain static file server (a second origin for pages that embed the widget)."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening_socket(port: int | None) -> socket.socket:
    # IPPROTO_TCP so asyncio sets TCP_NODELAY (see tests/fakes/anthropic_server.py).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port or 0))
    return sock


@contextmanager
def serve_app(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yields ``http://127.0.0.1:PORT``
    once ``/healthz`` answers and stops the server (running the lifespan's exit) afterwards."""
    config = uvicorn.Config(
        app,
        lifespan="on",
        # h11, no websockets and plain asyncio: no optional C extensions, and none of the
        # deprecation warnings websockets raises on import (pytest turns warnings into errors).
        http="h11",
        ws="none",
        loop="asyncio",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    sock = _listening_socket(port)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="kpool-app", daemon=True
    )
    thread.start()
    try:
        _wait_until_healthy(base, server, thread)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("the app server did not stop")


def _wait_until_healthy(base: str, server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("the app server stopped while starting (see the log above)")
        if server.started:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
        time.sleep(0.02)
    raise RuntimeError(f"the app server at {base} did not answer /healthz")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_static(directory: Path, port: int | None = None) -> Iterator[str]:
    """Serve the files under ``directory`` on 127.0.0.1 (a second origin, e.g. a page that
    embeds the widget); yields ``http://127.0.0.1:PORT``."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port or 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="static-files", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
