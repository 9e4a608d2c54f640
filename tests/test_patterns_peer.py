"""The peer pattern on scripted models: majority, extra rounds, ties, bad votes, failing peers, AutoGen peers."""

from __future__ import annotations

import asyncio
import time

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_core.models import UserMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from tests.scripted import ScriptedChatModel
from tierflow.agents.autogen_interop import AutoGenInteropError, AutoGenPeer, TierChatCompletionClient
from tierflow.agents.peer import LLMPeer
from tierflow.agents.worker import WorkerAgent
from tierflow.graphs.patterns.peer import build_peer
from tierflow.graphs.team import Team
from tierflow.tools.native import native_tools
from tierflow.tools.registry import ToolRegistry

TASK = [{"id": "t", "goal": "decide", "role": "generalist"}]


def peer(name, *replies, delay: float = 0.0):
    model = ScriptedChatModel.of(replies)
    if delay:
        original = model._generate

        def slow(*args, **kwargs):
            time.sleep(delay)
            return original(*args, **kwargs)

        object.__setattr__(model, "_generate", slow)
    return LLMPeer(name, model)


def test_a_strict_majority_decides_in_the_first_round():
    peers = [peer("ann", "use SQLite", {"vote": "bob"}), peer("bob", "use Postgres", {"vote": "bob"}),
             peer("cy", "use files", {"vote": "cy"})]
    result = Team("peer", peers).run("which database?", TASK)
    assert result.decision == {"winner": "bob", "text": "use Postgres", "round": 1,
                               "votes": {"ann": 0, "bob": 2, "cy": 1}, "rule": "majority", "fallback_votes": 0}
    assert [(r.subtask_id, r.output) for r in result.results][-1] == ("consensus", "use Postgres")


def test_peers_acting_in_the_same_round_see_the_same_board_and_post_in_peer_order():
    # on threads, ann answers slowly, so bob finishes first; the board still lists ann before bob
    ann = peer("ann", "A1", {"vote": "bob"}, "A2", {"vote": "ann"}, delay=0.2)
    bob = peer("bob", "B1", {"vote": "ann"}, "B2", {"vote": "ann"})
    result = Team("peer", [ann, bob], max_rounds=2, concurrent=True).run("topic", TASK)
    assert [(p["round"], p["author"], p["kind"]) for p in result.board] == [
        (1, "ann", "proposal"), (1, "bob", "proposal"), (1, "ann", "vote"), (1, "bob", "vote"),
        (2, "ann", "proposal"), (2, "bob", "proposal"), (2, "ann", "vote"), (2, "bob", "vote")]
    # in round 1 neither saw the other's round-1 proposal; in round 2 both saw the whole of round 1
    assert "B1" not in ann.model.seen[0][-1].content and "A1" not in bob.model.seen[0][-1].content
    assert "bob proposes: B1" in ann.model.seen[2][-1].content
    assert result.decision["winner"] == "ann" and result.decision["round"] == 2


def test_no_majority_in_the_last_round_is_a_tie_the_earliest_peer_wins():
    peers = [peer("ann", "A", {"vote": "ann"}), peer("bob", "B", {"vote": "bob"})]
    result = Team("peer", peers, max_rounds=1).run("topic", TASK)
    assert result.decision["winner"] == "ann" and result.decision["rule"] == "tie: earliest peer wins"


def test_a_plurality_wins_after_the_last_round_when_there_is_no_majority():
    peers = [peer("ann", "A", {"vote": "cy"}), peer("bob", "B", {"vote": "bob"}), peer("cy", "C", {"vote": "cy"}),
             peer("dee", "D", {"vote": "dee"})]
    result = Team("peer", peers, max_rounds=1).run("topic", TASK)
    assert (result.decision["winner"], result.decision["rule"]) == ("cy", "plurality after the last round")


