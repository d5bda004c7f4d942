#!/usr/bin/env bash
# The main job: set up .venv, start a local mesh of nodes, form a channel, exchange encrypted
# messages, remove a member, check an outsider holds no plaintext, stop every node cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
