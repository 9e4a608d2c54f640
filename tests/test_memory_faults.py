"""Server faults: a memory server killed mid-write leaves nothing half-visible, and says so clearly."""

from __future__ import annotations

import pytest

from tests.fixtures_memory import start_weaviate
from tests.test_memory_backends import LISBON, ROME
from tierflow.memory.embedded import SQLiteDB, SQLiteGraphStore
from tierflow.memory.errors import MemoryBackendUnavailable
from tierflow.memory.store import MemoryStore
from tierflow.memory.weaviate_vectors import WeaviateVectorStore

pytestmark = [pytest.mark.server, pytest.mark.weaviate, pytest.mark.timeout(300)]


def test_weaviate_killed_mid_write_never_exposes_the_episode(tmp_path, embedder):
    server = start_weaviate(tmp_path / "data")
    db = SQLiteDB(tmp_path / "graph.sqlite")
    store = MemoryStore(WeaviateVectorStore(server.url, grpc_port=server.grpc_port, timeout_s=5),
                        SQLiteGraphStore(db), embedder)
    try:
        store.remember(LISBON, user_id="ana")
        server.kill()  # SIGKILL the whole namespace: Weaviate and its relays
        with pytest.raises(MemoryBackendUnavailable, match="Weaviate"):
            store.remember(ROME, user_id="ana")
        # the graph, the commit record, never saw the failed run: nothing of it can surface later
        assert store.graph.run_hash(store._ns(None, "ana"), "run-rome") is None
        assert [r.props["run_id"] for r in store.runs(user_id="ana")] == ["run-lisbon"]
        with pytest.raises(MemoryBackendUnavailable):
            store.recall("pizza in Rome", 3, user_id="ana")
    finally:
        store.close()
