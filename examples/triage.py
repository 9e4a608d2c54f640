"""Triage: classify the request's intent, then hand it to the team that does that kind of work.

    python -m tierflow.examples.triage "What is 17 times 23?"
    tierflow run --graph tierflow.examples.triage:build_graph "Write a haiku about the sea"
"""

from __future__ import annotations

import sys

from langgraph.graph import END, START, StateGraph

import tierflow
from tierflow.graphs.loader import GraphContext

# intent label -> the team for it; other labels go to the writers, out-of-scope requests to "decline"
ROUTES = {"calculate": "analysts", "plan": "planners"}
DECLINED = "Sorry, I only calculate, explain, write and plan."


def decline(state: tierflow.State) -> tierflow.State:
    """A plain node beside the prebuilt ones: answer without running any agent."""
    return {"answer": DECLINED, "status": "done", "results": []}


def build_graph(tf: tierflow.Tierflow | GraphContext | None = None) -> StateGraph:
    """classify → plan → (the intent's team | decline) → synthesize."""
    tf = tierflow.load(tf)
    graph = StateGraph(tierflow.State)
    graph.add_node("classify", tierflow.classify_intent_node(tf))
    graph.add_node("plan", tierflow.plan_node(tf))  # leaves out-of-scope requests unplanned
    graph.add_node("analysts", tierflow.team_node(tf.team("sequential")))  # one step after another, with tools
    graph.add_node("planners", tierflow.team_node(tf.team("hierarchical")))  # a supervisor assigns and reviews
    graph.add_node("writers", tierflow.team_node(tf.team("parallel", max_concurrency=2)))  # drafts at once
    graph.add_node("decline", decline)
    graph.add_node("synthesize", tierflow.synthesize_node(tf))
    graph.add_edge(START, "classify")
    graph.add_edge("classify", "plan")
    graph.add_conditional_edges("plan", tierflow.route_by_intent(ROUTES, default="writers", out_of_scope="decline"),
                                ["analysts", "planners", "writers", "decline"])
    for team in ("analysts", "planners", "writers"):
        graph.add_edge(team, "synthesize")
    graph.add_edge("synthesize", END)
    graph.add_edge("decline", END)
    return graph


if __name__ == "__main__":
    with tierflow.load() as tf:
        result = tf.run(" ".join(sys.argv[1:]) or "What is 17 times 23?", graph=build_graph(tf))
        print(f"[{(result.intent or {}).get('label')} → {result.pattern}] {result.answer}")
