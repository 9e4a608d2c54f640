"""Prebuilt nodes: tierflow's steps as LangGraph nodes for any StateGraph whose state has tierflow.State's keys.

Each factory returns a node ``(state, config) -> update``; the orchestrator is these nodes wired in a fixed order.

| node | reads | writes |
|---|---|---|
| classify_intent_node | request | intent, route ("in_scope" / "out_of_scope"), notes |
| recall_node | request, user_id, private | memories (and private, notes when a private memory is recalled) |
| plan_node | request, intent, memories, route | plan, pattern, notes (nothing when route is "out_of_scope") |
| team_node | request, memories, plan (or its fixed subtasks) | results, pattern, decisions (and plan, when fixed) |
| synthesize_node | request, results | answer, status, errors, notes |
| remember_node | everything above; the run id is the thread id | notes (only when the memory write failed) |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig

from tierflow.agents.plan import Plan, Subtask, topological_order
from tierflow.api import State, Tierflow
from tierflow.graphs.orchestrator import keep_private, orchestrator_nodes
from tierflow.graphs.patterns.common import TeamError
from tierflow.graphs.state import from_state, to_state
from tierflow.graphs.team import Team, check_subtasks

Node = Callable[..., dict[str, Any]]


def _node(tf: Tierflow, name: str, pattern: str | None = None) -> Node:
    nodes = tf._nodes.get(pattern)
    if nodes is None:
        nodes = tf._nodes[pattern] = orchestrator_nodes(tf.deps, pattern)
    return nodes[name]


def classify_intent_node(tf: Tierflow) -> Node:
    """Classify ``request`` with the configured intent model; out of scope or below ``min_confidence`` routes
    ``out_of_scope`` unless settings say ``out_of_scope = "escalate"``."""
    return _node(tf, "classify_intent")


def recall_node(tf: Tierflow) -> Node:
    """Recall this user's memories relevant to ``request`` as stale context (earlier requests, never answers)."""
    return _node(tf, "recall")


def plan_node(tf: Tierflow, *, pattern: str | None = None) -> Node:
    """Decompose ``request`` into a validated plan (the intent's template when it has one step); ``pattern`` forces
    the plan's pattern. A request routed ``out_of_scope`` is left unplanned."""
    planned = _node(tf, "plan", pattern)

    def plan(state: State, config: RunnableConfig) -> State:
        if state.get("route") == "out_of_scope":
            return {}
        return planned(state, config)

    return plan


def team_node(team: Team, *, subtasks: Sequence[Subtask | Mapping[str, Any]] | None = None) -> Node:
    """Run ``team`` on the state's ``plan`` (in dependency order), or on the fixed ``subtasks`` given here."""
    fixed = Plan(pattern=team.pattern, subtasks=check_subtasks(subtasks), source="template",  # type: ignore[arg-type]
                 notes=["the graph's fixed subtasks"]) if subtasks is not None else None

    def run_team(state: State, config: RunnableConfig) -> State:
        if fixed is None and not state.get("plan"):
            raise TeamError("team_node found no plan in the state: put plan_node before it (it leaves requests "
                            "routed out_of_scope unplanned: route those elsewhere), or give it fixed subtasks")
        plan = fixed or from_state(Plan, state["plan"])
        output = team.graph.invoke({"request": state["request"], "memories": state.get("memories", []),
                                    "subtasks": [to_state(s) for s in topological_order(plan)], "results": []},
                                   keep_private(config, state))
        update: State = {"results": output.get("results", []), "pattern": team.pattern}
        if output.get("decisions"):
            update["decisions"] = output["decisions"]
        if fixed is not None:  # synthesize and remember read the plan (provenance: plan → subtasks)
            update["plan"] = to_state(fixed)
        return update

    return run_team


def synthesize_node(tf: Tierflow) -> Node:
    """One answer from ``results`` (a single result or the peers' decision is the answer; numbers no result gave
    are refused); ``status`` is done, partial or failed, with ``errors`` saying why."""
    return _node(tf, "synthesize")


def remember_node(tf: Tierflow) -> Node:
    """Write the run (request, intent, plan, results, answer) to memory with its provenance, once per run id."""
    return _node(tf, "remember")


def route_by_intent(routes: Mapping[str, str], *, default: str,
                    out_of_scope: str | None = None) -> Callable[[State], str]:
    """A router for ``add_conditional_edges``: the node for the intent's label, ``default`` for other labels, and
    ``out_of_scope`` (when given) for requests classify_intent routed out of scope."""
    def route(state: State) -> str:
        if out_of_scope is not None and state.get("route") == "out_of_scope":
            return out_of_scope
        return routes.get(str((state.get("intent") or {}).get("label")), default)

    return route
