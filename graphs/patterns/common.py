"""What the pattern subgraphs share: team members, failure-safe agent calls, timeouts and human questions."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp
from langgraph.types import interrupt

from tierflow.agents.plan import Subtask
from tierflow.agents.worker import WorkerAgent, WorkerResult
from tierflow.graphs.state import to_state
from tierflow.runtimes.errors import RUN_ENDING_ERRORS, TierflowError

T = TypeVar("T")


class TeamError(TierflowError, ValueError):
    """A team or the plan it is given is malformed (no members, unknown agent, bad option)."""


class UnknownAgentError(TeamError):
    """The plan names an agent the team does not have."""

    def __init__(self, names: Sequence[str], known: Sequence[str]) -> None:
        super().__init__(f"the plan names unknown agent(s) {', '.join(map(repr, names))}; "
                         f"the team has: {', '.join(known)}")
        self.names = list(names)
        self.known = list(known)


class BranchTimeout(TierflowError, TimeoutError):
    """An agent did not finish a subtask within its time limit."""


@runtime_checkable
class Agent(Protocol):
    """A team member: anything that works on one subtask (a WorkerAgent, a nested team, ...)."""

    def run(self, subtask: Subtask, request: str, prior: Mapping[str, str] | None = None,
            memories: Sequence[str] = (), config: RunnableConfig | None = None) -> WorkerResult:
        """Work on ``subtask`` with the results of earlier subtasks in ``prior``."""
        ...


# A human-in-the-loop policy: a question to ask before a subtask runs, or None to just run it.
HumanPolicy = Callable[[Subtask], str | None]


class Roster:
    """Who can work on a subtask: one WorkerAgent (members are its roles) or named agents."""

    def __init__(self, members: WorkerAgent | Mapping[str, Agent]) -> None:
        if isinstance(members, WorkerAgent):
            self.single: WorkerAgent | None = members
            self.agents: dict[str, Agent] = {}
            self.names = list(members.roles)
        else:
            if not members:
                raise TeamError("a team needs at least one member")
            bad = [name for name, agent in members.items() if not isinstance(agent, Agent)]
            if bad:
                raise TeamError(f"team member(s) {', '.join(bad)} have no run(subtask, request, ...) method")
            self.single = None
            self.agents = dict(members)
            self.names = list(members)

    def check(self, subtasks: Sequence[Mapping[str, Any]]) -> None:
        """Raise UnknownAgentError when named agents are used and a subtask's role names none of them."""
        if self.single is not None:
            return  # a WorkerAgent falls back to its generalist role for roles it lacks
        unknown = sorted({str(s.get("role")) for s in subtasks if s.get("role") not in self.agents})
        if unknown:
            raise UnknownAgentError(unknown, self.names)

    def agent(self, name: str) -> Agent:
        """The member called ``name`` (for a single WorkerAgent: that worker, playing role ``name``)."""
        if self.single is not None:
            return self.single
        if name not in self.agents:
            raise UnknownAgentError([name], self.names)
        return self.agents[name]


def call_with_timeout(fn: Callable[[], T], timeout_s: float | None) -> T:
    """Run ``fn`` in a daemon thread and wait at most ``timeout_s`` seconds (None: in this thread).

    Python cannot stop a thread, so a timed-out call keeps running in the background until it returns;
    its result is discarded. Model calls have their own tier timeouts that bound that.
    """
    if timeout_s is None:
        return fn()
    box: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            box["value"] = context.run(fn)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="tierflow-branch")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise BranchTimeout(f"timed out after {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def run_agent(agent: Agent, subtask: Subtask, request: str, prior: Mapping[str, str], memories: Sequence[str],
              config: RunnableConfig | None, timeout_s: float | None = None) -> WorkerResult:
    """Run one agent on one subtask; a raise or a timeout becomes a result with ``stopped='error'``.

    Graph control flow (interrupts) and oversized prompts still propagate: they are not the agent's failure.
    """
    try:
        return call_with_timeout(lambda: agent.run(subtask, request, prior, memories, config), timeout_s)
    except (GraphBubbleUp, *RUN_ENDING_ERRORS):
        raise
    except Exception as exc:
        return WorkerResult(subtask_id=subtask.id, role=subtask.role, output="", stopped="error",
                            error=f"{type(exc).__name__}: {exc}")


def ask_human(policy: HumanPolicy | None, subtask: Subtask) -> str | None:
    """If the policy has a question for ``subtask``, interrupt the run with it and return the human's answer.

    Call this first in a node: on resume the node runs again from the top and ``interrupt`` returns the answer.
    """
    if policy is None:
        return None
    question = policy(subtask)
    if not question:
        return None
    answer = interrupt({"question": question, "subtask_id": subtask.id})
    return str(answer)


def with_human(prior: Mapping[str, str], answer: str | None) -> dict[str, str]:
    """``prior`` plus the human's answer, which the worker sees like an earlier result."""
    return {**prior, "human": answer} if answer is not None else dict(prior)


def error_result(subtask: Mapping[str, Any], error: str) -> dict[str, Any]:
    """A result dict for a subtask that did not run (skipped, unknown agent, ...)."""
    return to_state(WorkerResult(subtask_id=str(subtask["id"]), role=str(subtask.get("role", "")), output="",
                                 stopped="error", error=error))
