"""Memory: remember runs, recall by meaning, forget users, query provenance (embedded or Neo4j + Weaviate)."""

from tierflow.memory.base import Memory
from tierflow.memory.config import MemoryConfig, open_embedded, open_memory
from tierflow.memory.errors import (
    MemoryBackendUnavailable,
    MemoryInputError,
    MemoryLayerError,
    UnknownRunError,
    UnknownTenantError,
)
from tierflow.memory.store import MemoryStore

__all__ = ["Memory", "MemoryBackendUnavailable", "MemoryConfig", "MemoryInputError", "MemoryLayerError",
           "MemoryStore", "UnknownRunError", "UnknownTenantError", "open_embedded", "open_memory"]
