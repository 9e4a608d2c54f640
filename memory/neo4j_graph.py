"""Provenance graph on Neo4j 5 over Bolt (official ``neo4j`` driver).

Every value travels as a query parameter; labels and relationship types (which Cypher cannot take as
parameters) come only from the fixed NODE_KINDS / RELATIONS lists, never from user data. Constraints and
indexes are created idempotently (IF NOT EXISTS) on connect. A run's graph is written in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import neo4j
from neo4j import GraphDatabase, ManagedTransaction, unit_of_work
from neo4j.exceptions import DriverError, Neo4jError

from tierflow.memory.errors import MemoryBackendUnavailable, MemoryLayerError
from tierflow.memory.provenance import NODE_KINDS, RELATIONS, EpisodeRecord
from tierflow.memory.types import GraphEdge, GraphNode, Namespace, Provenance

T = TypeVar("T")
SCHEMA = (
    "CREATE CONSTRAINT tierflow_node_key IF NOT EXISTS FOR (n:MemNode) REQUIRE (n.ns, n.key) IS UNIQUE",
    "CREATE INDEX tierflow_node_run IF NOT EXISTS FOR (n:MemNode) ON (n.ns, n.run_id)",
    "CREATE INDEX tierflow_node_kind IF NOT EXISTS FOR (n:MemNode) ON (n.ns, n.kind)",
)
_RESERVED = ("ns", "key", "kind", "run_id")


def _node(n: Any) -> GraphNode:
    data = dict(n)
    hidden = _RESERVED if data["kind"] != "Run" else _RESERVED[:3]  # a Run's own props include its run_id
    return GraphNode(data["key"], data["kind"], {k: v for k, v in data.items() if k not in hidden},
                     data.get("run_id"))


class Neo4jGraphStore:
    """GraphStore on a Neo4j server; MemoryBackendUnavailable when it is down or dies mid-operation."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None, database: str | None = None,
                 timeout_s: float = 10.0) -> None:
        self.url, self.database, self.timeout_s = url, database, timeout_s
        try:
            self.driver = GraphDatabase.driver(url, auth=auth, connection_timeout=timeout_s,
                                               connection_acquisition_timeout=timeout_s,
                                               max_transaction_retry_time=timeout_s)
            self.driver.verify_connectivity()
            for statement in SCHEMA:
                self.driver.execute_query(statement, database_=database)
        except (DriverError, Neo4jError, OSError, ValueError) as exc:
            if hasattr(self, "driver"):
                self.driver.close()
            raise MemoryBackendUnavailable(f"Neo4j at {url} is not usable: {exc}") from exc

    def _run(self, write: bool, work: Callable[[ManagedTransaction], T]) -> T:
        """One managed transaction (retried by the driver on transient errors), errors mapped to ours."""
        tx_fn = unit_of_work(timeout=self.timeout_s)(work)
        try:
            with self.driver.session(database=self.database) as session:
                return session.execute_write(tx_fn) if write else session.execute_read(tx_fn)
        except (DriverError, OSError) as exc:
            raise MemoryBackendUnavailable(f"Neo4j at {self.url} failed: {exc}") from exc
        except Neo4jError as exc:
            raise MemoryLayerError(f"Neo4j at {self.url} rejected a memory query: {exc}") from exc

    def run_hash(self, ns: Namespace, run_id: str) -> str | None:
        def work(tx: ManagedTransaction) -> str | None:
            rec = tx.run("MATCH (n:MemNode {ns: $ns, key: $key}) RETURN n.content_hash AS h",
                         ns=ns.key, key=f"run:{run_id}").single()
            return rec["h"] if rec else None
        return self._run(False, work)

    @staticmethod
    def _delete_run(tx: ManagedTransaction, ns: Namespace, run_id: str) -> int:
        touched = tx.run("MATCH (n:MemNode {ns: $ns, run_id: $run})--(m:MemNode) WHERE m.run_id IS NULL "
                         "RETURN collect(DISTINCT m.key) AS keys", ns=ns.key, run=run_id).single()["keys"]
        removed = tx.run("MATCH (n:MemNode {ns: $ns, run_id: $run}) DETACH DELETE n RETURN count(*) AS c",
                         ns=ns.key, run=run_id).single()["c"]
        removed += tx.run("MATCH (n:MemNode {ns: $ns}) WHERE n.key IN $keys AND n.run_id IS NULL AND NOT (n)--() "
                          "DELETE n RETURN count(*) AS c", ns=ns.key, keys=touched).single()["c"]
        return removed

    def write_run(self, ns: Namespace, record: EpisodeRecord) -> None:
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for n in record.nodes:
            if n.kind not in NODE_KINDS:
                raise MemoryLayerError(f"unknown node kind {n.kind!r}")
            by_kind.setdefault(n.kind, []).append({"key": n.key, "props": n.props, "run_id": n.run_id})
        by_rel: dict[str, list[dict[str, str]]] = {}
        for e in record.edges:
            if e.rel not in RELATIONS:
                raise MemoryLayerError(f"unknown relation {e.rel!r}")
            by_rel.setdefault(e.rel, []).append({"src": e.src, "dst": e.dst})

        def work(tx: ManagedTransaction) -> None:
            self._delete_run(tx, ns, record.run_id)
            for kind, rows in by_kind.items():  # kind is one of NODE_KINDS (checked above), never user text
                tx.run(f"UNWIND $rows AS row MERGE (n:MemNode {{ns: $ns, key: row.key}}) SET n:{kind}, "
                       "n += row.props, n.kind = $kind, n.run_id = row.run_id", rows=rows, ns=ns.key, kind=kind)
            for rel, rows in by_rel.items():  # rel is one of RELATIONS (checked above)
                tx.run(f"UNWIND $rows AS row MATCH (a:MemNode {{ns: $ns, key: row.src}}) "
                       f"MATCH (b:MemNode {{ns: $ns, key: row.dst}}) MERGE (a)-[r:{rel} {{run_id: $run}}]->(b)",
                       rows=rows, ns=ns.key, run=record.run_id)
        self._run(True, work)

    def committed_runs(self, ns: Namespace, run_ids: Iterable[str]) -> dict[str, bool]:
        """Which of ``run_ids`` have committed provenance, each with whether the run was private."""
        keys = [f"run:{r}" for r in run_ids]

        def work(tx: ManagedTransaction) -> dict[str, bool]:
            return {r["id"]: r["private"] is True for r in tx.run(
                "MATCH (n:MemNode {ns: $ns}) WHERE n.key IN $keys AND n.kind = 'Run' "
                "RETURN n.run_id AS id, n.private AS private", ns=ns.key, keys=keys)}
        return self._run(False, work) if keys else {}

    def provenance(self, ns: Namespace, run_id: str) -> Provenance | None:
        def work(tx: ManagedTransaction) -> Provenance | None:
            rows = list(tx.run("MATCH (a:MemNode {ns: $ns})-[r]->(b:MemNode {ns: $ns}) WHERE r.run_id = $run "
                               "AND (a.run_id = $run OR b.run_id = $run) RETURN a, type(r) AS rel, b",
                               ns=ns.key, run=run_id))
            nodes = {n.key: n for row in rows for n in (_node(row["a"]), _node(row["b"]))}
            if not any(n.kind == "Run" for n in nodes.values()):
                return None
            edges = [GraphEdge(row["a"]["key"], row["rel"], row["b"]["key"]) for row in rows]
            return Provenance(run_id, sorted(nodes.values(), key=lambda n: n.key), edges)
        return self._run(False, work)

    def neighbours(self, ns: Namespace, key: str, depth: int, limit: int) -> list[GraphNode]:
        hops = {1: "1", 2: "1..2"}[depth]  # an int from a fixed map: path lengths cannot be parameters

        def work(tx: ManagedTransaction) -> list[GraphNode]:
            return [_node(r["n"]) for r in tx.run(
                f"MATCH (e:MemNode {{ns: $ns, key: $key}})-[*{hops}]-(n:MemNode) WHERE n <> e "
                "RETURN DISTINCT n ORDER BY n.key LIMIT $limit", ns=ns.key, key=key, limit=max(limit, 0))]
        return self._run(False, work)

    def delete_run(self, ns: Namespace, run_id: str) -> int:
        return self._run(True, lambda tx: self._delete_run(tx, ns, run_id))

    def delete_namespace(self, ns: Namespace) -> int:
        return self._run(True, lambda tx: tx.run("MATCH (n:MemNode {ns: $ns}) DETACH DELETE n RETURN count(*) AS c",
                                                 ns=ns.key).single()["c"])

    def runs(self, ns: Namespace, limit: int) -> list[GraphNode]:
        def work(tx: ManagedTransaction) -> list[GraphNode]:
            return [_node(r["n"]) for r in tx.run("MATCH (n:Run:MemNode {ns: $ns}) RETURN n ORDER BY n.created_at "
                                                  "DESC LIMIT $limit", ns=ns.key, limit=limit)]
        return self._run(False, work)

    def close(self) -> None:
        self.driver.close()


__all__ = ["Neo4jGraphStore", "neo4j"]
