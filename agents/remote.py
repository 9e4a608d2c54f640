"""Remote A2A agents as team members, governed by the tier router's rules like a remote tier.

A :class:`RemoteAgent` works a subtask by sending it to an agent that speaks Agent2Agent (another tierflow, or one
built with LangGraph, CrewAI, ADK, ...). Before anything is sent, the router's rules apply: private data (the run's
flag, or text matching ``routing.private_patterns``) goes only to an agent whose ``data_classes`` include
``private``; the run's budget is checked and charged (``cost`` per call plus tokens); a circuit breaker opens after
``routing.circuit_failures`` failures in a row; ``timeout_s`` bounds the whole exchange. A call the rules refuse
is never sent: the subtask runs on the local worker instead (``fallback = "local"``) or fails (``"fail"``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp
from langgraph.types import interrupt

from tierflow.agents.a2a_client import KIND, A2AChatModel
from tierflow.agents.peer import MAX_POST_CHARS, Post, Vote, board_text, fallback_vote, text_vote
from tierflow.agents.plan import Subtask
from tierflow.agents.remote_config import RemoteAgentConfig, check_agent_names
from tierflow.agents.roles import Role
from tierflow.agents.worker import MAX_PRIOR_RESULT_CHARS, WorkerAgent, WorkerResult
from tierflow.runtimes.context import RunContext
from tierflow.runtimes.errors import MODEL_CALL_ERRORS, RUN_ENDING_ERRORS, TierflowError
from tierflow.runtimes.router import TierRouter


class RemoteRefused(TierflowError):
    """The router's rules kept a call from a remote agent (privacy, budget, open circuit); nothing was sent."""

    def __init__(self, agent: str, reason: str) -> None:
        super().__init__(f"remote agent {agent!r} was not called: {reason}")
        self.agent = agent
        self.reason = reason


