"""Memory settings and the factory that opens the configured backends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from tierflow.memory.embeddings import Embedder
from tierflow.memory.errors import MemoryBackendUnavailable
from tierflow.memory.store import MemoryStore

log = logging.getLogger(__name__)


class MemoryConfig(BaseModel):
    """Which stores hold memory: the embedded SQLite file (default) or Neo4j (graph) + Weaviate (vectors)."""

    model_config = {"extra": "forbid"}

    enabled: bool = True
    backend: Literal["embedded", "neo4j+weaviate"] = "embedded"
    path: Path | None = Field(None, description="embedded SQLite file; None = <settings.home>/memory.sqlite")
    tenant: str = "default"
    tenants: list[str] = Field(default_factory=list, description="if set, only these tenants are served")
    recall_k: int = Field(5, ge=0, le=100)
    # Recall only what is close in meaning (all-MiniLM-L6-v2 cosine); unrelated requests score about 0.1–0.4.
    min_score: float = Field(0.5, ge=-1.0, le=1.0, description="recalled memories score at least this (cosine)")
    neo4j_url: str = "bolt://127.0.0.1:7687"
    neo4j_user: str | None = None
    neo4j_password: str | None = None
    neo4j_database: str | None = None
    weaviate_url: str = "http://127.0.0.1:8080"
    weaviate_grpc_port: int = Field(50051, ge=1, le=65535)
    weaviate_api_key: str | None = None
    timeout_s: float = Field(10.0, gt=0)
    fallback_to_embedded: bool = Field(False, description="servers down at start: use the embedded store instead")


def open_embedded(path: Path | str, embedder: Embedder | None = None, **kw: object) -> MemoryStore:
    """A MemoryStore on one SQLite file (created if missing)."""
    from tierflow.memory.embedded import SQLiteDB, SQLiteGraphStore, SQLiteVectorStore

    db = SQLiteDB(path)
    return MemoryStore(SQLiteVectorStore(db), SQLiteGraphStore(db), embedder, **kw)  # type: ignore[arg-type]


def open_servers(config: MemoryConfig, embedder: Embedder | None = None) -> MemoryStore:
    """A MemoryStore on Neo4j + Weaviate; MemoryBackendUnavailable names the server that is down."""
    from tierflow.memory.neo4j_graph import Neo4jGraphStore
    from tierflow.memory.weaviate_vectors import WeaviateVectorStore

    graph = Neo4jGraphStore(config.neo4j_url, auth=(config.neo4j_user, config.neo4j_password or "")
                            if config.neo4j_user else None, database=config.neo4j_database, timeout_s=config.timeout_s)
    try:
        vectors = WeaviateVectorStore(config.weaviate_url, grpc_port=config.weaviate_grpc_port,
                                      api_key=config.weaviate_api_key, timeout_s=config.timeout_s)
    except BaseException:
        graph.close()
        raise
    return MemoryStore(vectors, graph, embedder, tenant=config.tenant, tenants=config.tenants,
                       min_score=config.min_score)


def open_memory(config: MemoryConfig, default_path: Path, embedder: Embedder | None = None) -> MemoryStore | None:
    """The store ``config`` asks for (None when disabled), falling back to embedded only if configured to."""
    if not config.enabled:
        return None
    path = config.path or default_path
    if config.backend == "embedded":
        return open_embedded(path, embedder, tenant=config.tenant, tenants=config.tenants, min_score=config.min_score)
    try:
        return open_servers(config, embedder)
    except MemoryBackendUnavailable as exc:
        if not config.fallback_to_embedded:
            raise
        log.warning("memory servers unavailable (%s); using the embedded store at %s", exc, path)
        return open_embedded(path, embedder, tenant=config.tenant, tenants=config.tenants,
                             min_score=config.min_score)
