#!/usr/bin/env bash
# Create or update the project's virtualenv (.venv) with the package and its test tools.
# Needs only python3 (>= 3.11) with venv and pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.spacepanda-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing into .venv (log: .venv/install.log)..."
  if ! { .venv/bin/python -m pip install --upgrade pip \
         && .venv/bin/python -m pip install -e '.[test]'; } > .venv/install.log 2>&1; then
    tail -40 .venv/install.log
    echo "install failed; full log in .venv/install.log" >&2
    exit 1
  fi
  touch "$stamp"
fi
