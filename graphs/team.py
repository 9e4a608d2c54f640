"""Build and run a team directly in Python, without the orchestrator; nest teams inside teams.

>>> team = Team("parallel", {"analyst": analyst, "writer": writer}, max_concurrency=2)
>>> result = team.run("Compare A and B", [{"id": "a", "goal": "...", "role": "analyst"}, ...])
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, Field, ValidationError

from tierflow.agents.plan import Plan, PlanError, Subtask, find_cycle
from tierflow.agents.worker import WorkerResult
from tierflow.graphs.patterns import PATTERN_BUILDERS
from tierflow.graphs.patterns.common import TeamError
from tierflow.graphs.patterns.peer import DECISION_ID
from tierflow.graphs.state import from_state, to_state


class TeamResult(BaseModel):
    """What a team run produced: one result per subtask (plus the decision for peer teams), and its log."""

    results: list[WorkerResult]
    decisions: list[dict[str, Any]] = Field(default_factory=list, description="supervisor decisions")
    decision: dict[str, Any] | None = Field(None, description="the peers' decision")
    board: list[dict[str, Any]] = Field(default_factory=list, description="the peers' board")
    interrupt: dict[str, Any] | None = Field(None, description="a question waiting for a human, if any")
    thread_id: str | None = None


def check_subtasks(subtasks: Sequence[Subtask | Mapping[str, Any]]) -> list[Subtask]:
    """Parse subtasks and check ids and dependencies; problems raise PlanError naming every one."""
    try:
        parsed = [s if isinstance(s, Subtask) else Subtask.model_validate(s) for s in subtasks]
    except ValidationError as exc:
        raise PlanError([f"bad subtask: {e['loc']}: {e['msg']}" for e in exc.errors()]) from exc
    if not parsed:
        raise PlanError(["a team needs at least one subtask"])
    ids = [s.id for s in parsed]
    problems = [f"duplicate subtask id {i!r}" for i in sorted({i for i in ids if ids.count(i) > 1})]
    problems += [f"subtask {s.id}: depends on unknown subtask {d!r}" for s in parsed for d in s.depends_on
                 if d not in ids]
    cycle = find_cycle(parsed)
    if cycle:
        problems.append("dependency cycle: " + " -> ".join(cycle))
    if problems:
        raise PlanError(problems)
    return parsed


class Team:
    """A pattern over members: a WorkerAgent (its roles are the members), named agents, or peers (peer pattern).

    ``options`` go to the pattern's builder (e.g. ``max_concurrency``, ``supervisor``, ``max_rounds``).
    """

    def __init__(self, pattern: str, members: Any, **options: Any) -> None:
        if pattern not in PATTERN_BUILDERS:
            raise TeamError(f"unknown pattern {pattern!r}; choose one of {', '.join(PATTERN_BUILDERS)}")
        self.pattern = pattern
        self.members = members
        self.options = options
        try:
            self.graph: CompiledStateGraph = PATTERN_BUILDERS[pattern](members, **options)  # type: ignore[call-arg]
        except TypeError as exc:
            raise TeamError(f"the {pattern} pattern does not take these options: {exc}") from exc

    def compile(self, checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
        """The team's subgraph, standalone with ``checkpointer`` (durable, resumable) or for nesting as is."""
        return self.graph if checkpointer is None else self.graph.copy(update={"checkpointer": checkpointer})

    def run(self, request: str, subtasks: Sequence[Subtask | Mapping[str, Any]], *, memories: Sequence[str] = (),
            config: RunnableConfig | None = None, checkpointer: BaseCheckpointSaver | None = None,
            thread_id: str | None = None) -> TeamResult:
        """Run the team on ``subtasks`` (checked first); with a checkpointer the run is durable under thread_id."""
        if not isinstance(request, str) or not request.strip():
            raise TeamError("a team run needs a non-empty request")
        parsed = check_subtasks(subtasks)
        if self.pattern == "sequential":  # the sequential pattern takes subtasks in dependency order
            from tierflow.agents.plan import topological_order

            parsed = topological_order(Plan(subtasks=parsed))
        graph = self.compile(checkpointer)
        config = dict(config or {})
        if checkpointer is not None:
            thread_id = thread_id or uuid.uuid4().hex
            config["configurable"] = {**config.get("configurable", {}), "thread_id": thread_id}
        state = graph.invoke({"request": request.strip(), "memories": list(memories),
                              "subtasks": [to_state(s) for s in parsed], "results": []}, config)
        return team_result(state, thread_id)


def team_result(state: Mapping[str, Any], thread_id: str | None = None) -> TeamResult:
    """A TeamResult from a team graph's final (or interrupted) state."""
    interrupts = state.get("__interrupt__") or []
    return TeamResult(results=[from_state(WorkerResult, r) for r in state.get("results", [])],
                      decisions=state.get("decisions", []), decision=state.get("decision"),
                      board=state.get("board", []), thread_id=thread_id,
                      interrupt={"value": interrupts[0].value, "id": interrupts[0].id} if interrupts else None)


class TeamAgent:
    """A whole team acting as one member of another team: it works a subtask by running its own plan.

    ``subtasks`` is the inner plan; ``{goal}`` in an inner goal is replaced by the outer subtask's goal.
    """

    def __init__(self, team: Team, subtasks: Sequence[Subtask | Mapping[str, Any]]) -> None:
        self.team = team
        self.subtasks = check_subtasks(subtasks)

    def run(self, subtask: Subtask, request: str, prior: Mapping[str, str] | None = None,
            memories: Sequence[str] = (), config: RunnableConfig | None = None) -> WorkerResult:
        """Run the inner team on this subtask; its output is the inner results joined (or the peers' decision)."""
        inner = [s.model_copy(update={"goal": s.goal.replace("{goal}", subtask.goal)}) for s in self.subtasks]
        context = [*memories, *(f"Result of {k}: {v}" for k, v in (prior or {}).items())]
        state = self.team.graph.invoke({"request": f"{request}\nTeam task: {subtask.goal}", "memories": context,
                                        "subtasks": [to_state(s) for s in inner], "results": []}, config)
        results = [from_state(WorkerResult, r) for r in state.get("results", [])]
        decided = [r for r in results if r.subtask_id == DECISION_ID]
        shown = decided or results
        output = "\n".join(r.output for r in shown if r.output)
        failed = [r for r in shown if r.stopped == "error"]
        return WorkerResult(subtask_id=subtask.id, role=subtask.role, output=output,
                            steps=sum(r.steps for r in results),
                            tool_calls=[c for r in results for c in r.tool_calls],
                            stopped="error" if failed and not output else "finished",
                            error="; ".join(f"{r.subtask_id}: {r.error}" for r in failed) or None)
