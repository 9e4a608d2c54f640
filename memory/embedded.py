"""Embedded default: one SQLite file holds vectors and the provenance graph; nothing to install or run.

Why SQLite + numpy: SQLite is in the standard library, transactional and a single file a user can copy or
delete; the graph is two tables (nodes, edges) whose queries here are one or two hops, which SQL answers
directly. Vectors are stored as float32 blobs and searched exactly (a matrix product over the user's
vectors, cached in RAM and reloaded when the file changes): at laptop scale (10^4-10^5 memories per user)
that is a few milliseconds with perfect recall and no index to tune. sqlite-vec would do the same inside
SQLite, but CPython builds without loadable-extension support (this one, pyenv's default) cannot load it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from tierflow.memory.embeddings import DIMENSIONS
from tierflow.memory.errors import MemoryInputError
from tierflow.memory.provenance import EpisodeRecord
from tierflow.memory.types import GraphEdge, GraphNode, MemoryHit, MemoryItem, Namespace, Provenance, RecallFilters

SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
  ns TEXT NOT NULL, id TEXT NOT NULL, run_id TEXT NOT NULL, kind TEXT NOT NULL, intent TEXT NOT NULL,
  text TEXT NOT NULL, created_at REAL NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (ns, id));
CREATE INDEX IF NOT EXISTS memories_run ON memories(ns, run_id);
CREATE TABLE IF NOT EXISTS nodes (
  ns TEXT NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL, run_id TEXT, props TEXT NOT NULL,
  PRIMARY KEY (ns, key));
CREATE INDEX IF NOT EXISTS nodes_run ON nodes(ns, run_id);
CREATE INDEX IF NOT EXISTS nodes_kind ON nodes(ns, kind);
CREATE TABLE IF NOT EXISTS edges (
  ns TEXT NOT NULL, src TEXT NOT NULL, rel TEXT NOT NULL, dst TEXT NOT NULL, run_id TEXT NOT NULL,
  PRIMARY KEY (ns, src, rel, dst, run_id));
CREATE INDEX IF NOT EXISTS edges_dst ON edges(ns, dst);
CREATE INDEX IF NOT EXISTS edges_run ON edges(ns, run_id);
"""


