#!/usr/bin/env python3
"""Bulk ingest for cron: the same code and options as ``kpool ingest``.

    scripts/bulk_ingest.py /srv/policies --manifest /srv/policies.csv --prune

Exit status 0 when every file was ingested or unchanged, 1 when any failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.cli import ingest

if __name__ == "__main__":
    ingest(prog_name="bulk_ingest.py")
