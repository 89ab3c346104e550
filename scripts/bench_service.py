"""Service benchmark: requests/s and latency of the HTTP API on loopback, per pool size.

For each size, a pool in a temporary directory is filled with the first N documents of
``bench_routing``'s synthetic corpus (summaries written in bulk, plus a short text per document
so that answering works), and measured through real processes:

* a fake Anthropic API (``tests/fakes``) in a child process, holding one file per document and
  answering Messages at once;
* ``python -m service.cli serve`` in its own process, pointed at the fake with its key (answers
  in "claude" mode, through the real SDK), then again without a key (extractive answers);
* a closed-loop client here: C asyncio workers, each with a keep-alive ``httpx.AsyncClient``,
  each endpoint in turn for S seconds after a short warm-up, questions drawn from the corpus.

Only 200 responses count; anything else is an error. The target: ``POST /v1/route`` at 10,000
documents keeps at least half the throughput of ``GET /healthz`` (same app, same run).

By default the service routes by words only (``KPOOL_SEMANTIC=0``). With ``--semantic`` it
routes by meaning too, as it does by default: every passage carries a random unit vector (as in
``bench_routing.py --semantic``: time depends only on the shapes) and each question gets its
vector from the packaged model. Every request then asks a question the service has not seen (a
number is appended), so the service's cache of question vectors never answers for it; only
``/healthz`` and ``/v1/route`` are measured.

Example: python scripts/bench_service.py --docs 1000,10000 --seconds 8 --concurrency 8 [--json]
         python scripts/bench_service.py --docs 10000 --semantic
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import _bench_common as common  # also puts the repository root on sys.path
import bench_routing
import httpx
import numpy as np
from sqlalchemy import bindparam, insert, update
from sqlmodel import SQLModel

from indexing.analyzer import Analyzer
from indexing.files import LocalFilesBackend
from indexing.models import Content
from indexing.pool import Pool, PoolConfig

DEFAULT_SIZES = (1_000, 10_000)
TARGET_SIZE = 10_000
TARGET_RATIO = 0.5  # /v1/route rps over /healthz rps
QUESTIONS = 500  # drawn from the corpus; those that route to no document are dropped
CONTENT_TERMS = 200  # a document's stored text: its first terms, in sentences of ...
SENTENCE_TERMS = 12  # ... this many words
WARMUP_S = 1.0
REQUEST_TIMEOUT_S = 30.0
MAX_REQUESTS_PER_WORKER = 1_000_000  # a bound on each worker's loop besides its deadline
SERVER_START_TIMEOUT_S = 180.0
SERVER_STOP_TIMEOUT_S = 15.0
FAKE_TIMEOUT_S = 120.0  # the fake's answers over the pipe (seeding 10,000 files is quick)


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    body: Callable[[str], dict[str, Any] | None]


HEALTHZ = Endpoint("GET /healthz", "GET", "/healthz", lambda q: None)
ROUTE = Endpoint("POST /v1/route", "POST", "/v1/route", lambda q: {"question": q})
ASK_CLAUDE = Endpoint("POST /v1/ask (claude)", "POST", "/v1/ask", lambda q: {"question": q})
ASK_EXTRACTIVE = Endpoint("POST /v1/ask (extractive)", "POST", "/v1/ask", lambda q: {"question": q})


@dataclass
class Row:
    docs: int
    endpoint: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: CPU used during the timed window, in % of one core (Linux /proc), for the table only.
    cpu: dict[str, float | None] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "docs": self.docs,
            "endpoint": self.endpoint,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "errors": self.errors,
        }


# ------------------------------------------------------------------------------- the pool


def content_text(corpus: bench_routing.Corpus, i: int) -> str:
    """Document ``i``'s stored text: its first terms, as short sentences."""
    words = [corpus.words[t] for t in corpus.doc_tokens(i)[:CONTENT_TERMS].tolist()]
    sentences = (
        " ".join(words[s : s + SENTENCE_TERMS]) + "." for s in range(0, len(words), SENTENCE_TERMS)
    )
    return " ".join(sentences)


