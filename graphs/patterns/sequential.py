"""Sequential pattern: agents work through the subtasks in order, each seeing every earlier result."""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from tierflow.agents.plan import Subtask
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.state import TeamState, from_state, to_state


def build_sequential(worker: WorkerAgent) -> CompiledStateGraph:
    """A subgraph with one ``work`` node run once per subtask, so each finished subtask is checkpointed."""

    def work(state: TeamState, config: RunnableConfig) -> TeamState:
        done = state.get("results", [])
        subtask = from_state(Subtask, state["subtasks"][len(done)])
        prior = {r["subtask_id"]: r["output"] for r in done if r.get("output")}
        result = worker.run(subtask, state["request"], prior, state.get("memories", []), config)
        return {"results": [to_state(result)]}

    def more(state: TeamState) -> str:
        return "work" if len(state.get("results", [])) < len(state.get("subtasks", [])) else END

    graph = StateGraph(TeamState)
    graph.add_node("work", work)
    graph.add_conditional_edges(START, more, ["work", END])
    graph.add_conditional_edges("work", more, ["work", END])
    return graph.compile(name="sequential")