def test_invalid_votes_and_failing_peers_fall_back_and_are_recorded():
    peers = [peer("ann", "A", {"vote": "nobody"}), peer("bob", RuntimeError("bob is down"), "not json"),
             peer("cy", "C", {"vote": "ann"})]
    result = Team("peer", peers, max_rounds=1).run("topic", TASK)
    posts = {(p["author"], p["kind"]): p for p in result.board}
    assert posts[("bob", "proposal")]["text"] == "" and "bob is down" in posts[("bob", "proposal")]["reason"]
    assert (posts[("ann", "vote")]["text"], posts[("ann", "vote")]["source"]) == ("ann", "fallback")
    assert "'nobody' names no proposal" in posts[("ann", "vote")]["reason"]
    assert (posts[("bob", "vote")]["text"], posts[("bob", "vote")]["source"]) == ("ann", "fallback")
    assert result.decision["winner"] == "ann" and result.decision["fallback_votes"] == 2
    assert {r.subtask_id: r.stopped for r in result.results}["bob"] == "error"


def test_a_tie_can_be_put_to_a_human_and_the_run_resumes_with_the_answer():
    peers = [peer("ann", "A", {"vote": "ann"}), peer("bob", "B", {"vote": "bob"})]
    graph = build_peer(peers, max_rounds=1, tie_break="human").copy(update={"checkpointer": InMemorySaver()})
    config = {"configurable": {"thread_id": "tie"}}
    state = graph.invoke({"request": "topic", "subtasks": TASK, "results": []}, config)
    question = state["__interrupt__"][0].value
    assert question["options"] == {"ann": "A", "bob": "B"} and "tied between ann, bob" in question["question"]
    state = graph.invoke(Command(resume="bob"), config)
    assert state["decision"]["winner"] == "bob" and state["decision"]["rule"] == "tie broken by a human"


def test_with_a_worker_agent_each_subtask_becomes_a_peer_with_its_role():
    model = ScriptedChatModel.of(["numbers say X", "story says Y", {"vote": "num"}, {"vote": "num"}])
    plan = [{"id": "num", "goal": "argue from numbers", "role": "analyst"},
            {"id": "story", "goal": "argue from the story", "role": "writer"}]
    result = Team("peer", WorkerAgent(model, ToolRegistry(native_tools()))).run("topic", plan)
    assert [(r.subtask_id, r.role) for r in result.results] == [("num", "analyst"), ("story", "writer"),
                                                                ("consensus", "peer")]
    assert result.results[-1].output == "numbers say X"


def test_bad_peer_setups_are_refused():
    with pytest.raises(ValueError, match="two peers are called 'ann'"):
        build_peer([peer("ann"), peer("ann")])
    with pytest.raises(ValueError, match="max_rounds must be at least 1"):
        build_peer([peer("ann")], max_rounds=0)
    with pytest.raises(ValueError, match="tie_break"):
        build_peer([peer("ann")], tie_break="coin")


def test_a_tier_serves_an_autogen_agent_and_that_agent_takes_part_as_a_peer():
    tier = ScriptedChatModel.of(["hello", "autogen proposal", "I vote for ann."])
    client = TierChatCompletionClient(tier)
    agent = AssistantAgent("auto", model_client=client)
    reply = asyncio.run(agent.run(task="say hello"))
    assert reply.messages[-1].content == "hello"
    assert client.total_usage().prompt_tokens == 10 and client.total_usage().completion_tokens == 5
    peers = [peer("ann", "tierflow proposal", {"vote": "ann"}), AutoGenPeer(agent)]
    result = Team("peer", peers).run("topic", TASK)
    assert result.decision["winner"] == "ann" and result.decision["votes"] == {"ann": 2, "auto": 0}
    assert [p["source"] for p in result.board if p["kind"] == "vote"] == ["model", "model"]
    assert client.total_usage().completion_tokens == 15  # three calls through the tier


def test_the_tier_client_refuses_what_it_cannot_do():
    client = TierChatCompletionClient(ScriptedChatModel.of([]))
    with pytest.raises(AutoGenInteropError, match="native tool calling"):
        asyncio.run(client.create([UserMessage(content="hi", source="user")],
                                  tools=[{"name": "calc", "parameters": {}}]))
    with pytest.raises(AutoGenInteropError, match="no run"):
        AutoGenPeer(object())
