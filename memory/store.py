"""The memory facade: remember episodes, recall by meaning, forget a user, query the provenance graph.

Writes go vectors first, then the whole graph of the run in one transaction; the run node is the commit
record. Recall only returns memories whose run has its provenance committed, so a write killed half-way
(server down, process killed) is never visible, and the retry rewrites the same deterministic ids.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from tierflow.memory.embeddings import Embedder
from tierflow.memory.errors import MemoryInputError, UnknownRunError, UnknownTenantError
from tierflow.memory.provenance import MAX_TEXT_CHARS, EpisodeRecord, build_record
from tierflow.memory.types import (
    ForgetResult,
    GraphNode,
    MemoryHit,
    MemoryItem,
    Namespace,
    Provenance,
    RecallFilters,
    RememberResult,
)

log = logging.getLogger(__name__)
MAX_QUERY_CHARS = 20_000  # as long as a request may be; only the first MAX_TEXT_CHARS are embedded
MAX_K = 100


class VectorStore(Protocol):
    """Where memory vectors live; every call is confined to one namespace."""

    def upsert(self, ns: Namespace, items: Sequence[MemoryItem], vectors: np.ndarray) -> None: ...

    def search(self, ns: Namespace, vector: np.ndarray, k: int, filters: RecallFilters) -> list[MemoryHit]: ...

    def delete_run(self, ns: Namespace, run_id: str, keep: Iterable[str] = ()) -> int: ...

    def delete_namespace(self, ns: Namespace) -> int: ...

    def count(self, ns: Namespace) -> int: ...

    def close(self) -> None: ...


class GraphStore(Protocol):
    """Where provenance lives; ``write_run`` is one transaction (all of the run's graph or none)."""

    def run_hash(self, ns: Namespace, run_id: str) -> str | None: ...

    def write_run(self, ns: Namespace, record: EpisodeRecord) -> None: ...

    def committed_runs(self, ns: Namespace, run_ids: Iterable[str]) -> dict[str, bool]: ...

    def provenance(self, ns: Namespace, run_id: str) -> Provenance | None: ...

    def neighbours(self, ns: Namespace, key: str, depth: int, limit: int) -> list[GraphNode]: ...

    def delete_run(self, ns: Namespace, run_id: str) -> int: ...

    def delete_namespace(self, ns: Namespace) -> int: ...

    def runs(self, ns: Namespace, limit: int) -> list[GraphNode]: ...

    def close(self) -> None: ...


class MemoryStore:
    """The one memory API (satisfies ``tierflow.memory.base.Memory``); namespaced by tenant and user."""

    def __init__(self, vectors: VectorStore, graph: GraphStore, embedder: Embedder | None = None, *,
                 tenant: str = "default", tenants: Sequence[str] = (), min_score: float = 0.0) -> None:
        self.vectors = vectors
        self.graph = graph
        self.embedder = embedder or Embedder()
        self.tenant = tenant
        self.tenants = frozenset(tenants)
        self.min_score = min_score
        self._ns(None, "local")  # validate the default tenant now

    def _ns(self, tenant: str | None, user_id: str) -> Namespace:
        tenant = tenant or self.tenant
        if self.tenants and tenant not in self.tenants:
            raise UnknownTenantError(f"tenant {tenant!r} is not served by this memory; known: {sorted(self.tenants)}")
        return Namespace(tenant, user_id)

    # -- writes -------------------------------------------------------------------------------------------
    def remember(self, episode: dict[str, Any], *, user_id: str = "local", tenant: str | None = None) -> RememberResult:
        """Store a finished run's memories and provenance; the same episode again writes nothing."""
        return self.remember_many([episode], user_id=user_id, tenant=tenant)[0]

    def remember_many(self, episodes: Sequence[dict[str, Any]], *, user_id: str = "local",
                      tenant: str | None = None) -> list[RememberResult]:
        """Like ``remember`` for many episodes, embedding all their texts in batches."""
        ns = self._ns(tenant, user_id)
        records = [build_record(e, ns.key) for e in episodes]
        todo = [r for r in records if self.graph.run_hash(ns, r.run_id) != r.content_hash]
        texts = [item.text for r in todo for item in r.items]
        vectors = self.embedder.embed(texts)
        offset = 0
        for record in todo:
            n = len(record.items)
            self.vectors.upsert(ns, record.items, vectors[offset:offset + n])
            offset += n
            self.vectors.delete_run(ns, record.run_id, keep=[i.id for i in record.items])  # a shorter rewrite
            self.graph.write_run(ns, record)  # the commit point of this run
        done = {r.run_id for r in todo}
        return [RememberResult(r.run_id, r.run_id in done, len(r.items), len(r.nodes)) for r in records]

    def forget(self, *, user_id: str, tenant: str | None = None, run_id: str | None = None) -> ForgetResult:
        """Remove one run, or everything of this user, from both stores (graph first: hides it at once)."""
        ns = self._ns(tenant, user_id)
        if run_id is not None:
            nodes = self.graph.delete_run(ns, run_id)
            return ForgetResult(self.vectors.delete_run(ns, run_id), nodes)
        nodes = self.graph.delete_namespace(ns)
        return ForgetResult(self.vectors.delete_namespace(ns), nodes)

    # -- reads --------------------------------------------------------------------------------------------
    def search(self, query: str, k: int = 5, *, user_id: str = "local", tenant: str | None = None,
               filters: RecallFilters | dict[str, Any] | None = None) -> list[MemoryHit]:
        """The ``k`` memories nearest to ``query`` in meaning, with scores; only runs with committed provenance."""
        if not isinstance(query, str) or not query.strip():
            raise MemoryInputError("recall query is empty")
        if len(query) > MAX_QUERY_CHARS:
            raise MemoryInputError(f"recall query has {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise MemoryInputError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
        ns = self._ns(tenant, user_id)
        flt = RecallFilters.of(filters)
        vector = self.embedder.embed_one(query.strip()[:MAX_TEXT_CHARS])
        hits = self.vectors.search(ns, vector, k * 2 + 8, flt)
        committed = self.graph.committed_runs(ns, {h.run_id for h in hits}) if hits else {}
        if len(committed) < len({h.run_id for h in hits}):
            log.debug("recall skipped memories of %d run(s) without committed provenance",
                      len({h.run_id for h in hits}) - len(committed))
        return [replace(h, private=committed[h.run_id]) for h in hits
                if h.run_id in committed and h.score >= self.min_score][:k]

    def recall(self, query: str, k: int = 5, *, user_id: str = "local", tenant: str | None = None,
               filters: RecallFilters | dict[str, Any] | None = None) -> list[str]:
        """Texts of the ``k`` most relevant memories of this user (what planning and agents are shown)."""
        if k == 0:  # recall switched off (recall_k = 0)
            return []
        return [h.text for h in self.search(query, k, user_id=user_id, tenant=tenant, filters=filters)]

    def provenance(self, run_id: str, *, user_id: str = "local", tenant: str | None = None) -> Provenance:
        """The run's provenance graph; UnknownRunError if this user has no such run."""
        found = self.graph.provenance(self._ns(tenant, user_id), run_id)
        if found is None:
            raise UnknownRunError(f"no run {run_id!r} in the memory of user {user_id!r}")
        return found

    def neighbours(self, entity: str, *, user_id: str = "local", tenant: str | None = None, depth: int = 1,
                   limit: int = 50) -> list[GraphNode]:
        """Nodes within ``depth`` hops (1 or 2) of the entity named ``entity`` (case-insensitive)."""
        if not isinstance(entity, str) or not entity.strip():
            raise MemoryInputError("entity name is empty")
        if depth not in (1, 2):
            raise MemoryInputError(f"depth must be 1 or 2, got {depth!r}")
        return self.graph.neighbours(self._ns(tenant, user_id), f"entity:{entity.strip().lower()}", depth, limit)

    def runs(self, *, user_id: str = "local", tenant: str | None = None, limit: int = 50) -> list[GraphNode]:
        """This user's remembered runs, newest first."""
        return self.graph.runs(self._ns(tenant, user_id), limit)

    def count(self, *, user_id: str = "local", tenant: str | None = None) -> int:
        return self.vectors.count(self._ns(tenant, user_id))

    def close(self) -> None:
        self.vectors.close()
        self.graph.close()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