class SQLiteDB:
    """One SQLite connection (WAL, shared by threads under a lock) with the memory schema created."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise MemoryInputError(f"memory database {self.path} cannot be opened: "
                                   f"{getattr(exc, 'strerror', None) or exc}") from None
        self.lock = threading.RLock()
        try:
            with self.lock:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.execute("PRAGMA secure_delete=ON")  # forgotten text is overwritten, not left in free pages
                self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:  # a corrupt file or another program's database: say which, touch nothing
            self.conn.close()
            raise MemoryInputError(f"memory database {self.path} is unreadable (corrupt, or not a tierflow memory "
                                   f"database): {exc}") from None
        self.writes = 0

    def version(self) -> tuple[int, int]:
        """Changes when this connection or any other one commits to the file."""
        return self.writes, self.conn.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class SQLiteVectorStore:
    """Vectors in the ``memories`` table; exact cosine search in numpy over one namespace at a time."""

    def __init__(self, db: SQLiteDB) -> None:
        self.db = db
        self._cache: dict[str, tuple[tuple[int, int], list[tuple[str, str, str, str, str]], np.ndarray]] = {}

    def upsert(self, ns: Namespace, items: Sequence[MemoryItem], vectors: np.ndarray) -> None:
        rows = [(ns.key, i.id, i.run_id, i.kind, i.intent, i.text, i.created_at,
                 np.asarray(v, dtype=np.float32).tobytes()) for i, v in zip(items, vectors, strict=True)]
        with self.db.lock:
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                self.db.conn.executemany("INSERT OR REPLACE INTO memories VALUES (?,?,?,?,?,?,?,?)", rows)
                self.db.conn.execute("COMMIT")
            except BaseException:
                self.db.conn.execute("ROLLBACK")
                raise
            self.db.writes += 1

    def _matrix(self, ns: Namespace) -> tuple[list[tuple[str, str, str, str, str]], np.ndarray]:
        with self.db.lock:
            version = self.db.version()
            cached = self._cache.get(ns.key)
            if cached and cached[0] == version:
                return cached[1], cached[2]
            rows = self.db.conn.execute("SELECT id, run_id, kind, intent, text, vector FROM memories WHERE ns = ? "
                                        "ORDER BY rowid", (ns.key,)).fetchall()
        meta = [r[:5] for r in rows]
        matrix = (np.frombuffer(b"".join(r[5] for r in rows), dtype=np.float32).reshape(len(rows), DIMENSIONS)
                  if rows else np.zeros((0, DIMENSIONS), dtype=np.float32))
        self._cache[ns.key] = (version, meta, matrix)
        return meta, matrix

    def search(self, ns: Namespace, vector: np.ndarray, k: int, filters: RecallFilters) -> list[MemoryHit]:
        meta, matrix = self._matrix(ns)
        if not meta:
            return []
        scores = matrix @ np.asarray(vector, dtype=np.float32)
        if filters.kind or filters.intent or filters.run_id:
            mask = np.array([(not filters.kind or m[2] == filters.kind)
                             and (not filters.intent or m[3] == filters.intent)
                             and (not filters.run_id or m[1] == filters.run_id) for m in meta])
            scores = np.where(mask, scores, -np.inf)
        k = min(k, len(meta))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [MemoryHit(meta[i][0], meta[i][1], meta[i][2], meta[i][4], meta[i][3], float(scores[i]))
                for i in top if np.isfinite(scores[i])]

    def _delete(self, sql: str, args: tuple[object, ...]) -> int:
        with self.db.lock:
            cur = self.db.conn.execute(sql, args)
            self.db.writes += 1
            return cur.rowcount

    def delete_run(self, ns: Namespace, run_id: str, keep: Iterable[str] = ()) -> int:
        keep = list(keep)
        marks = ",".join("?" * len(keep))
        extra = f" AND id NOT IN ({marks})" if keep else ""
        return self._delete(f"DELETE FROM memories WHERE ns = ? AND run_id = ?{extra}", (ns.key, run_id, *keep))

    def delete_namespace(self, ns: Namespace) -> int:
        self._cache.pop(ns.key, None)
        return self._delete("DELETE FROM memories WHERE ns = ?", (ns.key,))

    def count(self, ns: Namespace) -> int:
        with self.db.lock:
            return self.db.conn.execute("SELECT count(*) FROM memories WHERE ns = ?", (ns.key,)).fetchone()[0]

    def close(self) -> None:
        self.db.close()


def _node(row: tuple[str, str, str | None, str]) -> GraphNode:
    return GraphNode(row[0], row[1], json.loads(row[3]), row[2])


class SQLiteGraphStore:
    """The provenance graph in ``nodes`` and ``edges`` tables; a run's graph is written in one transaction."""

    def __init__(self, db: SQLiteDB) -> None:
        self.db = db

    def run_hash(self, ns: Namespace, run_id: str) -> str | None:
        with self.db.lock:
            row = self.db.conn.execute("SELECT props FROM nodes WHERE ns = ? AND key = ?",
                                       (ns.key, f"run:{run_id}")).fetchone()
        return json.loads(row[0]).get("content_hash") if row else None

    def write_run(self, ns: Namespace, record: EpisodeRecord) -> None:
        conn = self.db.conn
        with self.db.lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._delete_run(ns, record.run_id)
                conn.executemany("INSERT OR REPLACE INTO nodes VALUES (?,?,?,?,?)",
                                 [(ns.key, n.key, n.kind, n.run_id, json.dumps(n.props)) for n in record.nodes])
                conn.executemany("INSERT OR IGNORE INTO edges VALUES (?,?,?,?,?)",
                                 [(ns.key, e.src, e.rel, e.dst, record.run_id) for e in record.edges])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.db.writes += 1

    def committed_runs(self, ns: Namespace, run_ids: Iterable[str]) -> dict[str, bool]:
        """Which of ``run_ids`` have committed provenance, each with whether the run was private."""
        keys = [f"run:{r}" for r in run_ids]
        if not keys:
            return {}
        with self.db.lock:
            rows = self.db.conn.execute(f"SELECT run_id, props FROM nodes WHERE ns = ? AND kind = 'Run' AND key IN "
                                        f"({','.join('?' * len(keys))})", (ns.key, *keys)).fetchall()
        return {r[0]: json.loads(r[1]).get("private") is True for r in rows}

    def provenance(self, ns: Namespace, run_id: str) -> Provenance | None:
        with self.db.lock:
            edges = self.db.conn.execute("SELECT src, rel, dst FROM edges WHERE ns = ? AND run_id = ? ORDER BY rowid",
                                         (ns.key, run_id)).fetchall()
            keys = sorted({k for e in edges for k in (e[0], e[2])} | {f"run:{run_id}"})
            rows = self.db.conn.execute(f"SELECT key, kind, run_id, props FROM nodes WHERE ns = ? AND key IN "
                                        f"({','.join('?' * len(keys))})", (ns.key, *keys)).fetchall()
        if not any(r[1] == "Run" for r in rows):
            return None
        return Provenance(run_id, [_node(r) for r in rows], [GraphEdge(*e) for e in edges])

    def neighbours(self, ns: Namespace, key: str, depth: int, limit: int) -> list[GraphNode]:
        seen, frontier = {key}, {key}
        with self.db.lock:
            for _ in range(depth):
                marks = ",".join("?" * len(frontier))
                rows = self.db.conn.execute(
                    f"SELECT dst FROM edges WHERE ns = ? AND src IN ({marks}) UNION "
                    f"SELECT src FROM edges WHERE ns = ? AND dst IN ({marks})",
                    (ns.key, *frontier, ns.key, *frontier)).fetchall()
                frontier = {r[0] for r in rows} - seen
                seen |= frontier
                if not frontier:
                    break
            found = sorted(seen - {key})[: max(limit, 0)]
            if not found:
                return []
            rows = self.db.conn.execute(f"SELECT key, kind, run_id, props FROM nodes WHERE ns = ? AND key IN "
                                        f"({','.join('?' * len(found))}) ORDER BY key", (ns.key, *found)).fetchall()
        return [_node(r) for r in rows]

    def _delete_run(self, ns: Namespace, run_id: str) -> int:
        conn = self.db.conn
        touched = [r[0] for r in conn.execute("SELECT src FROM edges WHERE ns = ? AND run_id = ? UNION "
                                              "SELECT dst FROM edges WHERE ns = ? AND run_id = ?",
                                              (ns.key, run_id, ns.key, run_id))]
        conn.execute("DELETE FROM edges WHERE ns = ? AND run_id = ?", (ns.key, run_id))
        removed = conn.execute("DELETE FROM nodes WHERE ns = ? AND run_id = ?", (ns.key, run_id)).rowcount
        for key in touched:  # shared nodes (entity, tool, agent, ...) no other run points at
            removed += conn.execute("DELETE FROM nodes WHERE ns = ? AND key = ? AND run_id IS NULL AND NOT EXISTS "
                                    "(SELECT 1 FROM edges WHERE ns = ? AND src = ?) AND NOT EXISTS "
                                    "(SELECT 1 FROM edges WHERE ns = ? AND dst = ?)",
                                    (ns.key, key, ns.key, key, ns.key, key)).rowcount
        return removed

    def delete_run(self, ns: Namespace, run_id: str) -> int:
        with self.db.lock:
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                removed = self._delete_run(ns, run_id)
                self.db.conn.execute("COMMIT")
            except BaseException:
                self.db.conn.execute("ROLLBACK")
                raise
            self.db.writes += 1
            return removed

    def delete_namespace(self, ns: Namespace) -> int:
        with self.db.lock:
            self.db.conn.execute("DELETE FROM edges WHERE ns = ?", (ns.key,))
            self.db.writes += 1
            return self.db.conn.execute("DELETE FROM nodes WHERE ns = ?", (ns.key,)).rowcount

    def runs(self, ns: Namespace, limit: int) -> list[GraphNode]:
        with self.db.lock:
            rows = self.db.conn.execute("SELECT key, kind, run_id, props FROM nodes WHERE ns = ? AND kind = 'Run' "
                                        "ORDER BY json_extract(props, '$.created_at') DESC LIMIT ?",
                                        (ns.key, limit)).fetchall()
        return [_node(r) for r in rows]

    def close(self) -> None:
        self.db.close()
