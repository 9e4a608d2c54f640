"""Parallel pattern: run a plan's DAG, independent subtasks concurrently (LangGraph ``Send``).

Each wave sends every subtask whose dependencies are finished; a branch that raises or times out is
reported as a failed result while the others finish; dependents of a failed subtask are skipped;
``fail_fast`` skips everything not yet started once one branch failed. Results come out in the order
the subtasks were given, whatever order the branches finished in.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Mapping
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from tierflow.agents.plan import Subtask
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.patterns.common import (
    Agent,
    HumanPolicy,
    Roster,
    TeamError,
    ask_human,
    error_result,
    run_agent,
    with_human,
)
from tierflow.graphs.state import TeamState, from_state, to_state


class ParallelState(TeamState, total=False):
    """TeamState plus the branches' results in completion order and the next wave to send."""

    branch_results: Annotated[list[dict[str, Any]], operator.add]
    ready: list[str]


class Branch(TypedDict):
    """What one ``Send`` carries to a branch: its subtask and the results it depends on."""

    request: str
    memories: list[str]
    subtask: dict[str, Any]
    prior: dict[str, str]


def build_parallel(members: WorkerAgent | Mapping[str, Agent], *, max_concurrency: int | None = None,
                   branch_timeout_s: float | None = None, fail_fast: bool = False,
                   ask: HumanPolicy | None = None, name: str = "parallel") -> CompiledStateGraph:
    """The parallel subgraph; ``max_concurrency`` bounds running branches (also ``config['max_concurrency']``)."""
    if max_concurrency is not None and max_concurrency < 1:
        raise TeamError("max_concurrency must be at least 1")
    if branch_timeout_s is not None and branch_timeout_s <= 0:
        raise TeamError("branch_timeout_s must be positive")
    roster = Roster(members)
    slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None

    def dispatch(state: ParallelState) -> ParallelState:
        subtasks = state.get("subtasks", [])
        roster.check(subtasks)
        done = {r["subtask_id"]: r for r in state.get("branch_results", [])}
        failed = [sid for sid, r in done.items() if r.get("stopped") == "error"]
        skipped: list[dict[str, Any]] = []
        ready: list[str] = []
        for s in subtasks:
            if s["id"] in done:
                continue
            if fail_fast and failed:
                skipped.append(error_result(s, f"skipped: fail-fast after {failed[0]} failed"))
                continue
            bad = [d for d in s.get("depends_on", []) if d in failed]
            if bad:
                skipped.append(error_result(s, f"skipped: depends on failed subtask {bad[0]}"))
                failed.append(s["id"])
            elif all(d in done for d in s.get("depends_on", [])):
                ready.append(s["id"])
        if not ready and not skipped:  # dependencies that can never finish (unknown ids or a cycle)
            skipped = [error_result(s, "skipped: its dependencies never finished")
                       for s in subtasks if s["id"] not in done]
        return {"ready": ready, "branch_results": skipped}

    def fan_out(state: ParallelState) -> list[Send] | str:
        by_id = {s["id"]: s for s in state.get("subtasks", [])}
        outputs = {r["subtask_id"]: r["output"] for r in state.get("branch_results", []) if r.get("output")}
        sends = [Send("branch", Branch(request=state["request"], memories=state.get("memories", []),
                                       subtask=by_id[sid],
                                       prior={d: outputs[d] for d in by_id[sid].get("depends_on", [])
                                              if d in outputs}))
                 for sid in state.get("ready", [])]
        return sends or "reduce"

    def branch(inp: Branch, config: RunnableConfig) -> ParallelState:
        subtask = from_state(Subtask, inp["subtask"])
        answer = ask_human(ask, subtask)
        agent = roster.agent(subtask.role)
        prior = with_human(inp["prior"], answer)
        if slots is None:
            result = run_agent(agent, subtask, inp["request"], prior, inp["memories"], config, branch_timeout_s)
        else:
            with slots:
                result = run_agent(agent, subtask, inp["request"], prior, inp["memories"], config,
                                   branch_timeout_s)
        return {"branch_results": [to_state(result)]}

    def reduce(state: ParallelState) -> ParallelState:
        done = {r["subtask_id"]: r for r in state.get("branch_results", [])}
        return {"results": [done[s["id"]] for s in state.get("subtasks", []) if s["id"] in done]}

    graph = StateGraph(ParallelState)
    graph.add_node("dispatch", dispatch)
    graph.add_node("branch", branch, input_schema=Branch)
    graph.add_node("reduce", reduce)
    graph.add_edge(START, "dispatch")
    graph.add_conditional_edges("dispatch", fan_out, ["branch", "reduce"])
    graph.add_edge("branch", "dispatch")
    graph.add_edge("reduce", END)
    return graph.compile(name=name)
