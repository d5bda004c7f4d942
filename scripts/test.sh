#!/usr/bin/env bash
# The whole test suite: lint, types, tests. Exit code is non-zero on any failure,
# including "no tests collected" (pytest exit 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "== ruff"; .venv/bin/ruff check node dht mls api tests bench fuzz
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest "$@"