class RemoteAgent:
    """A team member on the other end of A2A; ``run`` works a subtask like a WorkerAgent would.

    ``router`` supplies the rules and the shared state (privacy patterns, budgets, circuits); ``local``, when
    given, works subtasks the rules keep from the remote agent (see ``RemoteAgentConfig.fallback``).
    """

    def __init__(self, name: str, config: RemoteAgentConfig, router: TierRouter,
                 local: Callable[..., WorkerResult] | None = None) -> None:
        check_agent_names({name: config})
        self.name = name
        self.config = config
        self.router = router
        self.local = local
        self.tier = f"{KIND}:{name}"
        self.description = config.description or f"a remote agent ({name}) reached over A2A"
        self.model = A2AChatModel(agent=name, url=config.url, token=config.token, timeout_s=config.timeout_s,
                                  streaming=config.streaming, tier=self.tier)
        # (run id, subtask id) -> the remote task that asked for input, so a resumed node does not send again
        self._waiting: dict[tuple[str, str], tuple[str, str, str]] = {}  # + the question
        self._lock = threading.Lock()

    @property
    def role(self) -> Role:
        """The role the planner sees for this member."""
        return Role(name=self.name, instructions=self.description)

    # ----- the rules --------------------------------------------------------------------------------

    def admit(self, text: str, config: RunnableConfig | None) -> bool:
        """Whether ``text`` may be sent now; returns the call's data class (True: private).

        Raises RemoteRefused (privacy, open circuit, budget degraded) or BudgetExceeded (``on_exceed = "raise"``).
        """
        context = RunContext.of(config)
        private = self.router.is_private([HumanMessage(text)], context.private)
        if not self.config.cleared_for(private):
            raise RemoteRefused(self.name, "not cleared for private data")
        if self.router.circuit_state(self.tier) == "open":
            raise RemoteRefused(self.name, "circuit open after failures")
        if self.router.check_budget(context.run_id):
            raise RemoteRefused(self.name, "budget exhausted: degraded to the local worker")
        return private

    def ask(self, text: str, config: RunnableConfig | None = None, *, task_id: str | None = None,
            context_id: str | None = None) -> Any:
        """Send ``text`` under the rules and return the reply message (``response_metadata["a2a"]`` has the state)."""
        private = self.admit(text, config)
        context = RunContext.of(config)
        try:
            reply = self.model.invoke([HumanMessage(text)], config, private=private, task_id=task_id,
                                      context_id=context_id)
        except MODEL_CALL_ERRORS as exc:
            self.router.record_outcome(self.tier, exc)
            raise
        self.router.record_outcome(self.tier)
        usage = reply.usage_metadata or {}
        self.router.charge(context.run_id, int(usage.get("total_tokens", 0)), self.config.cost)
        return reply

    # ----- a team member ----------------------------------------------------------------------------

    def run(self, subtask: Subtask, request: str, prior: Mapping[str, str] | None = None,
            memories: Sequence[str] = (), config: RunnableConfig | None = None) -> WorkerResult:
        """Work on ``subtask`` remotely; refusals and failures fall back or fail the subtask, never raise.

        A remote task that asks for input pauses the run with its question (``interrupt``); the human's answer
        is sent to that task when the run resumes.
        """
        text = self.prompt(subtask, request, prior or {}, memories)
        key = (str(RunContext.of(config).run_id or ""), subtask.id)
        try:
            with self._lock:
                waiting = self._waiting.get(key)
            reply = None
            if waiting is None:
                reply = self.ask(text, config)
                waiting = self._asks(key, reply)
            while waiting is not None:
                task_id, context_id, question = waiting
                answer = interrupt({"question": question or f"{self.name} asks for input",
                                    "remote_agent": self.name, "subtask_id": subtask.id})
                reply = self.ask(str(answer), config, task_id=task_id, context_id=context_id)
                waiting = self._asks(key, reply)  # it may ask again: one more question for the human
        except (GraphBubbleUp, *RUN_ENDING_ERRORS):
            raise
        except (RemoteRefused, *MODEL_CALL_ERRORS) as exc:
            with self._lock:
                self._waiting.pop(key, None)
            reason = exc.reason if isinstance(exc, RemoteRefused) else f"{type(exc).__name__}: {exc}"
            return self._fallback(subtask, request, prior, memories, config, reason)
        assert reply is not None  # the loop above ran at least once when no first reply was asked for
        return WorkerResult(subtask_id=subtask.id, role=subtask.role, output=reply.text.strip(), steps=1)

    def _asks(self, key: tuple[str, str], reply: Any) -> tuple[str, str, str] | None:
        """The remote task waiting for input after ``reply`` (remembered under ``key``), or None when it ended."""
        state = reply.response_metadata[KIND]
        with self._lock:
            if state["state"] != "input-required":
                self._waiting.pop(key, None)
                return None
            waiting = (str(state["task_id"]), str(state["context_id"]), str(reply.text))
            self._waiting[key] = waiting
            return waiting

    def prompt(self, subtask: Subtask, request: str, prior: Mapping[str, str], memories: Sequence[str]) -> str:
        """The message the remote agent gets: the request, context, earlier results and its task."""
        parts = [f"User request: {request}"]
        parts += [f"Context: {m}" for m in memories]
        parts += [f"Result of {sid}: {text[:MAX_PRIOR_RESULT_CHARS]}" for sid, text in prior.items()]
        parts.append(f"Your task: {subtask.goal}")
        return "\n".join(parts)

    def _fallback(self, subtask: Subtask, request: str, prior: Mapping[str, str] | None, memories: Sequence[str],
                  config: RunnableConfig | None, reason: str) -> WorkerResult:
        if self.config.fallback == "local" and self.local is not None:
            result = self.local(subtask, request, prior, memories, config)
            note = f"remote agent {self.name} not used ({reason}); the local worker did this subtask"
            return result.model_copy(update={"notes": [*result.notes, note]})
        return WorkerResult(subtask_id=subtask.id, role=subtask.role, output="", stopped="error",
                            error=f"remote agent {self.name}: {reason}")

    def peer(self, name: str, focus: str = "") -> RemotePeer:
        """This agent as a peer of the peer pattern, posting under ``name`` (the subtask id)."""
        return RemotePeer(self, name, focus)


