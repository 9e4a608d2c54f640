"""Peers of the peer pattern: agents that post proposals on a shared board and vote on them.

A vote is decoded under a JSON schema naming the proposals' authors; an unusable vote falls back
deterministically (the peer's own proposal, else the first one) and the :class:`Vote` says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, Field

from tierflow.agents.plan import Subtask
from tierflow.agents.worker import WorkerAgent, WorkerResult
from tierflow.runtimes.errors import MODEL_CALL_ERRORS, RUN_ENDING_ERRORS
from tierflow.runtimes.structured import invoke_json

MAX_POST_CHARS = 600
BOARD_TAIL = 12  # posts of the board a peer sees (the newest ones)


class Post(BaseModel):
    """One message on the shared board: a proposal or a vote, by one peer in one round."""

    round: int
    author: str
    kind: Literal["proposal", "vote"]
    text: str
    source: Literal["model", "fallback"] = "model"
    reason: str | None = None
    # Calls a tool-using peer made for its proposal (ToolCallRecord dumps): provenance and the answer check.
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)


class Vote(BaseModel):
    """A peer's vote for the author of one proposal; ``source`` tells whether the fallback cast it."""

    voter: str
    choice: str
    source: Literal["model", "fallback"] = "model"
    reason: str | None = None


class PeerDecision(BaseModel):
    """What the peers decided: the winning proposal, the round, the final tally and the rule that decided."""

    winner: str | None = Field(description="the winning proposal's author; None when nobody proposed anything")
    text: str = Field(description="the winning proposal")
    round: int
    votes: dict[str, int] = Field(default_factory=dict, description="votes per proposal author, in peer order")
    rule: str = Field(description="majority, plurality, a tie rule, or why there is no winner")
    fallback_votes: int = Field(0, description="votes the deterministic fallback cast")


@runtime_checkable
class PeerAgent(Protocol):
    """What the peer pattern needs from a participant (an LLM peer, an AutoGen agent, ...)."""

    name: str

    def propose(self, topic: str, board: Sequence[Post], config: RunnableConfig | None = None) -> str:
        """A proposal for ``topic`` given the board so far."""
        ...

    def vote(self, topic: str, proposals: Sequence[Post], board: Sequence[Post],
             config: RunnableConfig | None = None) -> Vote:
        """A vote for one of ``proposals`` (by author name)."""
        ...


def board_text(board: Sequence[Post], tail: int = BOARD_TAIL) -> str:
    """The newest posts of the board as plain lines, for a prompt."""
    lines = [f"[round {p.round}] {p.author} {'proposes' if p.kind == 'proposal' else 'votes for'}: "
             f"{p.text[:MAX_POST_CHARS]}" for p in board[-tail:]]
    return "\n".join(lines) or "(empty)"


def fallback_vote(voter: str, proposals: Sequence[Post], reason: str) -> Vote:
    """The deterministic vote: one's own proposal if there is one, else the first proposal's author."""
    authors = [p.author for p in proposals]
    if not authors:
        raise ValueError("there is nothing to vote on: no proposals")
    return Vote(voter=voter, choice=voter if voter in authors else authors[0], source="fallback", reason=reason)


def text_vote(voter: str, reply: str, proposals: Sequence[Post]) -> Vote:
    """A vote from free text (a remote or AutoGen peer's reply): ``{"vote": name}``, the bare name, or exactly one
    author named; else the fallback."""
    authors = [p.author for p in proposals]
    text = reply.strip()
    try:
        value = json.loads(text)
        if isinstance(value, dict) and str(value.get("vote", "")).strip() in authors:
            return Vote(voter=voter, choice=str(value["vote"]).strip())
    except json.JSONDecodeError:
        pass
    if text.strip(" .\"'") in authors:
        return Vote(voter=voter, choice=text.strip(" .\"'"))
    named = [a for a in authors if re.search(rf"(?<!\w){re.escape(a)}(?!\w)", text)]
    if len(named) == 1:
        return Vote(voter=voter, choice=named[0])
    return fallback_vote(voter, proposals, f"reply {text[:80]!r} names {len(named)} proposals, not one")


