"""`kpool serve` as a user runs it: a real process on a real port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

KPOOL = [sys.executable, "-m", "service.cli"]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.communicate()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("server did not come up")


def stop_cleanly(process: subprocess.Popen[str]) -> None:
    """Ctrl-C, as a user stops it: the server must exit without a traceback."""
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert "Traceback" not in stderr


@pytest.fixture
def served(tmp_path: Path, sample_home: Path) -> Iterator[str]:
    home = tmp_path / "home"
    shutil.copytree(sample_home, home)
    port = free_port()
    env = {**os.environ, "KPOOL_HOME": str(home), "KPOOL_PORT": str(port)}
    env.pop("ANTHROPIC_API_KEY", None)
    process = subprocess.Popen(
        [*KPOOL, "serve"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/healthz", process)
        yield base
    finally:
        stop_cleanly(process)


@pytest.mark.slow
def test_served_pool_routes_over_http(served: str) -> None:
    assert httpx.get(f"{served}/readyz").json()["status"] == "ok"
    response = httpx.post(
        f"{served}/v1/route", json={"question": "Can I work from home three days a week?"}
    )
    assert response.status_code == 200
    assert response.json()["documents"][0]["title"] == "Remote and Hybrid Working Policy"


def test_serve_refuses_a_pool_indexed_with_other_parameters(
    tmp_path: Path, sample_home: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(sample_home, home)
    env = {**os.environ, "KPOOL_HOME": str(home), "KPOOL_BM25_B": "0.5"}
    done = subprocess.run(
        [*KPOOL, "serve", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "bm25.b: pool has 0.75, configured 0.5" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_default_server_routes_an_upload_by_meaning_once_it_has_vectors(
    tmp_path: Path,
) -> None:
    """Semantic routing as shipped (the suite otherwise switches it off): an uploaded policy
    routes at once, and by meaning once the server's background thread gave it vectors."""
    from tests.indexing.test_semantic import DOCUMENTS, PARAPHRASE, model_installed

    if not model_installed():
        pytest.skip("the embedding model is not installed (make semantic)")
    port = free_port()
    env = {**os.environ, "KPOOL_HOME": str(tmp_path / "home"), "KPOOL_PORT": str(port)}
    env["KPOOL_REFRESH_SECONDS"] = "0.1"
    for name in ("KPOOL_SEMANTIC", "ANTHROPIC_API_KEY"):
        env.pop(name, None)
    process = subprocess.Popen(
        [*KPOOL, "serve"], cwd=ROOT, env=env, text=True, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/healthz", process)
        for title, text in DOCUMENTS.items():
            files = {"file": (f"{title}.txt", text.encode(), "text/plain")}
            upload = httpx.post(f"{base}/v1/documents", files=files, data={"title": title})
            assert upload.status_code == 201, upload.text
        deadline = time.monotonic() + 120  # a guard against a hang, not a timing
        while httpx.get(f"{base}/readyz").json()["awaiting_vectors"]:
            assert time.monotonic() < deadline, "the server never computed the vectors"
            time.sleep(0.1)

        def top() -> str:
            body = httpx.post(f"{base}/v1/route", json={"question": PARAPHRASE}).json()
            return str(body["documents"][0]["title"])

        while top() != "Family and medical leave":  # the vectors reach the index next refresh
            assert time.monotonic() < deadline, "routing never used the vectors"
            time.sleep(0.1)
    finally:
        stop_cleanly(process)
