#!/usr/bin/env bash
# The crash-and-recover demo on a machine with only Python 3.11+: creates .venv if missing,
# installs celery-durable into it, then runs example_project/demo.py (no Postgres, no Redis:
# set CELERY_BROKER_URL / DURABLE_DATABASE_URL to use them instead).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
ensure_venv .
exec .venv/bin/python example_project/demo.py "$@"
