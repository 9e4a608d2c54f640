#!/usr/bin/env bash
# BFCL function-calling data (PyPI bfcl-eval: data/BFCL_v*_<category>.json + data/possible_answer/) for the
# evals.bfcl loader. Installed with --no-deps: only the packaged JSON-lines files are used, none of its code.
# Run from the repository root (infra/test.sh does); a second run only checks the installed version.
set -euo pipefail
BFCL_EVAL=2026.3.23
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3.11}  # the interpreter infra/setup.sh installed uv into
command -v "$PY" >/dev/null || PY=python3
if .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('bfcl-eval') != '$BFCL_EVAL')" \
    2>/dev/null; then
  exit 0
fi
echo "installing bfcl-eval $BFCL_EVAL (data only, --no-deps) into .venv…" >&2
"$PY" -m uv pip install --quiet --python .venv/bin/python --no-deps "bfcl-eval==$BFCL_EVAL"
