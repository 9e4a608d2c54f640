"""Memory with provenance: recall what this user asked before, answer, and remember how the answer was made.

The embedded store (one SQLite file in tierflow's home) keeps each run's request and answer as vectors and its
provenance as a graph: session → run → intent → plan → subtask → agent → tool call → outcome. Below, the second
run is shown the first one as (stale) context, and the first run's provenance is read back from Python.

    python -m tierflow.examples.memory_recall
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

import tierflow
from tierflow.graphs.loader import GraphContext


def build_graph(tf: tierflow.Tierflow | GraphContext | None = None) -> StateGraph:
    """classify → recall → plan → team → synthesize → remember."""
    tf = tierflow.load(tf)
    graph = StateGraph(tierflow.State)
    graph.add_sequence([
        ("classify", tierflow.classify_intent_node(tf)),
        ("recall", tierflow.recall_node(tf)),  # state["memories"]: this user's earlier requests like this one
        ("plan", tierflow.plan_node(tf, pattern="sequential")),
        ("team", tierflow.team_node(tf.team("sequential"))),  # the members see the memories as context
        ("synthesize", tierflow.synthesize_node(tf)),
        ("remember", tierflow.remember_node(tf)),  # vectors + provenance, once per run id (the thread id)
    ])
    graph.add_edge(START, "classify")
    graph.add_edge("remember", END)
    return graph


if __name__ == "__main__":
    with tierflow.load() as tf:
        graph = tf.compile(build_graph(tf))  # with checkpoints, so each run's final state can be read back
        first = tf.run("What is 17 times 23?", graph=graph, user_id="ana")
        second = tf.run("And what is 17 times 24?", graph=graph, user_id="ana")
        state = graph.get_state({"configurable": {"thread_id": second.run_id}}).values
        print("the second run recalled:", state.get("memories"))
        assert tf.memory is not None, "memory is disabled in the settings"
        for edge in tf.memory.provenance(first.run_id, user_id="ana").edges:
            print(f"  {edge.src} -{edge.rel}-> {edge.dst}")