def parse_vote(voter: str, reply: object, proposals: Sequence[Post]) -> Vote:
    """Validate a model's vote object (``{"vote": author}``) against the proposals, else fall back."""
    authors = [p.author for p in proposals]
    choice = reply.get("vote") if isinstance(reply, dict) else None
    if isinstance(choice, str) and choice.strip() in authors:
        return Vote(voter=voter, choice=choice.strip())
    return fallback_vote(voter, proposals, f"vote {choice!r} names no proposal ({', '.join(authors)})")


class LLMPeer:
    """A peer backed by a chat model with its own instructions (a perspective on the topic).

    ``max_tokens`` bounds a proposal (None: the tier's limit); a vote is always short (32 tokens).
    """

    def __init__(self, name: str, model: BaseChatModel, instructions: str = "You are a thoughtful team member.",
                 max_tokens: int | None = None) -> None:
        if not name or not name.strip():
            raise ValueError("a peer needs a non-empty name")
        self.name = name
        self.model = model
        self.instructions = instructions
        self.max_tokens = max_tokens
        # bound once: a peer speaks many times; None keeps the tier's own limit
        self._proposer = model.bind(max_tokens=max_tokens) if max_tokens else model
        self._voter = model.bind(max_tokens=32)

    def propose(self, topic: str, board: Sequence[Post], config: RunnableConfig | None = None) -> str:
        """One short proposal; model failures propagate (the pattern records them as fallbacks)."""
        messages = [SystemMessage(self.instructions),
                    HumanMessage(f"Topic: {topic}\nBoard:\n{board_text(board)}\nYou are {self.name}. "
                                 "Write your proposal in one or two sentences.")]
        reply = self._proposer.invoke(messages, config)
        return (reply.text if isinstance(reply, AIMessage) else str(reply)).strip()

    def vote(self, topic: str, proposals: Sequence[Post], board: Sequence[Post],
             config: RunnableConfig | None = None) -> Vote:
        """A schema-constrained vote; an invalid or failed vote becomes the fallback vote."""
        authors = [p.author for p in proposals]
        schema = {"type": "object", "properties": {"vote": {"type": "string", "enum": authors}},
                  "required": ["vote"]}
        listing = "\n".join(f"- {p.author}: {p.text[:MAX_POST_CHARS]}" for p in proposals)
        messages = [SystemMessage(self.instructions),
                    HumanMessage(f"Topic: {topic}\nProposals:\n{listing}\nYou are {self.name}. Vote for the best "
                                 'proposal. Reply with JSON only: {"vote": <author>}.')]
        try:
            reply = invoke_json(self._voter, messages, schema, config, name="vote")
        except RUN_ENDING_ERRORS:
            raise
        except MODEL_CALL_ERRORS as exc:
            return fallback_vote(self.name, proposals, f"model call failed: {exc}")
        return parse_vote(self.name, reply, proposals)


class WorkerPeer:
    """A peer whose proposal is a worker's tool loop on its subtask, so a tool-backed answer stays grounded.

    Votes are cast like an :class:`LLMPeer`'s. ``propose_result`` also returns the tool calls made.
    """

    def __init__(self, subtask: Subtask, worker: WorkerAgent, instructions: str) -> None:
        self.name = subtask.id
        self.subtask = subtask
        self.worker = worker
        self._voice = LLMPeer(subtask.id, worker.model, instructions)

    def propose_result(self, topic: str, board: Sequence[Post], config: RunnableConfig | None = None) -> WorkerResult:
        """The worker's result on this peer's subtask, with the board as earlier context."""
        prior = {"board": board_text(board)} if board else {}
        return self.worker.run(self.subtask, topic, prior, (), config)

    def propose(self, topic: str, board: Sequence[Post], config: RunnableConfig | None = None) -> str:
        result = self.propose_result(topic, board, config)
        if result.failed:
            raise RuntimeError(result.error or "the worker produced no output")
        return result.output

    def vote(self, topic: str, proposals: Sequence[Post], board: Sequence[Post],
             config: RunnableConfig | None = None) -> Vote:
        return self._voice.vote(topic, proposals, board, config)
