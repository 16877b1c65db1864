# Sourced by demo.sh and test.sh (from the repository root): make sure .venv exists,
# built with Python 3.11+, and install the project into it.

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "error: celery-durable needs Python 3.11 or newer; none found (set PYTHON=...)" >&2
  return 1
}

# ensure_venv SPEC: create .venv if missing, then `pip install -e SPEC` into it.
ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    local python
    python=$(find_python)
    echo "Creating .venv with $("$python" --version)"
    "$python" -m venv .venv
  fi
  echo "Installing -e $1 into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$1"
}