def build_pool(home: Path, corpus: bench_routing.Corpus, n: int, file_ids: list[str]) -> None:
    """Documents 0..n-1 with their summaries (as ``bench_routing`` writes them, with vectors if
    the corpus has them), their file ids replaced by the fake's, and a Content row each."""
    config = PoolConfig(data_dir=home, semantic=bool(corpus.dimensions))
    pool = Pool.open(config, LocalFilesBackend(home / "files"), load_index=False)
    try:
        bench_routing.write_store(pool.store, corpus, n)
        docs, sums = SQLModel.metadata.tables["documents"], SQLModel.metadata.tables["summaries"]
        remap = [{"doc": bench_routing.document_id(i), "new": file_ids[i]} for i in range(n)]
        with pool.store.engine.begin() as connection:
            connection.execute(
                update(docs).where(docs.c.id == bindparam("doc")).values(file_id=bindparam("new")),
                remap,
            )
            connection.execute(
                update(sums)
                .where(sums.c.document_id == bindparam("doc"))
                .values(file_id=bindparam("new")),
                remap,
            )
            for start in range(0, n, 2_000):
                rows = []
                for i in range(start, min(start + 2_000, n)):
                    text = content_text(corpus, i)
                    rows.append(
                        {
                            "document_id": bench_routing.document_id(i),
                            "content_hash": f"{i:064x}",
                            "original": text.encode(),
                            "text": text,
                            "page_spans": None,
                        }
                    )
                connection.execute(insert(Content), rows)
    finally:
        pool.close()


# ------------------------------------------------------------------ the fake, in a child


def _serve_fake(conn: Connection) -> None:
    """Child process: the fake Anthropic API; seeds the files it is sent, answers at once."""
    from tests.fakes.anthropic_server import FakeAnthropic, FakeAnthropicServer

    fake = FakeAnthropic()
    with FakeAnthropicServer(fake):
        conn.send((fake.base_url, fake.api_key))
        files: list[tuple[str, bytes]] = conn.recv()
        ids = [fake.put_file(filename=n, data=d, mime_type="text/plain").id for n, d in files]
        conn.send(ids)
        conn.recv()  # block until the parent is done
        messages = len(fake.requests_to("POST", "/v1/messages"))
        fake.requests.clear()
        conn.send((messages, [repr(e) for e in fake.internal_errors]))


@dataclass
class FakeApi:
    process: Any
    conn: Connection
    base_url: str
    api_key: str

    def recv(self) -> Any:
        if not self.conn.poll(FAKE_TIMEOUT_S):
            raise RuntimeError("the fake Anthropic API did not answer in time")
        return self.conn.recv()


@contextlib.contextmanager
def fake_api() -> Iterator[FakeApi]:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve_fake, args=(theirs,), daemon=True)
    process.start()
    try:
        fake = FakeApi(process, ours, "", "")
        fake.base_url, fake.api_key = fake.recv()
        yield fake
    finally:
        process.terminate()
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)


