#!/usr/bin/env bash
# Neo4j 5.26 LTS community server jars for the memory tests (tests/fixtures_memory.py starts
# org.neo4j.server.CommunityEntryPoint from them). Resolved once from Maven Central by infra/neo4j/pom.xml
# into ~/.cache/tierflow/neo4j/<version>/lib; later runs only check. Needs Java 17 and Maven.
set -euo pipefail
cd "$(dirname "$0")/../neo4j"
VERSION=5.26.30
CACHE=${TIERFLOW_CACHE:-$HOME/.cache/tierflow}/neo4j
LIB=$CACHE/$VERSION/lib
if ls "$LIB"/neo4j-server-"$VERSION".jar >/dev/null 2>&1; then
  exit 0
fi
if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
  echo "installing Java 17 and Maven for Neo4j…" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
fi
echo "resolving Neo4j $VERSION jars from Maven Central (one time)…" >&2
mkdir -p "$LIB.partial"
mvn -q -B -Dmaven.repo.local="$CACHE/m2" -Dneo4j.version="$VERSION" dependency:copy-dependencies \
  -DoutputDirectory="$LIB.partial" -DincludeScope=runtime
rm -rf "$LIB" && mv "$LIB.partial" "$LIB"
