"""Overhead of tracing on a 100-node run with scripted models: tracing on vs. off, measured in the same run.

Prints one JSON object. Target: tracing adds at most 10% wall time. "on" exports to a local OTLP
receiver (tests/fixtures_tracing.py) through the real Langfuse SDK, flush included.

    .venv/bin/python bench/tracing.py [--nodes 100] [--repeats 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from graphs.runner import run_request
from tests.fixtures_tracing import OtlpReceiver, _handler, _Server
from tests.scripted import ScriptedChatModel
from tracing import Tracing, open_tracing


class State(TypedDict, total=False):
    request: str
    user_id: str
    answer: str
    step: int


def build(nodes: int, model: ScriptedChatModel) -> Any:
    """A chain of ``nodes`` nodes, each making one model call (as an agent step would)."""

    def step(state: State, config: RunnableConfig) -> State:
        reply = model.invoke([HumanMessage(f"{state['request']} step {state.get('step', 0)}")], config)
        return {"answer": str(reply.content), "step": state.get("step", 0) + 1}

    graph = StateGraph(State)
    names = [f"n{i}" for i in range(nodes)]
    for name in names:
        graph.add_node(name, step)
    graph.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        graph.add_edge(a, b)
    graph.add_edge(names[-1], END)
    return graph.compile(checkpointer=InMemorySaver())


def once(nodes: int, tracing: Tracing | None) -> float:
    """Wall time of one run, flush of its trace included (tracing itself is set up once per process)."""
    model = ScriptedChatModel.of([f"reply {i}" for i in range(nodes)])
    graph = build(nodes, model)
    started = time.perf_counter()
    callbacks = [tracing.handler(costs={"scripted": (0.1, 0.2)})] if tracing else []
    run_request(graph, "benchmark request", run_id=f"bench-{time.time_ns()}", callbacks=callbacks,
                recursion_limit=nodes + 10)
    if tracing is not None:
        tracing.flush()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    receiver = OtlpReceiver()
    server = _Server(_handler(receiver))
    receiver.base_url = server.url
    tracing = open_tracing(receiver.settings(flush_timeout_s=30), env={})
    try:
        once(args.nodes, None)  # warm-up: imports, graph compilation paths
        once(args.nodes, tracing)
        off, on = [], []
        for _ in range(args.repeats):  # interleaved so machine load hits both alike
            off.append(once(args.nodes, None))
            on.append(once(args.nodes, tracing))
    finally:
        if tracing is not None:
            tracing.close()
        server.stop()
    off_s, on_s = statistics.median(off), statistics.median(on)
    print(json.dumps({
        "benchmark": "tracing_overhead", "nodes": args.nodes, "repeats": args.repeats,
        "off_median_s": round(off_s, 4), "on_median_s": round(on_s, 4),
        "overhead_ratio": round(on_s / off_s, 3), "target_ratio": 1.10, "meets_target": on_s / off_s <= 1.10,
        "spans_received": len(receiver.spans),
    }))


if __name__ == "__main__":
    main()
