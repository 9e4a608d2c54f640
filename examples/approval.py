"""A hierarchical team with a human approval step: the run stops for a human and is resumed from Python.

A supervisor assigns an outline and a draft to team members and reviews each result; then the graph asks a
human (a LangGraph interrupt) whether to publish the draft. The run ends ``waiting``; ``tf.resume(run_id,
answer=...)`` continues it from its checkpoint, without running the team again.

    python -m tierflow.examples.approval
"""

from __future__ import annotations

import sys

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

import tierflow
from tierflow.graphs.loader import GraphContext

SUBTASKS = [
    {"id": "outline", "goal": "List the two key facts the announcement must state", "role": "researcher"},
    {"id": "draft", "goal": "Write a two-sentence announcement from the outline", "role": "writer",
     "depends_on": ["outline"]},
]
YES = {"y", "yes", "ok", "approve", "approved", "publish"}


def approve(state: tierflow.State) -> tierflow.State:
    """Ask a human; ``interrupt`` pauses the run here and returns the answer once the run is resumed."""
    draft = next((r["output"] for r in state["results"] if r["subtask_id"] == "draft"), "")
    answer = str(interrupt({"question": "Publish this announcement? (yes/no)", "draft": draft})).strip()
    if answer.lower() in YES:
        return {"answer": draft, "status": "done", "notes": [f"approved by a human ({answer!r})"]}
    return {"answer": "Not published.", "status": "done", "notes": [f"rejected by a human ({answer!r})"]}


def build_graph(tf: tierflow.Tierflow | GraphContext | None = None) -> StateGraph:
    """team (hierarchical, fixed subtasks) → approve (a human) → end."""
    tf = tierflow.load(tf)
    graph = StateGraph(tierflow.State)
    graph.add_node("team", tierflow.team_node(tf.team("hierarchical", max_redos=1), subtasks=SUBTASKS))
    graph.add_node("approve", approve)
    graph.add_edge(START, "team")
    graph.add_edge("team", "approve")
    graph.add_edge("approve", END)
    return graph


if __name__ == "__main__":
    with tierflow.load() as tf:
        graph = tf.compile(build_graph(tf))  # interrupts need a checkpointer: the configured one
        result = tf.run(" ".join(sys.argv[1:]) or "Announce that the office opens on Monday at 9.", graph=graph)
        print(result.status, "-", (result.interrupt or {}).get("question"), "\n", (result.interrupt or {}).get("draft"))
        answer = input("> ") if sys.stdin.isatty() else "yes"
        print(tf.resume(result.run_id, answer=answer, graph=graph).answer)
