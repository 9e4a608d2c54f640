"""Overhead of tracing on a 100-node run with scripted models: tracing on vs. off, measured in the same run.

Prints one JSON object. Target: tracing adds at most 10% wall time. "on" exports through the real
Langfuse SDK to a local OTLP receiver (bench/otlp_receiver.py) running in its own process (as a Langfuse server
would), so the receiver's decoding does not count against the run. Three figures per latency:

* ``run``: wall time until ``run_request`` returns; the SDK exports in its background thread (its
  design), and the benchmark flushes between runs, outside the timing, so no export overlaps a run.
* ``run_flushed``: the same run plus a blocking flush of its whole trace: every byte of tracing work.
* ``--model-latency-ms``: the same chain with a model that takes that long per call (0 = scripted,
  the issue's case; any real tier takes tens of ms or more).

    .venv/bin/python bench/tracing.py [--nodes 100] [--repeats 7] [--model-latency-ms 0 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from tierflow.graphs.runner import run_request
from tierflow.tracing import Tracing, open_tracing

RECEIVER = Path(__file__).resolve().parent / "otlp_receiver.py"


class State(TypedDict, total=False):
    request: str
    user_id: str
    answer: str
    step: int


class FixedLatencyModel(BaseChatModel):
    """A scripted model (the one fake DESIGN.md allows in benchmarks): ``reply N`` after ``latency_s``.

    Its replies carry a tier, a model name and token usage like a real tier's, so the tracing handler does the
    same work per generation (tier, model, cost) as on a real run.
    """

    latency_s: float = 0.0
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": "scripted", "tier": "scripted"}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        if self.latency_s:
            time.sleep(self.latency_s)
        self.calls += 1
        reply = AIMessage(f"reply {self.calls}", usage_metadata={"input_tokens": 10, "output_tokens": 5,
                                                                  "total_tokens": 15},
                          response_metadata={"tier": "scripted", "model_name": "scripted"})
        return ChatResult(generations=[ChatGeneration(message=reply)])


def build(nodes: int, model: BaseChatModel) -> Any:
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


def once(nodes: int, latency_s: float, tracing: Tracing | None) -> tuple[float, float]:
    """(run wall time, run + flush wall time) of one run on a fresh graph."""
    graph = build(nodes, FixedLatencyModel(latency_s=latency_s))
    started = time.perf_counter()
    callbacks = [tracing.handler(costs={"scripted": (0.1, 0.2)})] if tracing else []
    run_request(graph, "benchmark request", run_id=f"bench-{time.time_ns()}", callbacks=callbacks,
                recursion_limit=nodes + 10)
    ran = time.perf_counter() - started
    if tracing is not None:
        tracing.flush()
    return ran, time.perf_counter() - started


def measure(nodes: int, latency_s: float, repeats: int, tracing: Tracing) -> dict[str, Any]:
    once(nodes, latency_s, None)  # warm-up: imports, graph compilation paths
    once(nodes, latency_s, tracing)
    off, on, flushed = [], [], []
    for _ in range(repeats):  # interleaved so machine load hits both alike
        off.append(once(nodes, latency_s, None)[0])
        run, total = once(nodes, latency_s, tracing)
        on.append(run)
        flushed.append(total)
    off_s, on_s, flushed_s = (statistics.median(x) for x in (off, on, flushed))
    return {"model_latency_ms": latency_s * 1000, "off_median_s": round(off_s, 4), "on_median_s": round(on_s, 4),
            "on_flushed_median_s": round(flushed_s, 4), "overhead_ratio": round(on_s / off_s, 3),
            "overhead_ratio_flushed": round(flushed_s / off_s, 3),
            "added_ms_per_node": round((on_s - off_s) / nodes * 1000, 3),
            "added_ms_per_node_flushed": round((flushed_s - off_s) / nodes * 1000, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--model-latency-ms", type=float, nargs="+", default=[0.0, 5.0])
    args = parser.parse_args()
    receiver = subprocess.Popen([sys.executable, str(RECEIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
    assert receiver.stdin is not None and receiver.stdout is not None
    try:
        tracing = open_tracing(json.loads(receiver.stdout.readline()), env={})
        assert tracing is not None
        try:
            results = [measure(args.nodes, ms / 1000, args.repeats, tracing) for ms in args.model_latency_ms]
        finally:
            tracing.close()
        receiver.stdin.write("count\n")
        receiver.stdin.flush()
        spans = int(receiver.stdout.readline())
    finally:
        receiver.stdin.close()
        receiver.wait(timeout=30)
    primary = results[0]
    print(json.dumps({
        "benchmark": "tracing_overhead", "nodes": args.nodes, "repeats": args.repeats, "results": results,
        "target_ratio": 1.10, "meets_target": primary["overhead_ratio"] <= 1.10,
        "meets_target_flushed": primary["overhead_ratio_flushed"] <= 1.10, "spans_received": spans,
    }))


if __name__ == "__main__":
    main()
