"""Bulk ingests that get killed: a launcher process driven by the crash tests in test_bulk.py.

Importing the SDK and the pool takes seconds, so this process imports once and forks one child
per job (it has no threads of its own, so forking is safe). The test kills the child with
SIGKILL from outside, or the child kills itself at a chosen step; then the test runs a normal
ingest and checks that the pool and the Files API have converged.

Protocol, one JSON object per line. The launcher prints ``{"ready": true}`` once. Each job read
from stdin::

    {"database_url": ..., "data_dir": ..., "corpus": ..., "base_url": ..., "api_key": ...,
     "concurrency": 3, "die": null | {"after_upload": N} | {"before_delete": true}}

is answered with ``{"pid": P}`` once the child runs and ``{"pid": P, "exit": C}`` when it has
ended (``C`` is the exit code, or minus the signal number). End of input ends the launcher.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from indexing.anthropic_client import make_client
from indexing.anthropic_files import AnthropicFilesBackend
from indexing.bulk import bulk_ingest
from indexing.files import FilesBackend, RemoteFile
from indexing.pool import Pool, PoolConfig


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class DyingBackend:
    """The real backend, killing the process at a chosen step.

    ``after_upload: N``: as soon as the N-th upload has answered, before its id is noted or its
    document committed. ``before_delete``: at the first deletion of a replaced or stale file,
    after the commit that retired it.
    """

    def __init__(self, inner: FilesBackend, die_at: dict[str, Any]) -> None:
        self.inner = inner
        self.name = inner.name
        self.die_at = die_at
        self._uploads = 0
        self._lock = threading.Lock()

    def upload(self, *, filename: str, data: bytes, mime_type: str) -> RemoteFile:
        remote = self.inner.upload(filename=filename, data=data, mime_type=mime_type)
        with self._lock:
            self._uploads += 1
            if self._uploads == self.die_at.get("after_upload"):
                die()
        return remote

    def delete(self, file_id: str) -> bool:
        if self.die_at.get("before_delete"):
            die()
        return self.inner.delete(file_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def run(job: dict[str, Any]) -> None:
    client = make_client(api_key=job["api_key"], base_url=job["base_url"], timeout=10.0)
    backend = DyingBackend(AnthropicFilesBackend(client), job.get("die") or {})
    config = PoolConfig(data_dir=Path(job["data_dir"]), database_url=job["database_url"])
    pool = Pool.open(config, backend)
    try:
        report = bulk_ingest(pool, [Path(job["corpus"])], concurrency=job["concurrency"])
        print(json.dumps(report.counts), file=sys.stderr)
    finally:
        pool.close()
        client.close()


def child(job: dict[str, Any]) -> None:
    os.dup2(2, 1)  # stdout is the protocol channel: the child writes only to stderr
    code = 0
    try:
        run(job)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(job)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "exit": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