class RemotePeer:
    """A remote A2A agent in the peer pattern: proposals and votes are exchanges under the same rules."""

    def __init__(self, agent: RemoteAgent, name: str, focus: str = "") -> None:
        self.agent = agent
        self.name = name
        self.focus = focus

    def propose(self, topic: str, board: Sequence[Post], config: RunnableConfig | None = None) -> str:
        """The remote agent's proposal; refusals and failures raise (the pattern records a fallback)."""
        focus = f"\nYour focus: {self.focus}" if self.focus else ""
        text = (f"Topic: {topic}{focus}\nBoard:\n{board_text(board)}\nYou are {self.name}. "
                "Write your proposal in one or two sentences.")
        return str(self.agent.ask(text, config).text)[:MAX_POST_CHARS * 2]

    def vote(self, topic: str, proposals: Sequence[Post], board: Sequence[Post],
             config: RunnableConfig | None = None) -> Vote:
        """A vote asked for in words and checked; an unusable or refused one becomes the fallback vote."""
        listing = "\n".join(f"- {p.author}: {p.text[:MAX_POST_CHARS]}" for p in proposals)
        authors = [p.author for p in proposals]
        text = (f"Topic: {topic}\nProposals:\n{listing}\nYou are {self.name}. Reply with only the name of the best "
                f"proposal's author, one of: {', '.join(authors)}.")
        try:
            reply = str(self.agent.ask(text, config).text)
        except (GraphBubbleUp, *RUN_ENDING_ERRORS):
            raise
        except (RemoteRefused, *MODEL_CALL_ERRORS) as exc:
            return fallback_vote(self.name, proposals, f"remote vote failed: {exc}")
        return text_vote(self.name, reply, proposals)


class RosterWorker(WorkerAgent):
    """A WorkerAgent whose roster also has remote A2A agents: subtasks for their roles go to them.

    Every pattern works with it unchanged (the remote roles are roles the planner and supervisor may choose); the
    peer pattern asks :meth:`peer_for` for a remote peer. Refused or failed remote calls fall back to this worker.
    """

    def __init__(self, worker: WorkerAgent, remotes: Mapping[str, RemoteAgentConfig] | Sequence[RemoteAgent],
                 router: TierRouter | None = None) -> None:
        if isinstance(remotes, Mapping):
            if router is None:
                raise ValueError("remote agents declared by config need the router whose rules govern them")
            agents = [RemoteAgent(name, config, router) for name, config in remotes.items()]
        else:
            agents = list(remotes)
        super().__init__(worker.model, worker.tools, {**worker.roles, **{a.name: a.role for a in agents}},
                         worker.max_steps)
        self.remotes: dict[str, RemoteAgent] = {a.name: a for a in agents}
        for agent in agents:
            if agent.local is None:
                agent.local = self.run_locally

    def run(self, subtask: Subtask, request: str, prior: Mapping[str, str] | None = None,
            memories: Sequence[str] = (), config: RunnableConfig | None = None) -> WorkerResult:
        """A remote role's subtask goes to its agent; every other one runs here."""
        remote = self.remotes.get(subtask.role)
        if remote is not None:
            return remote.run(subtask, request, prior, memories, config)
        return self.run_locally(subtask, request, prior, memories, config)

    def run_locally(self, subtask: Subtask, request: str, prior: Mapping[str, str] | None = None,
                    memories: Sequence[str] = (), config: RunnableConfig | None = None) -> WorkerResult:
        """The subtask on this process's tiers (a remote role is played from its description)."""
        return WorkerAgent.run(self, subtask, request, prior, memories, config)

    def peer_for(self, subtask: Subtask, instructions: str = "") -> RemotePeer | None:
        """The remote peer for a subtask whose role is a remote agent; None for local roles."""
        remote = self.remotes.get(subtask.role)
        return remote.peer(subtask.id, subtask.goal) if remote is not None else None
