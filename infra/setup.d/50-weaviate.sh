#!/usr/bin/env bash
# Weaviate server binary for the memory tests, built once with `go install` (CGO off) and cached in
# ~/.cache/tierflow/weaviate/<version>/; later runs only check. Takes many minutes on 2 cores the first
# time. Tests run it inside a private network namespace (infra/weaviate/netns.py): its gRPC listeners
# ignore the bind address, so only loopback relays on this host can reach it.
set -euo pipefail
VERSION=v1.38.8
DEST=${TIERFLOW_CACHE:-$HOME/.cache/tierflow}/weaviate/$VERSION
if [ -x "$DEST/weaviate-server" ]; then
  exit 0
fi
GO=$(command -v go || echo /usr/local/go/bin/go)
if [ ! -x "$GO" ]; then
  echo "Go is needed to build Weaviate ($GO not found); install Go >= 1.24" >&2
  exit 1
fi
command -v unshare >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux >/dev/null; }
echo "building weaviate-server $VERSION (one time, several minutes)…" >&2
mkdir -p "$DEST.partial"
CGO_ENABLED=0 GOBIN="$DEST.partial" "$GO" install "github.com/weaviate/weaviate/cmd/weaviate-server@$VERSION"
mkdir -p "$DEST" && mv "$DEST.partial/weaviate-server" "$DEST/weaviate-server" && rmdir "$DEST.partial"
