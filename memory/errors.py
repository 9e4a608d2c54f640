"""Typed errors of the memory layer; each message names what was wrong."""

from __future__ import annotations

from tierflow.runtimes.errors import TierflowError


class MemoryLayerError(TierflowError):
    """Base of every error the memory layer raises."""


class MemoryInputError(MemoryLayerError, ValueError):
    """Bad input: an empty or oversized query, a malformed user/tenant id, an episode without a run id."""


class UnknownTenantError(MemoryInputError):
    """The tenant is not among the tenants this memory was configured to serve."""


class UnknownRunError(MemoryLayerError, LookupError):
    """No run with that id exists in this user's memory."""


class MemoryBackendUnavailable(MemoryLayerError, ConnectionError):
    """A memory server (Neo4j, Weaviate) cannot be reached or failed mid-operation."""