# ----------------------------------------------------------------- the service, in a child


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def service(
    home: Path, fake: FakeApi | None, *, semantic: bool = False
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``kpool serve`` on a free loopback port: answering through ``fake`` when given,
    extractively otherwise; routing by meaning too with ``semantic``. Yields its base URL and
    process; always stops it."""
    # Nothing from this shell's KPOOL_*/ANTHROPIC_* (a real key, another database) leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KPOOL_", "ANTHROPIC_"))}
    env["KPOOL_HOME"] = str(home)
    # As the pool was built: by words only unless ``--semantic``.
    env["KPOOL_SEMANTIC"] = "1" if semantic else "0"
    if fake is not None:
        env["ANTHROPIC_API_KEY"] = fake.api_key
        env["KPOOL_ANTHROPIC_BASE_URL"] = fake.base_url
    port = free_port()
    log_path = home / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
            cwd=common.ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base_url, process, log_path)
        yield base_url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)


def _wait_ready(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    with httpx.Client(base_url=base_url, timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"kpool serve exited with {process.returncode}:\n{tail}")
            with contextlib.suppress(httpx.TransportError):
                if client.get("/healthz").status_code == 200:
                    return
            time.sleep(0.1)
    raise RuntimeError(f"kpool serve did not answer /healthz in {SERVER_START_TIMEOUT_S:.0f} s")


def routable(base_url: str, questions: Sequence[str]) -> list[str]:
    """The questions that route to at least one document (an ask without one makes no model
    call); asking each once also warms the service up."""
    kept = []
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:
        for question in questions:
            response = client.post("/v1/route", json={"question": question})
            response.raise_for_status()
            if response.json()["documents"]:
                kept.append(question)
    return kept


# --------------------------------------------------------------------------------- load


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    cpu: dict[str, float | None] = field(default_factory=dict)


async def _worker(
    base_url: str,
    endpoint: Endpoint,
    questions: Sequence[str],
    first: int,
    stride: int,
    deadline: float,
    sample: Sample,
    fresh: bool,
) -> None:
    # A client (one keep-alive connection) per worker: one pool shared by all workers costs
    # the client more CPU per request as the connections grow (httpcore scans its pool).
    i = first
    async with httpx.AsyncClient(
        base_url=base_url,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        timeout=REQUEST_TIMEOUT_S,
        trust_env=False,
    ) as client:
        for _ in range(MAX_REQUESTS_PER_WORKER):
            if time.perf_counter() >= deadline:
                return
            question = questions[i % len(questions)]
            body = endpoint.body(f"{question} {i}" if fresh else question)
            i += stride
            start = time.perf_counter()
            try:
                response = await client.request(endpoint.method, endpoint.path, json=body)
            except httpx.HTTPError as exc:
                sample.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.01)  # a refused connection must not become a busy loop
                continue
            if response.status_code == 200:
                sample.latencies.append(time.perf_counter() - start)
            else:
                sample.errors[f"HTTP {response.status_code}"] += 1


async def _load(
    base_url: str,
    endpoint: Endpoint,
    questions: Sequence[str],
    seconds: float,
    concurrency: int,
    fresh: bool,
    first: int = 0,
) -> Sample:
    sample = Sample()
    start = time.perf_counter()
    deadline = start + seconds
    workers = [
        _worker(base_url, endpoint, questions, first + w, concurrency, deadline, sample, fresh)
        for w in range(concurrency)
    ]
    await asyncio.wait_for(asyncio.gather(*workers), seconds + REQUEST_TIMEOUT_S + 5)
    sample.seconds = time.perf_counter() - start
    return sample


def load(
    base_url: str,
    endpoint: Endpoint,
    questions: Sequence[str],
    seconds: float,
    concurrency: int,
    pids: dict[str, int],
    fresh: bool = False,
) -> Sample:
    """A warm-up, then ``seconds`` of closed-loop load; with the CPU each process used.
    ``fresh``: every request's question is new (a number appended, never repeated)."""
    warmup = min(WARMUP_S, seconds)
    # The warm-up's numbers start where the timed window's never reach.
    asyncio.run(_load(base_url, endpoint, questions, warmup, concurrency, fresh, first=10**9))
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    sample = asyncio.run(_load(base_url, endpoint, questions, seconds, concurrency, fresh))
    for name, pid in pids.items():
        start, end = before[name], cpu_seconds(pid)
        used = None if start is None or end is None else end - start
        sample.cpu[name] = None if used is None else 100 * used / sample.seconds
    return sample


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process so far (Linux ``/proc``), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def row_of(n: int, endpoint: Endpoint, sample: Sample) -> Row:
    latencies = np.asarray(sample.latencies) * 1e3
    if sample.errors:
        common.progress(f"  {endpoint.name}: errors {dict(sample.errors)}")
    return Row(
        docs=n,
        endpoint=endpoint.name,
        rps=len(latencies) / sample.seconds if sample.seconds else float("nan"),
        p50_ms=float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
        p99_ms=float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
        errors=sum(sample.errors.values()),
        cpu=sample.cpu,
    )


# ------------------------------------------------------------------------------ per size


def measure(
    corpus: bench_routing.Corpus, n: int, seconds: float, concurrency: int, extractive: bool
) -> list[Row]:
    semantic = bool(corpus.dimensions)
    rows: list[Row] = []
    questions = [q.text for q in corpus.questions]
    with tempfile.TemporaryDirectory(prefix="kpool-bench-service-") as tmp, fake_api() as fake:
        home = Path(tmp)
        common.progress(f"[{n:,}] seeding {n:,} files in the fake Files API ...")
        fake.conn.send([(f"{i}.txt", content_text(corpus, i).encode()) for i in range(n)])
        file_ids: list[str] = fake.recv()
        common.progress(f"[{n:,}] writing {n:,} documents to SQLite ...")
        build_pool(home, corpus, n, file_ids)
        common.progress(f"[{n:,}] starting kpool serve (claude mode, fake API) ...")
        with service(home, fake, semantic=semantic) as (base_url, process):
            kept = routable(base_url, questions)
            common.progress(f"[{n:,}] {len(kept)} of {len(questions)} questions route somewhere")
            pids = {"client": os.getpid(), "service": process.pid, "fake": fake.process.pid}
            for endpoint in (HEALTHZ, ROUTE) if semantic else (HEALTHZ, ROUTE, ASK_CLAUDE):
                common.progress(f"[{n:,}] {endpoint.name}: {seconds:g} s x {concurrency} ...")
                sample = load(base_url, endpoint, kept, seconds, concurrency, pids, semantic)
                rows.append(row_of(n, endpoint, sample))
        fake.conn.send("done")
        messages, internal_errors = fake.recv()
        common.progress(f"[{n:,}] the fake answered {messages:,} Messages requests")
        if internal_errors:
            raise RuntimeError(f"the fake Anthropic API failed: {internal_errors[:3]}")
        if extractive and not semantic:
            common.progress(f"[{n:,}] restarting kpool serve without a key (extractive) ...")
            with service(home, None) as (base_url, process):
                pids = {"client": os.getpid(), "service": process.pid}
                common.progress(f"[{n:,}] {ASK_EXTRACTIVE.name}: {seconds:g} s ...")
                sample = load(base_url, ASK_EXTRACTIVE, kept, seconds, concurrency, pids)
                rows.append(row_of(n, ASK_EXTRACTIVE, sample))
    return rows


# ------------------------------------------------------------------------------- report


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def print_report(rows: list[Row], seconds: float, concurrency: int) -> None:
    print(
        f"kpool HTTP service on 127.0.0.1: closed loop, {concurrency} concurrent keep-alive "
        f"connections, {seconds:g} s per endpoint after a {min(WARMUP_S, seconds):g} s warm-up"
    )
    print(
        f"Machine: {cores()} CPU cores, shared by the load generator (one Python process), the "
        "service (one uvicorn process) and, for /v1/ask (claude), the fake Anthropic API: "
        "client and server compete for the same cores, so these are lower bounds; compare "
        "within a run. CPU columns: % of one core used during the window."
    )
    for n in sorted({r.docs for r in rows}):
        print()
        print(f"{n:,} documents")
        print(
            common.table(
                [
                    "endpoint",
                    "requests/s",
                    "p50 ms",
                    "p99 ms",
                    "errors",
                    "client CPU%",
                    "service CPU%",
                    "fake CPU%",
                ],
                [
                    [
                        r.endpoint,
                        r.rps,
                        r.p50_ms,
                        r.p99_ms,
                        r.errors,
                        r.cpu.get("client"),
                        r.cpu.get("service"),
                        r.cpu.get("fake"),
                    ]
                    for r in rows
                    if r.docs == n
                ],
            )
        )
    print()
    print_target(rows)
    busy = [r for r in rows if r.endpoint == HEALTHZ.name and (r.cpu.get("client") or 0) >= 90]
    if busy:
        print(
            f"  note: the load generator used >= 90% of a core during /healthz "
            f"({', '.join(f'{r.docs:,} docs' for r in busy)}): that figure is bounded by the "
            "client rather than the service, so the ratio above overstates the service's own."
        )


def print_target(rows: list[Row]) -> None:
    sizes = sorted({r.docs for r in rows})
    at = TARGET_SIZE if TARGET_SIZE in sizes else sizes[-1]
    by_name = {r.endpoint: r for r in rows if r.docs == at}
    route, healthz = by_name[ROUTE.name], by_name[HEALTHZ.name]
    ratio = route.rps / healthz.rps if healthz.rps else float("nan")
    where = f"{at:,} documents" + ("" if at == TARGET_SIZE else f" (target set at {TARGET_SIZE:,})")
    print(f"Target at {where}:")
    print(
        f"  {common.verdict(ratio >= TARGET_RATIO):>7}  /v1/route keeps >= {TARGET_RATIO:.0%} of "
        f"/healthz throughput: {ratio:.2f} ({route.rps:,.0f} vs {healthz.rps:,.0f} requests/s)"
    )


# ---------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--docs",
        type=bench_routing.parse_sizes,
        default=list(DEFAULT_SIZES),
        help="pool sizes, comma-separated (default: 1000,10000)",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per endpoint")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent connections")
    parser.add_argument(
        "--no-extractive", action="store_true", help="skip /v1/ask without an API key"
    )
    parser.add_argument(
        "--semantic", action="store_true", help="route by meaning too (needs `make semantic`)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON list of rows")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 600 or not 1 <= args.concurrency <= 256:
        parser.error("--seconds must be in (0, 600] and --concurrency in [1, 256]")
    common.progress(f"generating a synthetic corpus of {args.docs[-1]:,} documents ...")
    corpus = bench_routing.synthetic_corpus(args.docs[-1], QUESTIONS, Analyzer())
    if args.semantic:
        bench_routing.add_random_embeddings(corpus)
    rows = []
    for n in args.docs:
        rows += measure(corpus, n, args.seconds, args.concurrency, not args.no_extractive)
    if args.json:
        print(json.dumps([r.as_json() for r in rows]))
    else:
        print_report(rows, args.seconds, args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
