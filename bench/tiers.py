"""Tier benchmarks: router overhead per call, mobile tier speed vs raw llama-cpp-python, edge tier.

Prints one JSON object. Every figure is compared with a baseline measured in the same run:
- router overhead: the router vs calling the same chat model directly (a zero-latency scripted model
  isolates the router's own cost; the real mobile tier shows it against real generation);
- mobile: tokens/s and time to first token through tierflow vs raw ``Llama.create_chat_completion``
  with the same GGUF, threads, context, prompt and greedy decoding;
- edge: ``bench/edge.py``'s measurements (load cold/cached, fp32 vs int8), when that tier is installed.

Usage: python bench/tiers.py [--calls 2000] [--tokens 64] [--reps 5] [--skip-edge]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage

from tierflow.runtimes.config import TierConfig
from tierflow.runtimes.mobile import shipped_model_path
from tierflow.runtimes.registry import TierRegistry
from tierflow.runtimes.router import TierRouter

PROMPT = "Write a short paragraph about the sea."
# ChatLlamaCpp's sampling defaults, which the mobile tier keeps; the raw baseline uses the same.
SAMPLING = {"temperature": 0.0, "top_p": 0.95, "top_k": 40, "repeat_penalty": 1.1, "stop": []}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def router_overhead(calls: int) -> dict[str, object]:
    """Direct vs routed calls on a zero-latency model: the difference is the router's own work."""
    registry = TierRegistry({"mobile": TierConfig(kind="llamacpp")}, "mobile")
    model = GenericFakeChatModel(messages=iter([AIMessage("ok")] * (calls * 3)))
    registry._models["mobile"] = model  # bench only: a zero-latency model in place of llama.cpp
    router = TierRouter(registry=registry)
    message = [HumanMessage("Say hi.")]
    direct, routed = [], []
    for _ in range(50):  # warm both paths
        model.invoke(message)
        router.invoke(message)
    for _ in range(calls):  # interleaved so machine noise hits both alike
        t0 = time.perf_counter()
        model.invoke(message)
        t1 = time.perf_counter()
        router.invoke(message)
        t2 = time.perf_counter()
        direct.append((t1 - t0) * 1000)
        routed.append((t2 - t1) * 1000)
    added = [r - d for r, d in zip(routed, direct, strict=True)]
    return {
        "calls": calls,
        "direct_p50_ms": round(percentile(direct, 0.5), 4), "direct_p95_ms": round(percentile(direct, 0.95), 4),
        "router_p50_ms": round(percentile(routed, 0.5), 4), "router_p95_ms": round(percentile(routed, 0.95), 4),
        "added_p50_ms": round(percentile(routed, 0.5) - percentile(direct, 0.5), 4),
        "added_p95_ms": round(percentile(routed, 0.95) - percentile(direct, 0.95), 4),
        "added_pairwise_p95_ms": round(percentile(added, 0.95), 4),
        "target_added_p95_ms": 0.2,
    }


def mobile_speed(tokens: int, reps: int, threads: int) -> dict[str, object]:
    """Tokens/s and first-token time: tierflow's mobile tier (direct and routed) vs raw llama-cpp-python."""
    from llama_cpp import Llama

    path = str(shipped_model_path())
    config = TierConfig(kind="llamacpp", n_ctx=2048, n_threads=threads, max_tokens=tokens, json_mode="json_object",
                        timeout_s=600)
    registry = TierRegistry({"mobile": config}, "mobile")
    tier = registry.chat_model("mobile")
    router = TierRouter(registry=registry)
    raw = Llama(model_path=path, n_ctx=2048, n_threads=threads, n_batch=512, seed=0, verbose=False)
    messages = [{"role": "user", "content": PROMPT}]

    def raw_call() -> tuple[int, float]:
        t0 = time.perf_counter()
        out = raw.create_chat_completion(messages, max_tokens=tokens, **SAMPLING)
        return out["usage"]["completion_tokens"], time.perf_counter() - t0

    def lc_call(model) -> tuple[int, float]:
        t0 = time.perf_counter()
        reply = model.invoke([HumanMessage(PROMPT)], max_tokens=tokens)
        return reply.usage_metadata["output_tokens"], time.perf_counter() - t0

    def ttft(stream_fn) -> float:
        t0 = time.perf_counter()
        for piece in stream_fn():
            if piece:
                return time.perf_counter() - t0
        return float("nan")

    rows: dict[str, list[tuple[int, float]]] = {"raw": [], "tier": [], "router": []}
    first: dict[str, list[float]] = {"raw": [], "tier": []}
    raw_call()
    lc_call(tier)
    for _ in range(reps):  # interleaved repetitions
        rows["raw"].append(raw_call())
        rows["tier"].append(lc_call(tier))
        rows["router"].append(lc_call(router))
        first["raw"].append(ttft(lambda: (c["choices"][0]["delta"].get("content") for c in raw.create_chat_completion(
            messages, max_tokens=tokens, stream=True, **SAMPLING))))
        first["tier"].append(ttft(lambda: (c.text for c in tier.stream([HumanMessage(PROMPT)], max_tokens=tokens))))

    def tps(name: str) -> float:
        return statistics.median(n / s for n, s in rows[name])

    return {
        "threads": threads, "max_tokens": tokens, "reps": reps,
        "tokens_generated": {k: [n for n, _ in v] for k, v in rows.items()},
        "raw_tokens_per_s": round(tps("raw"), 2),
        "tier_tokens_per_s": round(tps("tier"), 2),
        "router_tokens_per_s": round(tps("router"), 2),
        "tier_vs_raw": round(tps("tier") / tps("raw"), 3),
        "router_vs_raw": round(tps("router") / tps("raw"), 3),
        "target_vs_raw": 0.95,
        "ttft_raw_ms": round(statistics.median(first["raw"]) * 1000, 1),
        "ttft_tier_ms": round(statistics.median(first["tier"]) * 1000, 1),
    }


def edge(tokens: int) -> dict[str, object]:
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from edge import measure  # type: ignore[import-not-found]
    except ImportError as exc:
        return {"measured": False, "reason": f"bench/edge.py unavailable: {exc}"}
    return measure(max_tokens=tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-edge", action="store_true")
    args = parser.parse_args()
    result: dict[str, object] = {"machine": {"cpus": os.cpu_count()}}
    result["router_overhead"] = router_overhead(args.calls)
    result["mobile"] = mobile_speed(args.tokens, args.reps, args.threads)
    if not args.skip_edge:
        result["edge"] = edge(args.tokens)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
