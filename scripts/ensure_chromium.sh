#!/usr/bin/env bash
# Make sure Debian's chromium is installed for the browser tests (tests/browser). Idempotent.
# As root it installs the package; otherwise it says what to run and exits 0, and the browser
# tests skip with the same advice. Playwright drives this browser; it never downloads its own.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure_chromium: $CHROMIUM is missing, so the browser tests will be skipped;" \
        "install it with: sudo apt-get update && sudo apt-get install -y chromium" >&2
    exit 0
fi

echo "ensure_chromium: installing Debian's chromium for the browser tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
