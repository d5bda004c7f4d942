#!/usr/bin/env bash
# The main job: set up .venv, start a local mesh of nodes that know only a bootstrap
# address, show it form, check every signed record resolves, stop every node cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/demo_mesh.py "$@"
