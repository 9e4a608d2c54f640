#!/usr/bin/env bash
# The whole test suite: install (idempotent), lint, then pytest. Tests start the servers they use
# (an OpenAI-compatible llama.cpp server on 127.0.0.1) themselves and stop them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/setup.sh
# Real servers the tests use (PostgreSQL, Neo4j, Weaviate, the MCP Inspector) install through their
# own scripts, each idempotent and caching what it downloads or builds (the first Weaviate build
# takes ~20 min on 2 cores). The main job needs none of them.
for step in infra/setup.d/*.sh; do
  [ -e "$step" ] || continue
  bash "$step"
done
# Here every server above is installed, so a test that cannot find one fails instead of skipping.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TIERFLOW_REQUIRE_SERVERS=1
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
