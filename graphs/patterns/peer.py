"""Peer pattern: agents post proposals on a shared board and vote; a strict majority decides.

A round: every peer proposes (all seeing the board as it was when the round opened; on threads with
``concurrent=True``), the proposals are posted in peer order (not finishing order), every peer votes,
the votes are posted in peer order and tallied. More than half of the votes for one proposal
decides; otherwise another round, up to ``max_rounds``. After the last round without a majority the
proposal with most votes wins; a tie among the leaders goes to the earliest peer (``tie_break='first'``)
or is put to a human (``tie_break='human'``, an interrupt). Peers that fail are recorded, not fatal.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_executor_for_config
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import interrupt

from tierflow.agents.peer import BOARD_TAIL, LLMPeer, PeerAgent, PeerDecision, Post, WorkerPeer, fallback_vote
from tierflow.agents.plan import Subtask
from tierflow.agents.worker import WorkerAgent, WorkerResult
from tierflow.graphs.patterns.common import TeamError
from tierflow.graphs.state import TeamState, from_state, to_state
from tierflow.runtimes.errors import RUN_ENDING_ERRORS

DECISION_ID = "consensus"


class PeerState(TeamState, total=False):
    """TeamState plus the shared board (Post dicts), the round and the decision (a PeerDecision dict)."""

    board: Annotated[list[dict[str, Any]], operator.add]
    round: int
    decision: dict[str, Any]


def build_peer(members: WorkerAgent | Sequence[PeerAgent], *, max_rounds: int = 2,
               tie_break: Literal["first", "human"] = "first", concurrent: bool = False,
               name: str = "peer") -> CompiledStateGraph:
    """The peer subgraph over fixed peers, or (given a WorkerAgent) one LLM peer per subtask of the plan.

    ``concurrent=True`` runs a round's peers on threads (worth it for remote tiers; in-process tiers
    serve one call at a time). Either way every peer sees the same snapshot and posts land in peer order.
    """
    if max_rounds < 1:
        raise TeamError("max_rounds must be at least 1")
    if tie_break not in ("first", "human"):
        raise TeamError(f"tie_break must be 'first' or 'human', not {tie_break!r}")
    worker = members if isinstance(members, WorkerAgent) else None
    fixed: dict[str, PeerAgent] = {}
    if worker is None:
        for peer in members:
            if not isinstance(peer, PeerAgent):
                raise TeamError(f"{peer!r} is not a peer (needs name, propose and vote)")
            if peer.name in fixed:
                raise TeamError(f"two peers are called {peer.name!r}")
            fixed[peer.name] = peer
        if not fixed:
            raise TeamError("the peer pattern needs at least one peer")

    def peers(subtasks: Sequence[dict[str, Any]]) -> dict[str, PeerAgent]:
        if worker is None:
            return fixed
        made: dict[str, PeerAgent] = {}
        for s in subtasks:
            role = worker.roles.get(s.get("role", "")) or worker.roles["generalist"]
            instructions = f"{role.instructions}\nYour focus: {s['goal']}"
            # A worker whose roster has remote agents (agents.remote.RosterWorker) gives their roles remote peers.
            remote = getattr(worker, "peer_for", None)
            peer = remote(from_state(Subtask, s), instructions) if remote is not None else None
            # A subtask with tools proposes through the worker's tool loop: its proposal is tool-grounded.
            made[s["id"]] = peer or (WorkerPeer(from_state(Subtask, s), worker, instructions) if s.get("tools")
                                     else LLMPeer(s["id"], worker.model, instructions))
        return made

    def each_peer(subtasks: Sequence[dict[str, Any]], act: Callable[[PeerAgent], dict[str, Any]],
                  config: RunnableConfig) -> list[dict[str, Any]]:
        # Peer order, whatever order they finish in; on threads when ``concurrent`` (remote tiers).
        group = list(peers(subtasks).values())
        if not group:
            raise TeamError("the peer pattern needs at least one subtask or peer")
        if not concurrent or len(group) == 1:
            return [act(p) for p in group]
        with get_executor_for_config(config) as pool:
            return list(pool.map(act, group))

    def propose(state: PeerState, config: RunnableConfig) -> PeerState:
        rnd = state.get("round", 0) + 1
        board = [from_state(Post, p) for p in state.get("board", [])[-BOARD_TAIL:]]  # the round's snapshot

        def act(peer: PeerAgent) -> dict[str, Any]:
            try:
                if isinstance(peer, WorkerPeer):
                    result = peer.propose_result(state["request"], board, config)
                    return to_state(Post(round=rnd, author=peer.name, kind="proposal", text=result.output.strip(),
                                         source="fallback" if result.failed else "model",
                                         reason=result.error if result.failed else None,
                                         tool_calls=[to_state(c) for c in result.tool_calls]))
                text = peer.propose(state["request"], board, config).strip()
                return to_state(Post(round=rnd, author=peer.name, kind="proposal", text=text,
                                     source="model" if text else "fallback",
                                     reason=None if text else "empty proposal"))
            except (GraphBubbleUp, *RUN_ENDING_ERRORS):
                raise
            except Exception as exc:  # a failing peer abstains from proposing; the others go on
                return to_state(Post(round=rnd, author=peer.name, kind="proposal", text="", source="fallback",
                                     reason=f"{type(exc).__name__}: {exc}"))

        return {"round": rnd, "board": each_peer(state.get("subtasks", []), act, config)}

    def vote(state: PeerState, config: RunnableConfig) -> PeerState:
        rnd = state["round"]
        posts = state.get("board", [])
        proposals = [p for p in _this_round(posts, rnd) if p.kind == "proposal" and p.text]
        if not proposals:
            return {}
        board = [from_state(Post, p) for p in posts[-BOARD_TAIL:]]
        authors = {p.author for p in proposals}

        def act(peer: PeerAgent) -> dict[str, Any]:
            try:
                ballot = peer.vote(state["request"], proposals, board, config)
                if ballot.choice not in authors:
                    ballot = fallback_vote(peer.name, proposals, f"vote {ballot.choice!r} names no proposal")
            except (GraphBubbleUp, *RUN_ENDING_ERRORS):
                raise
            except Exception as exc:  # a failing voter gets the deterministic vote, recorded as such
                ballot = fallback_vote(peer.name, proposals, f"{type(exc).__name__}: {exc}")
            return to_state(Post(round=rnd, author=peer.name, kind="vote", text=ballot.choice, source=ballot.source,
                                 reason=ballot.reason))

        return {"board": each_peer(state.get("subtasks", []), act, config)}

    def decide(state: PeerState) -> PeerState:
        order = list(peers(state.get("subtasks", [])))
        rnd = state["round"]
        posts = _this_round(state.get("board", []), rnd)
        votes = [p for p in posts if p.kind == "vote"]
        proposals = {p.author: p.text for p in posts if p.kind == "proposal" and p.text}
        if not proposals:
            return {"decision": to_state(PeerDecision(winner=None, text="", round=rnd, rule="no proposals"))}
        tally = Counter(v.text for v in votes)
        counts = {author: tally.get(author, 0) for author in order if author in proposals}
        best = max(counts.values())
        leaders = [a for a, c in counts.items() if c == best]
        fallbacks = sum(v.source == "fallback" for v in votes)
        if best * 2 > len(order):
            rule = "majority"
        elif rnd < max_rounds:
            return {}  # no majority yet: another round
        elif len(leaders) == 1:
            rule = "plurality after the last round"
        elif tie_break == "human":
            answer = interrupt({"question": f"The peers are tied between {', '.join(leaders)}. Which proposal wins?",
                                "options": {a: proposals[a] for a in leaders}})
            chosen = str(answer).strip()
            if chosen in leaders:
                rule, leaders = "tie broken by a human", [chosen]
            else:
                rule = f"tie: the human's answer {chosen!r} names no leader; earliest peer wins"
        else:
            rule = "tie: earliest peer wins"
        winner = leaders[0]
        return {"decision": to_state(PeerDecision(winner=winner, text=proposals[winner], round=rnd, votes=counts,
                                                  rule=rule, fallback_votes=fallbacks))}

    def after_decide(state: PeerState) -> str:
        return "finish" if state.get("decision") else "propose"

    def finish(state: PeerState) -> PeerState:
        last: dict[str, Post] = {}
        for post in state.get("board", []):
            if post["kind"] == "proposal":
                last[post["author"]] = from_state(Post, post)
        subtasks = {s["id"]: s for s in state.get("subtasks", [])}
        results = []
        for author in peers(state.get("subtasks", [])):
            proposal = last.get(author)
            text = proposal.text if proposal else ""
            role = subtasks.get(author, {}).get("role", "peer")
            results.append(to_state(WorkerResult(subtask_id=author, role=role, output=text, steps=state["round"],
                                                 stopped="finished" if text else "error",
                                                 error=proposal.reason if proposal else None,
                                                 tool_calls=proposal.tool_calls if proposal else [])))
        decision = from_state(PeerDecision, state["decision"])
        results.append(to_state(WorkerResult(subtask_id=DECISION_ID, role="peer", output=decision.text,
                                             steps=decision.round, stopped="finished" if decision.winner else "error",
                                             error=None if decision.winner else decision.rule)))
        return {"results": results}

    graph = StateGraph(PeerState)
    for node, fn in [("propose", propose), ("vote", vote), ("decide", decide), ("finish", finish)]:
        graph.add_node(node, fn)
    graph.add_edge(START, "propose")
    graph.add_edge("propose", "vote")
    graph.add_edge("vote", "decide")
    graph.add_conditional_edges("decide", after_decide, ["propose", "finish"])
    graph.add_edge("finish", END)
    return graph.compile(name=name)


def _this_round(board: Sequence[dict[str, Any]], rnd: int) -> list[Post]:
    """The posts of round ``rnd``, read back from state: the newest ones, so walk back from the end."""
    found: list[Post] = []
    for post in reversed(board):
        if post["round"] != rnd:
            break
        found.append(from_state(Post, post))
    return found[::-1]
