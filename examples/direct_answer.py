"""An example user graph: skip planning and let the synthesizer's tier answer directly.

Run it with ``tierflow run --graph tierflow.examples.direct_answer:build_graph "..."`` from the repo root.
"""

from __future__ import annotations

from typing import TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from tierflow.graphs.loader import GraphContext


class State(TypedDict, total=False):
    request: str
    user_id: str
    answer: str


def build_graph(ctx: GraphContext) -> StateGraph:
    """One node calling the configured synthesizer model; tierflow compiles it with its checkpointer."""
    model = ctx.deps.synthesizer.model

    def answer(state: State, config: RunnableConfig) -> State:
        return {"answer": model.invoke(state["request"], config).text.strip()}

    graph = StateGraph(State)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph
