#!/usr/bin/env bash
# Every check CI runs: creates .venv if missing, installs -e ".[dev,bench,dashboard,otel]" (and
# Debian's chromium for the dashboard's browser tests, when missing and apt-get is there), then
# ruff, ruff format, mypy and pytest (extra arguments go to pytest). The tests need Postgres on 127.0.0.1:5432
# and Redis on 127.0.0.1:6379 (DURABLE_TEST_PG_ADMIN / DURABLE_TEST_BROKER to point elsewhere).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
ensure_venv ".[dev,bench,dashboard,otel]"

# the dashboard's browser tests drive Debian's chromium through Playwright (which never
# downloads a browser of its own here)
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing chromium"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium chromium-driver
fi

echo "== ruff check"
.venv/bin/ruff check .
echo "== ruff format --check"
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy

echo "== services"
.venv/bin/python - <<'PY'
import os
import socket
import sys
from urllib.parse import urlsplit

services = [
    ("Postgres", "DURABLE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres", 5432),
    ("Redis", "DURABLE_TEST_BROKER", "redis://127.0.0.1:6379/0", 6379),
]
down = []
for name, variable, default, port in services:
    url = urlsplit(os.environ.get(variable) or default)
    address = (url.hostname or "127.0.0.1", url.port or port)
    try:
        socket.create_connection(address, timeout=3).close()
        print(f"{name} answers on {address[0]}:{address[1]}")
    except OSError as exc:
        down.append(f"{name} does not answer on {address[0]}:{address[1]} ({exc})")
if down:
    print("error: the tests need a running Postgres and Redis:", *down, sep="\n  ", file=sys.stderr)
    print("  start them (e.g. `docker compose up -d postgres redis`) or set", file=sys.stderr)
    print("  DURABLE_TEST_PG_ADMIN / DURABLE_TEST_BROKER to where they run.", file=sys.stderr)
    sys.exit(1)
PY

echo "== pytest"
status=0
# two pytest processes (each its own database and queues, see tests/conftest.py): most
# of the suite waits on worker subprocesses, so two halves overlap well on two cores; a
# file stays in one process, so its module-scoped workers start once
.venv/bin/python -m pytest -n "${DURABLE_TEST_PROCESSES:-2}" --dist loadfile "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
