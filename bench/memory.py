"""Memory benchmark: recall@10 against exact brute force, p95 recall latency and ingestion rate per backend.

Prints one JSON object. The baseline, measured in the same run, is exact brute-force search in numpy over
the same vectors: recall@10 is measured against it and latencies are also given as ratios to it.
Backends: embedded (SQLite), and Neo4j + Weaviate when installed (started like the tests start them).

    .venv/bin/python bench/memory.py [--n 10000] [--queries 200] [--backends embedded,servers]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tierflow.memory.embedded import SQLiteDB, SQLiteGraphStore, SQLiteVectorStore
from tierflow.memory.embeddings import Embedder
from tierflow.memory.provenance import build_record
from tierflow.memory.store import MemoryStore
from tierflow.memory.types import Namespace, RecallFilters

SUBJECTS = ["the budget", "a trip", "the report", "my sister", "the server", "a recipe", "the invoice", "our team",
            "the garden", "a poem", "the contract", "the database", "a workout", "the flight", "my thesis"]
VERBS = ["plan", "summarise", "fix", "compare", "schedule", "translate", "estimate", "review", "draft", "explain"]
PLACES = ["Lisbon", "Oslo", "Tokyo", "Nairobi", "Lima", "Berlin", "Austin", "Hanoi", "Cairo", "Quebec", "Perth"]
DETAILS = ["before Friday", "under 200 euros", "for ten people", "in French", "with charts", "step by step",
           "in two lines", "for a beginner", "using Python", "without sugar", "by train", "for the board"]


def texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(VERBS).capitalize()} {rng.choice(SUBJECTS)} in {rng.choice(PLACES)} {rng.choice(DETAILS)}"
            f" (note {rng.randrange(10**6)})" for _ in range(n)]


def episodes(requests: list[str]) -> list[dict]:
    return [{"run_id": f"run-{i}", "request": r, "answer": "", "intent": {"label": "plan"}} for i, r in
            enumerate(requests)]


def p95(values: list[float]) -> float:
    return round(float(np.percentile(values, 95)), 3)


def bench_store(name: str, store: MemoryStore, eps: list[dict], vectors: np.ndarray, queries: np.ndarray,
                exact: list[list[str]]) -> dict:
    """Ingest precomputed vectors through the store's write path, then time and score searches."""
    ns = Namespace(store.tenant, "bench")
    records = [build_record(e, ns.key) for e in eps]
    started = time.perf_counter()
    for i in range(0, len(records), 500):
        chunk = records[i:i + 500]
        store.vectors.upsert(ns, [r.items[0] for r in chunk], vectors[i:i + len(chunk)])
        for r in chunk:
            store.graph.write_run(ns, r)
    ingest_s = time.perf_counter() - started
    store.vectors.search(ns, queries[0], 10, RecallFilters())  # warm caches
    latencies, hits = [], 0
    for q, truth in zip(queries, exact, strict=True):
        t = time.perf_counter()
        found = store.vectors.search(ns, q, 10, RecallFilters())
        store.graph.committed_runs(ns, {h.run_id for h in found})
        latencies.append((time.perf_counter() - t) * 1000)
        hits += len({h.run_id for h in found} & set(truth))
    return {"backend": name, "memories": len(records), "ingest_per_s": round(len(records) / ingest_s, 1),
            "recall_at_10": round(hits / (10 * len(queries)), 4), "p95_recall_ms": p95(latencies),
            "p50_recall_ms": round(float(np.median(latencies)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backends", default="embedded,servers")
    args = parser.parse_args()
    embedder = Embedder()
    requests = texts(args.n, 1)
    eps = episodes(requests)
    docs = [f"Request: {r}\nAnswer: " for r in requests]
    embedder.embed(docs[:8])  # load the model outside the timing
    t = time.perf_counter()
    vectors = embedder.embed(docs)
    embed_rate = args.n / (time.perf_counter() - t)
    qtexts = texts(args.queries, 2)
    qlat = []
    for q in qtexts[:50]:
        t = time.perf_counter()
        embedder.embed_one(q)
        qlat.append((time.perf_counter() - t) * 1000)
    queries = embedder.embed(qtexts)
    # baseline: exact brute force in numpy
    lat, exact = [], []
    for q in queries:
        t = time.perf_counter()
        top = np.argsort(-(vectors @ q))[:10]
        lat.append((time.perf_counter() - t) * 1000)
        exact.append([f"run-{i}" for i in top])
    result: dict = {"n": args.n, "queries": args.queries, "embed_per_s": round(embed_rate, 1),
                    "query_embed_p95_ms": p95(qlat), "baseline": {"name": "numpy exact brute force",
                                                                   "p95_ms": p95(lat)}, "backends": []}
    with tempfile.TemporaryDirectory() as tmp:
        if "embedded" in args.backends:
            db = SQLiteDB(Path(tmp) / "bench.sqlite")
            with MemoryStore(SQLiteVectorStore(db), SQLiteGraphStore(db), embedder) as store:
                result["backends"].append(bench_store("embedded", store, eps, vectors, queries, exact))
        if "servers" in args.backends:
            result["backends"].append(bench_servers(Path(tmp), embedder, eps, vectors, queries, exact))
    for b in result["backends"]:
        if "p95_recall_ms" in b:
            b["p95_vs_baseline"] = round(b["p95_recall_ms"] / max(result["baseline"]["p95_ms"], 1e-6), 2)
    print(json.dumps(result))


def bench_servers(tmp: Path, embedder: Embedder, eps: list[dict], vectors: np.ndarray, queries: np.ndarray,
                  exact: list[list[str]]) -> dict:
    """Neo4j (graph) + Weaviate (vectors), started from the installed caches; skipped with the reason if not."""
    from bench.memory_servers import ServerMissing, start_neo4j, start_weaviate
    from tierflow.memory.neo4j_graph import Neo4jGraphStore
    from tierflow.memory.weaviate_vectors import WeaviateVectorStore

    try:
        neo = start_neo4j(tmp / "neo4j")
    except ServerMissing as exc:
        return {"backend": "neo4j+weaviate", "skipped": str(exc)}
    try:
        (tmp / "weaviate").mkdir()
        try:
            wv = start_weaviate(tmp / "weaviate" / "data")
        except ServerMissing as exc:
            return {"backend": "neo4j+weaviate", "skipped": str(exc)}
        try:
            store = MemoryStore(WeaviateVectorStore(wv.url, grpc_port=wv.grpc_port, timeout_s=60),
                                Neo4jGraphStore(neo.url, timeout_s=60), embedder, tenant=f"b{uuid.uuid4().hex[:8]}")
            with store:
                return bench_store("neo4j+weaviate", store, eps, vectors, queries, exact)
        finally:
            wv.stop()
    finally:
        neo.stop()


if __name__ == "__main__":
    main()
