"""Hierarchical pattern: a supervisor assigns each subtask to a member and reviews the result.

assign → work → review, then either redo (back to work with the reviewer's feedback) or accept
(next subtask). Redos per subtask and supervisor calls per run are bounded: past a bound the
deterministic fallback decides, and the decision log says so. A member may be a whole team
(:class:`tierflow.graphs.team.TeamAgent`), so teams nest.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Annotated, Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from tierflow.agents.plan import Subtask
from tierflow.agents.supervisor import Decision, Supervisor
from tierflow.agents.worker import WorkerAgent, WorkerResult
from tierflow.graphs.patterns.common import Agent, HumanPolicy, Roster, TeamError, ask_human, run_agent, with_human
from tierflow.graphs.state import TeamState, from_state, to_state


class HierarchicalState(TeamState, total=False):
    """TeamState plus where the supervisor is: the subtask cursor, the assignment, the last attempt."""

    cursor: int
    assignment: dict[str, Any]
    attempt_result: dict[str, Any]
    decisions: Annotated[list[dict[str, Any]], operator.add]
    supervisor_calls: int


def build_hierarchical(members: WorkerAgent | Mapping[str, Agent], *, supervisor: Supervisor | None = None,
                       max_redos: int = 1, max_supervisor_calls: int = 50, branch_timeout_s: float | None = None,
                       ask: HumanPolicy | None = None, name: str = "hierarchical") -> CompiledStateGraph:
    """The hierarchical subgraph; the supervisor defaults to one on the worker's own model."""
    if max_redos < 0 or max_supervisor_calls < 0:
        raise TeamError("max_redos and max_supervisor_calls must not be negative")
    roster = Roster(members)
    if supervisor is None:
        supervisor = Supervisor(members.model if isinstance(members, WorkerAgent) else None)
    boss = supervisor
    fallback_only = Supervisor(None)

    def decider(state: HierarchicalState) -> tuple[Supervisor, str | None]:
        if state.get("supervisor_calls", 0) >= max_supervisor_calls:
            return fallback_only, f"supervisor call budget of {max_supervisor_calls} spent"
        return boss, None

    def assign(state: HierarchicalState, config: RunnableConfig) -> HierarchicalState:
        subtasks = state.get("subtasks", [])
        roster.check(subtasks)
        cursor = state.get("cursor", 0)
        if cursor >= len(subtasks):
            return {}
        subtask = from_state(Subtask, subtasks[cursor])
        chooser, why = decider(state)
        decision = chooser.assign(subtask, roster.names, state["request"], config)
        if why:
            decision.reason = why
        return {"assignment": {"subtask_id": subtask.id, "member": decision.choice, "attempt": 1, "feedback": None},
                "decisions": [to_state(decision)], "supervisor_calls": state.get("supervisor_calls", 0)
                + (chooser is boss and boss.model is not None)}

    def work(state: HierarchicalState, config: RunnableConfig) -> HierarchicalState:
        job = state["assignment"]
        subtask = from_state(Subtask, state["subtasks"][state.get("cursor", 0)])
        answer = ask_human(ask, subtask)
        member = job["member"]
        goal = subtask.goal
        if job.get("feedback"):
            goal = f"{goal}\nReviewer feedback on your previous attempt: {job['feedback']}"
        task = subtask.model_copy(update={"goal": goal, "role": member})
        prior = {r["subtask_id"]: r["output"] for r in state.get("results", []) if r.get("output")}
        result = run_agent(roster.agent(member), task, state["request"], with_human(prior, answer),
                           state.get("memories", []), config, branch_timeout_s)
        return {"attempt_result": to_state(result.model_copy(update={"subtask_id": subtask.id}))}

    def review(state: HierarchicalState, config: RunnableConfig) -> HierarchicalState:
        job = state["assignment"]
        cursor = state.get("cursor", 0)
        subtask = from_state(Subtask, state["subtasks"][cursor])
        result = from_state(WorkerResult, state["attempt_result"])
        chooser, why = decider(state)
        decision = chooser.review(subtask, result, config)
        if why:
            decision.reason = why
        calls = state.get("supervisor_calls", 0) + (chooser is boss and boss.model is not None)
        if decision.choice == "redo" and job["attempt"] <= max_redos:
            return {"assignment": {**job, "attempt": job["attempt"] + 1, "feedback": decision.feedback},
                    "decisions": [to_state(decision)], "supervisor_calls": calls}
        log = [to_state(decision)]
        if decision.choice == "redo":  # bounded: the redo limit turns the verdict into an acceptance
            log.append(to_state(Decision(kind="review", subtask_id=subtask.id, choice="accept", source="fallback",
                                         reason=f"redo limit of {max_redos} reached")))
        return {"results": [state["attempt_result"]], "cursor": cursor + 1, "decisions": log,
                "supervisor_calls": calls, "assignment": {}}

    def after_assign(state: HierarchicalState) -> str:
        return "work" if state.get("cursor", 0) < len(state.get("subtasks", [])) else END

    def after_review(state: HierarchicalState) -> str:
        return "work" if state.get("assignment") else "assign"

    graph = StateGraph(HierarchicalState)
    graph.add_node("assign", assign)
    graph.add_node("work", work)
    graph.add_node("review", review)
    graph.add_edge(START, "assign")
    graph.add_conditional_edges("assign", after_assign, ["work", END])
    graph.add_edge("work", "review")
    graph.add_conditional_edges("review", after_review, ["work", "assign"])
    return graph.compile(name=name)
