"""Memory servers for tests: Neo4j 5.26 (Bolt on 127.0.0.1) and Weaviate (in a private network namespace).

Both start once per session on free ports with throwaway data folders, through bench/memory_servers.py (shared
with bench/memory.py, which must not import tests). A test that needs one that is not installed or cannot start
here is skipped with the reason; the embedded backend never needs either.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import memory_servers
from bench.memory_servers import Neo4jServer, ServerMissing, WeaviateServer, free_port
from tests.paths import missing_server
from tierflow.memory.embeddings import Embedder

_free_port = free_port  # the name tests/test_memory_orchestrator.py imports


def start_neo4j(home: Path) -> Neo4jServer:
    """Neo4j with Bolt on a free 127.0.0.1 port and data under ``home``; skips the test when not installed."""
    try:
        return memory_servers.start_neo4j(home)
    except ServerMissing as exc:
        missing_server(str(exc))
        raise  # not reached: missing_server skips or fails the test


def start_weaviate(data: Path, timeout_s: float = 120) -> WeaviateServer:
    """Weaviate reachable only through 127.0.0.1 on this host; skips the test when not installed."""
    try:
        return memory_servers.start_weaviate(data, timeout_s)
    except ServerMissing as exc:
        missing_server(str(exc))
        raise  # not reached: missing_server skips or fails the test


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jServer]:
    """A session-wide Neo4j 5.26 on a free loopback port."""
    server = start_neo4j(tmp_path_factory.mktemp("neo4j"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def weaviate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeaviateServer]:
    """A session-wide Weaviate reachable only through 127.0.0.1 on this host."""
    server = start_weaviate(tmp_path_factory.mktemp("weaviate") / "data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The offline all-MiniLM-L6-v2, loaded once for every memory test."""
    return Embedder()


@pytest.fixture(params=["embedded", pytest.param("neo4j", marks=[pytest.mark.server, pytest.mark.neo4j]),
                        pytest.param("weaviate", marks=[pytest.mark.server, pytest.mark.weaviate])])
def memory_backend(request: pytest.FixtureRequest, tmp_path: Path, embedder: Embedder) -> Iterator[
        Callable[..., object]]:
    """A factory of MemoryStores on one backend: embedded (SQLite), Neo4j graph, or Weaviate vectors.

    The server backends pair the server with the embedded store for the other half, so each server is
    proven on its own; tests get a fresh tenant so they never see each other's data.
    """
    from tierflow.memory.embedded import SQLiteDB, SQLiteGraphStore, SQLiteVectorStore
    from tierflow.memory.store import MemoryStore

    kind = request.param
    opened: list[MemoryStore] = []
    tenant = f"t{uuid.uuid4().hex[:12]}"

    def make(**kw: object) -> MemoryStore:
        db = SQLiteDB(tmp_path / "memory.sqlite")
        vectors: object = SQLiteVectorStore(db)
        graph: object = SQLiteGraphStore(db)
        if kind == "neo4j":
            from tierflow.memory.neo4j_graph import Neo4jGraphStore

            graph = Neo4jGraphStore(request.getfixturevalue("neo4j_server").url, timeout_s=20)
        elif kind == "weaviate":
            from tierflow.memory.weaviate_vectors import WeaviateVectorStore

            server = request.getfixturevalue("weaviate_server")
            vectors = WeaviateVectorStore(server.url, grpc_port=server.grpc_port, timeout_s=20)
        kw.setdefault("tenant", tenant)
        store = MemoryStore(vectors, graph, embedder, **kw)  # type: ignore[arg-type]
        opened.append(store)
        return store

    make.kind = kind  # type: ignore[attr-defined]
    yield make
    for store in opened:
        store.close()
