#!/usr/bin/env bash
# PostgreSQL 15 from Debian, for durable LangGraph checkpoints (tests/fixtures_postgres.py runs initdb in a
# throwaway folder and starts a private server on a free 127.0.0.1 port; no system cluster is started).
# Idempotent: when initdb and pg_ctl exist it only checks. Installing needs root (apt-get).
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
if [ -x "$BIN/initdb" ] && [ -x "$BIN/pg_ctl" ] && [ -x "$BIN/postgres" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "20-postgres: PostgreSQL 15 is missing and this is not root; the postgres tests will be skipped" >&2
  exit 0
fi
echo "installing PostgreSQL 15 from Debian…" >&2
apt-get update -qq
# the package's post-install creates a default cluster; tierflow never uses it, so it is not started
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
if command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q '^15 main .* online'; then
  pg_ctlcluster 15 main stop || true
fi
"$BIN/initdb" --version >/dev/null
