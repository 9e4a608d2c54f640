"""Memory: remember runs, recall by meaning, forget users, query provenance (embedded or Neo4j + Weaviate).

Names load on first use (PEP 562): ``from tierflow.memory.errors import ...`` in the CLI must not import numpy
and the stores just to name an error.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Memory": "base", "MemoryConfig": "config", "open_embedded": "config", "open_memory": "config",
    "MemoryBackendUnavailable": "errors", "MemoryInputError": "errors", "MemoryLayerError": "errors",
    "UnknownRunError": "errors", "UnknownTenantError": "errors", "MemoryStore": "store",
}
__all__ = ["Memory", "MemoryBackendUnavailable", "MemoryConfig", "MemoryInputError", "MemoryLayerError",
           "MemoryStore", "UnknownRunError", "UnknownTenantError", "open_embedded", "open_memory"]

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
