"""A research team: members work in parallel with tools from MCP servers, then a writer combines their findings.

The researcher searches text notes (tierflow's notes MCP server), the analyst computes with the calculator MCP
server; both run at once, the writer runs when both are done. Notes live in ``$TIERFLOW_NOTES`` (default: the
``notes`` folder in tierflow's home).

    python -m tierflow.examples.research "The hotel costs 120 euros a night: what do 3 nights cost?"
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from langgraph.graph import END, START, StateGraph

import tierflow
from tierflow.graphs.loader import GraphContext

# Each member may call only the tools its subtask lists; the writer gets the other two results as context.
SUBTASKS: list[dict[str, Any]] = [
    {"id": "facts", "goal": "Search the notes for the facts the request needs", "role": "researcher",
     "tools": ["search_notes", "read_note"]},
    {"id": "numbers", "goal": "Compute the numbers the request asks for", "role": "analyst", "tools": ["calculate"]},
    {"id": "report", "goal": "Answer the request in two sentences from the facts and the numbers", "role": "writer",
     "depends_on": ["facts", "numbers"]},
]


def mcp_servers(notes: Path) -> dict[str, dict[str, Any]]:
    """The two stdio MCP servers shipped with tierflow, declared as in ``[mcp_servers.NAME]``."""
    return {"calculator": {"command": sys.executable, "args": ["-m", "tierflow.mcp_servers.calculator"]},
            "notes": {"command": sys.executable, "args": ["-m", "tierflow.mcp_servers.notes", "--root", str(notes)],
                      "tools": ["search_notes", "read_note", "list_notes"]}}  # read-only: no write or delete


def build_graph(tf: tierflow.Tierflow | GraphContext | None = None, notes: Path | None = None) -> StateGraph:
    """research (a parallel team with MCP tools) → synthesize."""
    tf = tierflow.load(tf)
    notes = notes or Path(os.environ.get("TIERFLOW_NOTES") or tf.settings.home / "notes")
    team = tf.team("parallel", tools=tf.mcp_tools(mcp_servers(notes)), max_concurrency=2)
    graph = StateGraph(tierflow.State)
    graph.add_node("research", tierflow.team_node(team, subtasks=SUBTASKS))
    graph.add_node("synthesize", tierflow.synthesize_node(tf))
    graph.add_edge(START, "research")
    graph.add_edge("research", "synthesize")
    graph.add_edge("synthesize", END)
    return graph


if __name__ == "__main__":
    with tierflow.load() as tf:
        result = tf.run(" ".join(sys.argv[1:]) or "The hotel costs 120 euros a night: what do 3 nights cost?",
                        graph=build_graph(tf))
        for r in result.results:
            print(f"{r['subtask_id']} ({r['role']}): {r['output']}  tools: {[c['tool'] for c in r['tool_calls']]}")
        print(result.answer)
