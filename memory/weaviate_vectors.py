"""Memory vectors on Weaviate (weaviate-client v4: REST for schema, gRPC for search and batch writes).

One collection with native multi-tenancy: each (tenant, user) namespace is a Weaviate tenant, so one
user's search physically cannot reach another's shard, and forgetting a user drops the whole tenant.
Vectors are ours (all-MiniLM-L6-v2, no vectorizer module); HNSW with cosine distance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np
import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.exceptions import UnexpectedStatusCodeError, WeaviateBaseError

from tierflow.memory.errors import MemoryBackendUnavailable, MemoryLayerError
from tierflow.memory.types import MemoryHit, MemoryItem, Namespace, RecallFilters

T = TypeVar("T")
COLLECTION = "TierflowMemory"
HNSW_EF = 128  # search list size: recall@10 ≥ 0.99 on 10^4 MiniLM vectors


class WeaviateVectorStore:
    """VectorStore on a Weaviate server; MemoryBackendUnavailable when it is down or fails mid-operation."""

    def __init__(self, url: str, grpc_port: int = 50051, api_key: str | None = None, timeout_s: float = 10.0,
                 collection: str = COLLECTION) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise MemoryLayerError(f"weaviate_url must look like http://host:port, got {url!r}")
        self.url, self.name = url, collection
        secure = parsed.scheme == "https"
        try:
            self.client = weaviate.connect_to_custom(
                http_host=parsed.hostname, http_port=parsed.port or (443 if secure else 80), http_secure=secure,
                grpc_host=parsed.hostname, grpc_port=grpc_port, grpc_secure=secure,
                auth_credentials=Auth.api_key(api_key) if api_key else None,
                additional_config=AdditionalConfig(timeout=Timeout(init=timeout_s, query=timeout_s,
                                                                   insert=timeout_s * 3)))
        except (WeaviateBaseError, OSError) as exc:
            raise MemoryBackendUnavailable(f"Weaviate at {url} (gRPC port {grpc_port}) is not usable: {exc}") from exc
        try:
            self._ensure_collection()
        except BaseException:
            self.client.close()
            raise

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (WeaviateBaseError, OSError) as exc:
            if not self.client.is_live():
                raise MemoryBackendUnavailable(f"Weaviate at {self.url} failed during {what}: {exc}") from exc
            raise MemoryLayerError(f"Weaviate at {self.url} rejected {what}: {exc}") from exc

    def _ensure_collection(self) -> None:
        def create() -> None:
            if self.client.collections.exists(self.name):
                return
            try:
                self.client.collections.create(
                    self.name,
                    multi_tenancy_config=Configure.multi_tenancy(enabled=True, auto_tenant_creation=True,
                                                                 auto_tenant_activation=True),
                    vector_config=Configure.Vectors.self_provided(vector_index_config=Configure.VectorIndex.hnsw(
                        distance_metric=VectorDistances.COSINE, ef=HNSW_EF)),
                    properties=[Property(name="run_id", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                                Property(name="kind", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                                Property(name="intent", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                                Property(name="text", data_type=DataType.TEXT, index_filterable=False,
                                         index_searchable=False),
                                Property(name="created_at", data_type=DataType.NUMBER)])
            except UnexpectedStatusCodeError as exc:  # created concurrently by another process
                if not self.client.collections.exists(self.name):
                    raise MemoryLayerError(f"cannot create Weaviate collection {self.name}: {exc}") from exc
        self._call("creating the collection", create)

    def _tenant(self, ns: Namespace) -> Any:
        return self.client.collections.use(self.name).with_tenant(ns.key)

    def _exists(self, ns: Namespace) -> bool:
        return self._call("a tenant lookup", lambda: self.client.collections.use(self.name).tenants.exists(ns.key))

    def upsert(self, ns: Namespace, items: Sequence[MemoryItem], vectors: np.ndarray) -> None:
        objects = [DataObject(uuid=i.id, vector=np.asarray(v, dtype=np.float32).tolist(),
                              properties={"run_id": i.run_id, "kind": i.kind, "intent": i.intent, "text": i.text,
                                          "created_at": i.created_at})
                   for i, v in zip(items, vectors, strict=True)]
        if not objects:
            return
        result = self._call("a batch write", lambda: self._tenant(ns).data.insert_many(objects))
        if result.has_errors:
            first = next(iter(result.errors.values()))
            raise MemoryBackendUnavailable(f"Weaviate at {self.url} did not store {len(result.errors)} of "
                                           f"{len(objects)} memories: {first.message}")

    def search(self, ns: Namespace, vector: np.ndarray, k: int, filters: RecallFilters) -> list[MemoryHit]:
        if not self._exists(ns):  # a user who never remembered anything: nothing to find
            return []
        parts = [Filter.by_property(name).equal(value) for name, value in
                 (("kind", filters.kind), ("intent", filters.intent), ("run_id", filters.run_id)) if value]
        where = Filter.all_of(parts) if len(parts) > 1 else (parts[0] if parts else None)
        response = self._call("a search", lambda: self._tenant(ns).query.near_vector(
            near_vector=np.asarray(vector, dtype=np.float32).tolist(), limit=k, filters=where,
            return_metadata=MetadataQuery(distance=True)))
        return [MemoryHit(str(o.uuid), o.properties["run_id"], o.properties["kind"], o.properties["text"],
                          o.properties["intent"], 1.0 - float(o.metadata.distance or 0.0)) for o in response.objects]

    def delete_run(self, ns: Namespace, run_id: str, keep: Iterable[str] = ()) -> int:
        if not self._exists(ns):
            return 0
        keep = list(keep)
        where = Filter.by_property("run_id").equal(run_id)
        if keep:
            where = where & Filter.by_id().contains_none(keep)
        result = self._call("a delete", lambda: self._tenant(ns).data.delete_many(where=where))
        return int(result.successful)

    def delete_namespace(self, ns: Namespace) -> int:
        if not self._exists(ns):
            return 0
        count = self.count(ns)
        self._call("removing a tenant", lambda: self.client.collections.use(self.name).tenants.remove([ns.key]))
        return count

    def count(self, ns: Namespace) -> int:
        if not self._exists(ns):
            return 0
        return int(self._call("a count", lambda: self._tenant(ns).aggregate.over_all(total_count=True)).total_count)

    def close(self) -> None:
        self.client.close()
